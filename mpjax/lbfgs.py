"""L-BFGS curvature memory in fixed-size ring arrays, and what it implies.

The memory holds the last ``m`` accepted curvature pairs ``(s_k, y_k)`` in
ring arrays ``s, y: f32[m, d]`` with ``rho_k = 1 / (s_k . y_k)``; ``head`` is
the next slot to write. A slot with ``rho = 0`` is empty (never filled, or
purged after a deletion) and is a no-op in every product, so the arrays keep
one shape for the whole stream and the memory can ride in a ``lax.scan`` carry.

Notation: s_k -> s, y_k -> y, H_0 = gamma I, B_0 = sigma I = I / gamma
(Nocedal & Wright 2006, Alg. 7.4 and eq. 7.20; Byrd, Nocedal & Schnabel 1994).

References:
  J. Nocedal, S. Wright. Numerical Optimization, 2nd ed., 2006, ch. 7.
  R. Byrd, J. Nocedal, R. Schnabel. Representations of quasi-Newton matrices and
  their use in limited memory methods. Math. Programming 63, 1994.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "LbfgsMemory",
    "init",
    "push",
    "purge",
    "purge_since",
    "initial_scale",
    "two_loop",
    "compact_form",
    "CompactInverse",
    "compact_inverse",
    "apply_inverse",
    "eigen_bounds",
]


# Memories up to this size get a Python-unrolled two-loop; longer ones use lax.fori_loop.
_UNROLL_MAX = 16


class CompactInverse(NamedTuple):
    """``H = gamma I + Phi^T M Phi`` (Byrd, Nocedal & Schnabel 1994, Thm 2.2), ready to apply.

    ``phi: f[2m, d]`` holds the rows ``s_1..s_m, gamma y_1..gamma y_m`` (oldest first,
    empty slots zero), ``mid: f[2m, 2m]`` is M, ``gamma`` the scale of H_0.
    """

    phi: jax.Array
    mid: jax.Array
    gamma: jax.Array


class LbfgsMemory(NamedTuple):
    s: jax.Array  # f[m, d] parameter differences
    y: jax.Array  # f[m, d] gradient differences (ridge term included by the caller)
    rho: jax.Array  # f[m] 1 / (s . y); 0 marks an empty slot
    tag: jax.Array  # i32[m] id of the sample that produced the pair; -1 when empty
    head: jax.Array  # i32[] next slot to write
    size: jax.Array  # i32[] number of non-empty slots


def init(memory_size: int, dim: int, dtype=jnp.float32) -> LbfgsMemory:
    """An empty memory of ``memory_size`` pairs in dimension ``dim``."""
    if memory_size < 1:
        raise ValueError(f"memory_size must be >= 1, got {memory_size}")
    return LbfgsMemory(
        s=jnp.zeros((memory_size, dim), dtype),
        y=jnp.zeros((memory_size, dim), dtype),
        rho=jnp.zeros((memory_size,), dtype),
        tag=jnp.full((memory_size,), -1, jnp.int32),
        head=jnp.zeros((), jnp.int32),
        size=jnp.zeros((), jnp.int32),
    )


def push(
    mem: LbfgsMemory,
    s: jax.Array,
    y: jax.Array,
    tag: jax.Array | int = -1,
    eps: float = 1e-8,
    min_curvature: float = 0.0,
) -> tuple[LbfgsMemory, jax.Array]:
    """Writes the pair ``(s, y)`` at ``head`` unless its curvature is too small.

    A pair with ``s . y <= eps * |s| |y|`` is skipped (online streams have no
    line search, so negative or vanishing curvature occurs) and the old memory
    is returned unchanged. With ``min_curvature = mu > 0`` a pair with
    ``s . y < mu |s|^2`` is skipped too (a "cautious" update, Li & Fukushima
    2001): it keeps the scale gamma = s.y / y.y of H_0 below 1 / mu.

    Returns:
      ``(memory, accepted)`` with ``accepted`` a bool scalar.
    """
    m = mem.s.shape[0]
    sy = jnp.dot(s, y)
    accepted = sy > eps * jnp.linalg.norm(s) * jnp.linalg.norm(y)
    if min_curvature:
        accepted = accepted & (sy >= min_curvature * jnp.dot(s, s))
    safe_sy = jnp.where(accepted, sy, 1.0)
    # Write row `head` only when accepted, as one masked select per array (no scatter and
    # no copy of the whole memory through a tree-wide where; vmap-friendly with a per-seed head).
    write = (jnp.arange(m) == mem.head) & accepted
    was_empty = jnp.sum(jnp.where(write, mem.rho, 1.0) == 0)
    new = LbfgsMemory(
        s=jnp.where(write[:, None], s[None, :], mem.s),
        y=jnp.where(write[:, None], y[None, :], mem.y),
        rho=jnp.where(write, (1.0 / safe_sy).astype(mem.rho.dtype), mem.rho),
        tag=jnp.where(write, jnp.asarray(tag, jnp.int32), mem.tag),
        head=jnp.where(accepted, (mem.head + 1) % m, mem.head),
        size=mem.size + was_empty.astype(jnp.int32),
    )
    return new, accepted


def purge(mem: LbfgsMemory, tag: jax.Array | int) -> LbfgsMemory:
    """Empties every slot whose pair came from sample ``tag`` (no-op for -1)."""
    return _empty_slots(mem, (mem.tag == tag) & (mem.tag >= 0))


def purge_since(mem: LbfgsMemory, tag: jax.Array | int) -> LbfgsMemory:
    """Empties every slot whose tag is ``>= tag`` (pairs formed at or after sample ``tag``).

    With tags that grow with insertion order, these are the pairs that sample ``tag``
    influenced, directly or through the pairs built on it. A negative ``tag`` empties all.
    """
    return _empty_slots(mem, (mem.tag >= tag) & (mem.rho != 0))


def _empty_slots(mem: LbfgsMemory, hit: jax.Array) -> LbfgsMemory:
    """Zeroes the slots where ``hit`` (tag -1); the head stays, the size counts what is left."""
    keep = ~hit
    return LbfgsMemory(
        s=jnp.where(keep[:, None], mem.s, 0),
        y=jnp.where(keep[:, None], mem.y, 0),
        rho=jnp.where(keep, mem.rho, 0),
        tag=jnp.where(keep, mem.tag, -1),
        head=mem.head,
        size=jnp.sum(keep & (mem.rho != 0)).astype(jnp.int32),
    )


def initial_scale(mem: LbfgsMemory) -> jax.Array:
    """gamma = s.y / y.y of the newest stored pair (N&W eq. 7.20); 1 when empty."""
    m = mem.s.shape[0]
    valid = mem.rho != 0
    age = (jnp.arange(m) - mem.head) % m  # 0 = oldest slot position, m-1 = newest
    newest = jnp.argmax(jnp.where(valid, age, -1))
    s, y = mem.s[newest], mem.y[newest]
    yy = jnp.dot(y, y)
    ok = valid[newest] & (yy > 0)
    return jnp.where(ok, jnp.dot(s, y) / jnp.where(ok, yy, 1.0), 1.0).astype(mem.s.dtype)


def two_loop(mem: LbfgsMemory, g: jax.Array, gamma: jax.Array | None = None) -> jax.Array:
    """The product ``H g`` of the L-BFGS inverse-Hessian approximation with ``g``.

    Args:
      mem: the curvature memory.
      g: f[d] vector (usually a gradient), or f[n, d]: one vector per row (vmapped).
      gamma: scale of H_0 = gamma I; defaults to :func:`initial_scale`.

    Returns:
      ``H g`` of the shape of ``g``. With an empty memory this is ``gamma * g``.
    """
    if g.ndim == 2:
        return jax.vmap(lambda row: two_loop(mem, row, gamma))(g)
    m = mem.s.shape[0]
    # One gather puts the ring in chronological order (oldest first), so the loops below
    # index it with static (or loop-counter) positions: plain slices, the same for every
    # seed under vmap, instead of a per-seed dynamic index (a gather) at every iteration.
    # Empty slots have rho = 0 and are no-ops. The arithmetic, and its order, is that of
    # Nocedal & Wright Alg. 7.4.
    order = (mem.head + jnp.arange(m)) % m
    s, y, rho = mem.s[order], mem.y[order], mem.rho[order]
    if gamma is None:
        gamma = _scale_chrono(s, y, rho)

    if m > _UNROLL_MAX:  # long memories: loops, so compile time stays flat in m

        def newest_first(j, carry):
            q, alpha = carry
            i = m - 1 - j
            a = rho[i] * jnp.dot(s[i], q)
            return q - a * y[i], alpha.at[i].set(a)

        q, alpha = lax.fori_loop(0, m, newest_first, (g, jnp.zeros_like(rho)))

        def oldest_first(i, r):
            b = rho[i] * jnp.dot(y[i], r)
            return r + (alpha[i] - b) * s[i]

        return lax.fori_loop(0, m, oldest_first, gamma * q)

    # Unrolled: on CPU a scan step costs per executed kernel, and the unrolled loops run
    # ~2.4x faster per step than fori_loops at m = 10, d = 55 (see benchmarks/throughput.py).
    q, alpha = g, [None] * m
    for i in reversed(range(m)):  # newest first
        alpha[i] = rho[i] * jnp.dot(s[i], q)
        q = q - alpha[i] * y[i]
    r = gamma * q
    for i in range(m):  # oldest first
        b = rho[i] * jnp.dot(y[i], r)
        r = r + (alpha[i] - b) * s[i]
    return r


def _chronological(mem: LbfgsMemory):
    """``(s, y, rho, valid)`` of the pairs oldest first, empty slots' ``s`` and ``y`` zeroed."""
    m = mem.s.shape[0]
    order = (mem.head + jnp.arange(m)) % m
    valid = mem.rho[order] != 0
    return (jnp.where(valid[:, None], mem.s[order], 0), jnp.where(valid[:, None], mem.y[order], 0),
            mem.rho[order], valid)


