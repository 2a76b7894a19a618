"""Plain NumPy per-step reference loops of the five mpjax learners (one stream, one output).

Each function runs the same math as the mpjax learner of the same name, with the same
default hyper-parameters, one sample at a time in Python, the way the earlier NumPy
research code did: read row ``idx[t]`` of the shared table, predict, learn. They are
honest, reasonably efficient NumPy: preallocated arrays, in-place updates where
natural (``w -= ...``, the rank-1 updates of ONS and RLS as ``A -= np.outer(v, v) / c``,
which NumPy hands to BLAS/SIMD loops), and an L-BFGS two-loop over a ``deque`` of the
last ``m`` pairs. They are used for timing (``benchmarks.throughput``) and return the
per-step losses so a caller can check them against mpjax.

Every function has the signature ``fn(table, targets, idx) -> losses`` with
``table: f[n, d]``, ``targets: f[n]`` and ``idx: i[T]``; the dtype of ``table`` sets
the arithmetic dtype (float32 or float64).
"""

from collections import deque

import numpy as np

__all__ = ["REFERENCES", "sgd", "adagrad", "ons", "rls", "memorypair"]


def _clip(g, clip_norm):
    if clip_norm is None:
        return g
    norm = np.sqrt(g @ g)
    if norm > clip_norm:
        g *= clip_norm / norm
    return g


def sgd(table, targets, idx, learning_rate=0.5, l2=1e-3, clip_norm=10.0):
    """Online SGD, eta_t = learning_rate / sqrt(t) (mpjax.learners.sgd defaults)."""
    dt = table.dtype.type
    w = np.zeros(table.shape[1], table.dtype)
    out = np.empty(len(idx), table.dtype)
    for t, i in enumerate(idx):
        x = table[i]
        r = x @ w - targets[i]
        out[t] = 0.5 * r * r
        g = _clip(r * x, clip_norm)
        g += dt(l2) * w
        w -= dt(learning_rate / np.sqrt(t + 1.0)) * g
    return out


def adagrad(table, targets, idx, learning_rate=0.1, l2=1e-3, initial_accumulator=0.1, eps=1e-7, clip_norm=10.0):
    """Diagonal AdaGrad (mpjax.learners.adagrad defaults, optax's scale_by_rss)."""
    dt = table.dtype.type
    d = table.shape[1]
    w = np.zeros(d, table.dtype)
    acc = np.full(d, initial_accumulator, table.dtype)
    out = np.empty(len(idx), table.dtype)
    lr, lam, e = dt(learning_rate), dt(l2), dt(eps)
    for t, i in enumerate(idx):
        x = table[i]
        r = x @ w - targets[i]
        out[t] = 0.5 * r * r
        g = _clip(r * x, clip_norm)
        g += lam * w
        acc += g * g
        w -= lr * g / np.sqrt(acc + e)  # acc > 0 always with initial_accumulator > 0
    return out


def _ons_constants(grad_bound=1.0, diameter=1.0, alpha=1.0):
    gamma = 0.5 * min(1.0 / (4.0 * grad_bound * diameter), alpha)
    return gamma, 1.0 / (gamma**2 * diameter**2)


def ons(table, targets, idx, l2=1e-3, clip_norm=10.0):
    """Online Newton Step with a Sherman-Morrison inverse (mpjax.learners.ons defaults)."""
    dt = table.dtype.type
    d = table.shape[1]
    gamma, epsilon = _ons_constants()
    w = np.zeros(d, table.dtype)
    a_inv = np.eye(d, dtype=table.dtype) / dt(epsilon)
    out = np.empty(len(idx), table.dtype)
    lam, inv_gamma = dt(l2), dt(1.0 / gamma)
    for t, i in enumerate(idx):
        x = table[i]
        r = x @ w - targets[i]
        out[t] = 0.5 * r * r
        g = _clip(r * x, clip_norm)
        g += lam * w
        v = a_inv @ g
        denom = dt(1.0) + g @ v
        a_inv -= np.outer(v, v / denom)
        w -= (inv_gamma / denom) * v
    return out


def rls(table, targets, idx, l2=1e-3):
    """Recursive least squares (exact online ridge), mpjax.learners.rls defaults."""
    dt = table.dtype.type
    d = table.shape[1]
    w = np.zeros(d, table.dtype)
    p = np.eye(d, dtype=table.dtype) / dt(l2)
    out = np.empty(len(idx), table.dtype)
    for t, i in enumerate(idx):
        x = table[i]
        e = targets[i] - x @ w
        out[t] = 0.5 * e * e
        u = p @ x
        denom = dt(1.0) + x @ u
        w += (e / denom) * u
        p -= np.outer(u, u / denom)
    return out


def memorypair(table, targets, idx, memory_size=10, learning_rate=1.0, l2=1e-2, clip_norm=1.0, curvature_block=20):
    """Memory-Pair insert (mpjax/learners/memory_pair.py): two two-loops per step over a
    deque of (s, y, rho) pairs, normalised step, block Hessian-vector curvature pairs."""
    dt = table.dtype.type
    d = table.shape[1]
    w = np.zeros(d, table.dtype)
    pairs = deque(maxlen=memory_size)  # oldest first; appending drops the oldest
    alpha = np.zeros((memory_size, 2), table.dtype)
    out = np.empty(len(idx), table.dtype)
    lam = dt(l2)
    probe = np.zeros(d, table.dtype)
    probe_hv = np.zeros(d, table.dtype)
    for t, i in enumerate(idx):
        x = table[i]
        yt = targets[i]
        z = x @ w
        r = z - yt
        out[t] = 0.5 * r * r
        norm = abs(r) * np.sqrt(x @ x)
        a = r * min(dt(1.0), dt(clip_norm) / norm) if norm > 0 else r
        # Two-loop product H [x, w] (Nocedal & Wright Alg. 7.4), gamma from the newest pair.
        q = np.stack([x, w], axis=1)  # f[d, 2]
        for k in range(len(pairs) - 1, -1, -1):
            s, yv, rho = pairs[k]
            alpha[k] = rho * (s @ q)
            q = q - np.outer(yv, alpha[k])
        if pairs:
            s, yv, _ = pairs[-1]
            q *= (s @ yv) / (yv @ yv)
        for k in range(len(pairs)):
            s, yv, rho = pairs[k]
            q += np.outer(s, alpha[k] - rho * (yv @ q))
        u, v = q[:, 0], q[:, 1]
        eta = dt(learning_rate / np.sqrt(t + 1.0))
        step_size = eta / (dt(1.0) + eta * (x @ u))
        w = w - step_size * (a * u + lam * v)
        if t % curvature_block == 0:
            probe = u
            probe_hv = np.zeros(d, table.dtype)
        probe_hv += (x @ probe) * x
        if (t + 1) % curvature_block == 0:
            yv = probe_hv / dt(curvature_block) + lam * probe
            sy = probe @ yv
            if sy > 0:
                pairs.append((probe, yv, dt(1.0) / sy))
    return out


REFERENCES = {"memorypair": memorypair, "sgd": sgd, "adagrad": adagrad, "ons": ons, "rls": rls}
