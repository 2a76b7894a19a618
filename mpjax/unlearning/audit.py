"""Host-side float64 references for deletion runs: retrain, distances, feature weight, audit.

Everything here is NumPy in float64 on the host, independent of the JAX code it checks:

* :func:`retrain`: the exact minimiser of the deletion objective
  ``F_S(W) = sum_{i in S} [1/2 |W x_i - y_i|^2 + lambda/2 |W|^2]`` computed from scratch,
  ``W* = Y^T X (X^T X + |S| lambda I)^{-1}``.
* :func:`present_after_requests`: the positions present after every delete request of an
  event log.
* :func:`retrain_distances`: ``|W~ - W*_{S'}|_F`` for every applied delete request.
* :func:`distinguishing_audit`: a membership attacker's true-positive rate at a fixed
  false-positive rate for "deleted" (release ``W~ + sigma Xi``) against "never there"
  (reference release ``W*_{S'} + sigma Xi'``), from simulated releases, beside the level
  the Gaussian mechanism certifies.
"""

import math
from statistics import NormalDist

import numpy as np

__all__ = ["retrain", "present_after_requests", "retrain_distances", "feature_weight", "certified_tpr",
           "distinguishing_audit"]


def retrain(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """f64[K, d]: the exact minimiser of ``F_S`` over the rows ``(x, y)`` (zeros for no row)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, d = x.shape
    if n == 0:
        return np.zeros((y.shape[1], d))
    return np.linalg.solve(x.T @ x + n * lam * np.eye(d), x.T @ y).T


def present_after_requests(ops: np.ndarray, pos: np.ndarray, applied: np.ndarray, initial: np.ndarray,
                           op_insert: int, op_delete: int, op_calibrate: int) -> list[np.ndarray]:
    """Positions present after each delete request of one seed's event log (refused ones included).

    Args:
      ops, pos, applied: i32[E], i32[E], bool[E] the events of a scan.
      initial: positions present before the first event.
    """
    present = set(int(p) for p in initial)
    out = []
    for op, p, ok in zip(ops, pos, applied):
        if ok and op in (op_insert, op_calibrate):
            present.add(int(p))
        elif op == op_delete:
            if ok:
                present.discard(int(p))
            out.append(np.fromiter(sorted(present), np.int64))
    return out


def retrain_distances(xs, ys, rows, present_sets, cert, applied_requests, lam: float,
                      cache: dict | None = None) -> tuple[np.ndarray, list]:
    """``|cert[j] - W*_j|_F`` with ``W*_j`` retrained from scratch on ``present_sets[j]``.

    Args:
      xs, ys: the data table.
      rows: i[P] data row of each position.
      present_sets: from :func:`present_after_requests`.
      cert: f[slots, K, d] the certified model of each request.
      applied_requests: bool[R].
      lam: ridge strength.
      cache: optional dict (present set's bytes -> W*) shared across calls that see the same
        positions, so a set retrained once is not retrained again.

    Returns:
      ``(f64[R] distances, NaN where refused; [W*_j or None])``.
    """
    cache = {} if cache is None else cache
    out = np.full(len(present_sets), np.nan)
    w_star = [None] * len(present_sets)
    for j, (keep, ok) in enumerate(zip(present_sets, applied_requests)):
        if not ok:
            continue
        key = keep.tobytes()
        if key not in cache:
            r = rows[keep]
            cache[key] = retrain(xs[r], ys[r], lam)
        w_star[j] = cache[key]
        out[j] = np.linalg.norm(np.asarray(cert[j], np.float64) - w_star[j])
    return out, w_star


def feature_weight(w: np.ndarray, feature: int) -> float:
    """``|W[:, feature]|_2``: the weight every output puts on one feature."""
    return float(np.linalg.norm(np.asarray(w, np.float64)[:, feature]))


def certified_tpr(mu: float, fpr: float) -> float:
    """The largest TPR at ``fpr`` against a Gaussian mechanism with ``Delta / sigma = mu``.

    ``Phi(mu - Phi^{-1}(1 - fpr))``: the trade-off curve of mu-Gaussian DP, tight for the
    Gaussian mechanism (Dong, Roth & Su 2022, Thm 2.7).
    """
    normal = NormalDist()
    return normal.cdf(mu - normal.inv_cdf(1.0 - fpr))


def distinguishing_audit(w_tilde: np.ndarray, w_star: np.ndarray, sigma: float, *, delta_cert: float,
                         trials: int = 20_000, fpr: float = 0.01, seed: int = 0, chunk: int = 2_000) -> dict:
    """TPR at ``fpr`` of the optimal attacker for "deleted" vs "never there", from simulated releases.

    World 1 ("deleted") releases ``W~ + sigma Xi``, world 0 ("never there") the reference
    ``W* + sigma Xi'``, ``Xi`` standard normal over all K d coordinates, ``trials`` each. The
    attacker knows both means (the strongest, white-box attacker: the Neyman-Pearson test
    projects the release on ``W~ - W*``); its threshold is world 0's exact ``1 - fpr``
    quantile, ``sigma z_{1-fpr}`` (the empirical false-positive rate is reported beside it). Returns the empirical TPR with a 95% Wilson interval, the TPR the Gaussian
    mechanism certifies at ``Delta / sigma`` (:func:`certified_tpr`), and the analytic TPR at
    the realised distance.
    """
    w_tilde = np.asarray(w_tilde, np.float64)
    w_star = np.asarray(w_star, np.float64)
    diff = w_tilde - w_star
    dist = float(np.linalg.norm(diff))
    if not sigma > 0:
        raise ValueError(f"the audit needs noise: sigma must be > 0, got {sigma}")
    rng = np.random.default_rng(seed)
    if dist > 0:
        direction = diff / dist
    else:  # identical worlds: every test has power = fpr; take any fixed direction
        direction = rng.standard_normal(diff.shape)
        direction /= np.linalg.norm(direction)

    def statistics(mean):
        out = []
        for start in range(0, trials, chunk):
            k = min(chunk, trials - start)
            release = mean[None] + sigma * rng.standard_normal((k, *mean.shape))
            out.append(np.tensordot(release - w_star[None], direction, axes=((1, 2), (0, 1))))
        return np.concatenate(out)

    t0, t1 = statistics(w_star), statistics(w_tilde)
    # The attacker knows world 0 exactly: its statistic is N(0, sigma^2), so the threshold is
    # exact. (An empirical quantile of t0 adds its own sampling error, which the Wilson
    # interval of the TPR below would not cover.)
    threshold = sigma * NormalDist().inv_cdf(1.0 - fpr)
    hits = int(np.sum(t1 > threshold))
    tpr = hits / trials
    z = 1.959963984540054
    centre = (tpr + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(tpr * (1 - tpr) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return {
        "trials_per_world": trials, "fpr_target": fpr, "fpr_empirical": float(np.mean(t0 > threshold)),
        "tpr": tpr, "tpr_ci95": [centre - half, centre + half], "distance": dist, "sigma": float(sigma),
        "tpr_certified": certified_tpr(delta_cert / sigma, fpr),
        "tpr_at_realised_distance": certified_tpr(dist / sigma, fpr),
    }