def _scale_chrono(s, y, rho):
    """:func:`initial_scale` for pairs already in chronological order (oldest first)."""
    m = s.shape[0]
    valid = rho != 0
    newest = jnp.argmax(jnp.where(valid, jnp.arange(m), -1))
    sn, yn = s[newest], y[newest]
    yy = jnp.dot(yn, yn)
    ok = valid[newest] & (yy > 0)
    return jnp.where(ok, jnp.dot(sn, yn) / jnp.where(ok, yy, 1.0), 1.0).astype(s.dtype)


def _unit_upper_inverse(n: jax.Array, m: int) -> jax.Array:
    """``(I + N)^{-1}`` for a strictly upper-triangular (nilpotent) ``N: f[m, m]``.

    ``(I + N)^{-1} = (I - N)(I + N^2)(I + N^4)...``: exact once ``2^k >= m``, since
    ``N^m = 0``. A few small matrix products, no LAPACK call (which the multi-device
    CPU runtime should not have to schedule inside every scan step).
    """
    eye = jnp.eye(m, dtype=n.dtype)
    inv, power = eye - n, n @ n
    k = 2
    while k < m:
        inv = inv @ (eye + power)
        power = power @ power
        k *= 2
    return inv


def compact_inverse(mem: LbfgsMemory, gamma: jax.Array | None = None) -> CompactInverse:
    """The compact representation of the inverse-Hessian approximation ``H``.

    With pairs oldest first, ``R`` upper triangular with ``R_ij = s_i . y_j``
    (i <= j), ``D = diag(s_i . y_i)``:

        H = gamma I + [S  gamma Y] [[R^-T (D + gamma Y^T Y) R^-1, -R^-T], [-R^-1, 0]] [S  gamma Y]^T

    (Byrd, Nocedal & Schnabel 1994, Theorem 2.2); the same H as :func:`two_loop`.
    Empty slots get zero rows in ``phi`` and a unit diagonal in R, so they add
    nothing. Cost O(m^2 d + m^3); applying it costs three small matrix products.
    """
    s, y, rho, valid = _chronological(mem)
    m = s.shape[0]
    if gamma is None:
        gamma = _scale_chrono(s, y, rho)
    sy = s @ y.T  # sy[i, j] = s_i . y_j
    diag = jnp.where(valid, jnp.diagonal(sy), 1.0)
    upper = jnp.triu(sy, k=1)
    # R = (I + N) diag(R) with N = strictly upper part of R diag(R)^-1.
    r_inv = _unit_upper_inverse(upper / diag[None, :], m) / diag[:, None]
    inner = jnp.diag(jnp.where(valid, diag, 0.0)) + gamma * (y @ y.T)
    top_left = r_inv.T @ inner @ r_inv
    zero = jnp.zeros((m, m), s.dtype)
    mid = jnp.concatenate([jnp.concatenate([top_left, -r_inv.T], axis=1),
                           jnp.concatenate([-r_inv, zero], axis=1)], axis=0)
    return CompactInverse(jnp.concatenate([s, gamma * y]), mid, jnp.asarray(gamma, s.dtype))


def apply_inverse(ci: CompactInverse, v: jax.Array) -> jax.Array:
    """``H v`` for ``v: f[d]`` or rows ``f[n, d]`` from a :class:`CompactInverse`."""
    return ci.gamma * v + ((v @ ci.phi.T) @ ci.mid) @ ci.phi


def compact_form(mem: LbfgsMemory, gamma: jax.Array | None = None):
    """The compact representation ``B = sigma I - W K^{-1} W^T`` (BNS 1994, Thm 2.3).

    Pairs are taken oldest first; empty slots get zero columns in ``W`` and an
    identity row/column in ``K`` so they contribute nothing.

    Returns:
      ``(sigma, W, K)`` with ``W: f[d, 2m]`` and ``K: f[2m, 2m]``.
    """
    m = mem.s.shape[0]
    if gamma is None:
        gamma = initial_scale(mem)
    sigma = 1.0 / gamma
    s, y, _, valid = _chronological(mem)  # f[m, d], oldest first
    sy = s @ y.T  # sy[i, j] = s_i . y_j
    lower = jnp.tril(sy, k=-1)  # L: i > j (pair i newer than pair j)
    diag = jnp.diagonal(sy)
    top = jnp.concatenate([sigma * (s @ s.T), lower], axis=1)
    bottom = jnp.concatenate([lower.T, -jnp.diag(diag)], axis=1)
    k = jnp.concatenate([top, bottom], axis=0)
    both = jnp.concatenate([valid, valid])
    pair_ok = both[:, None] & both[None, :]
    k = jnp.where(pair_ok, k, jnp.eye(2 * m, dtype=k.dtype))
    w = jnp.concatenate([sigma * s, y], axis=0).T  # f[d, 2m]
    return sigma, w, k


def eigen_bounds(mem: LbfgsMemory, gamma: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Eigenvalue bounds ``(c, C)`` of the L-BFGS inverse-Hessian operator ``H``.

    ``c = lambda_min(H)`` and ``C = lambda_max(H)``, computed exactly from the
    compact form of ``B = H^{-1}``: B equals ``sigma`` on the orthogonal
    complement of span(S, Y), and on that span it is the small matrix
    ``sigma I - R K^{-1} R^T`` where ``W = Q R``. Cost O(d m^2 + m^3); no d x d
    matrix is formed when d > 2m. An empty memory gives ``(gamma, gamma)``,
    i.e. (1, 1) with the default scale.
    """
    d, m = mem.s.shape[1], mem.s.shape[0]
    sigma, w, k = compact_form(mem, gamma)
    if d > 2 * m:
        q, r = jnp.linalg.qr(w)
        small = sigma * jnp.eye(2 * m, dtype=w.dtype) - r @ jnp.linalg.solve(k, r.T)
        eig_b = jnp.linalg.eigvalsh(0.5 * (small + small.T))
        lo_b = jnp.minimum(jnp.min(eig_b), sigma)
        hi_b = jnp.maximum(jnp.max(eig_b), sigma)
    else:
        b = sigma * jnp.eye(d, dtype=w.dtype) - w @ jnp.linalg.solve(k, w.T)
        eig_b = jnp.linalg.eigvalsh(0.5 * (b + b.T))
        lo_b, hi_b = jnp.min(eig_b), jnp.max(eig_b)
    tiny = jnp.finfo(w.dtype).tiny
    return 1.0 / hi_b, 1.0 / jnp.maximum(lo_b, tiny)
