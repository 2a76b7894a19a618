"""Memory-Pair learner: a stable online L-BFGS insert on a linear model.

Each sample is one quasi-Newton step on the regularised per-sample objective
f_t(w) = l_t(w) + lambda/2 |w|^2. The curvature memory is a ring of the last m
pairs (s, y) (:mod:`mpjax.lbfgs`); H is the L-BFGS inverse-Hessian approximation
they define with H_0 = gamma I, gamma = s.y / y.y of the newest pair (1 while the
memory is empty). Insert number t = 0, 1, 2, ... of a sample (x, y) with weight
omega (1 for ``step``; ``wstep`` passes it), tag ``tag`` and block length L:

  1. z = x.w;  loss = l(z, y)                                (before the update)
  2. a = omega l'(z, y) min(1, G / |l'(z, y) x|)            (clipped loss gradient a x;
                                                             no clip when G = clip_norm is None)
  3. u = H x,  v = H w
  4. q = x.u;  eta_t = eta / sqrt(t + 1);  alpha_t = eta_t / (1 + eta_t q)
  5. w' = w - alpha_t (a u + lambda v)                       (= w - alpha_t H grad f_t(w))
  6. if t mod L == 0: probe <- u, probe_hv <- 0, probe_tag <- tag
     probe_hv <- probe_hv + omega h(z, y) (x.probe) x        (h = l'': 1 squared,
                                                             sigma(z)(1 - sigma(z)) logistic)
  7. if (t + 1) mod L == 0: push the pair
        s = probe,  y = probe_hv / L + lambda probe,  tag probe_tag
     (skipped only when s.y <= 0, which happens only for probe = 0)

Why this rule (measured in the README, "Stability"). The original insert took
the secant pair of one sample along its own step, s = w' - w, and capped the
step. Two things made it amplify rounding by ~1e10 within 1,000 steps: (i) the
pair's direction is the step's direction, so H depends on the iterate and a
perturbation of w changes H, which changes the next steps (a feedback loop whose
gain exceeds 1 once |s| is small, with discrete accept/skip flips on top); (ii)
with H as large as 1/lambda in directions the sample does not excite, the
unnormalised step eta_t H g overshoots the sample by eta_t x.Hx >> 2. The rule
above removes both:

* **Curvature pairs from many samples, along a data-only direction.** Each pair
  measures the average Hessian of a block of L samples along s = H x of the
  block's first sample: a Hessian-vector product, as in the stochastic
  quasi-Newton method of Byrd, Hansen, Nocedal & Singer (2016), not a difference
  of stochastic gradients (which would mix gradient noise into y). For the
  squared loss the Hessian x x^T does not depend on w, so H is a function of the
  data alone and no perturbation of w can reach it; for the logistic loss it
  depends on w only through the smooth, bounded weights h. Every pair has
  s.y >= lambda |s|^2 > 0 and y.y / s.y <= lambda + max h |x|^2, the bounded
  curvature of the Hessian it samples (the condition under which online L-BFGS
  keeps H's eigenvalues bounded, Mokhtari & Ribeiro 2015), so no discontinuous
  skip rule is needed (and there is none, but for s = 0).
* **A normalised step.** alpha_t = eta_t / (1 + eta_t x.Hx) is the gain of
  recursive least squares (Haykin 2002, ch. 13) and of normalised LMS: the step
  never moves the prediction on x by more than its residual (alpha_t q < 1). With
  H fixed, the insert map's Jacobian I - alpha_t H (c x x^T + lambda I) (c in
  [0, omega] the clipped residual's derivative) is self-adjoint in the H^{-1}
  inner product with eigenvalue 1 - alpha_t c q in (0, 1] along H x and
  1 - alpha_t lambda (eigenvalues of H) elsewhere: non-expansive, contracting
  where the ridge acts. Two runs whose weights differ by 1e-10 come together
  instead of apart (README: amplification factor <= 1 over 20,000 steps, from
  ~1e10). No step cap is needed: |alpha_t a u| <= |a| |H x| / (x.Hx) is bounded.

Each pair is tagged with the tag of the first sample of its block. Tags must
grow with insertion order for :func:`purge` to be meaningful (the unlearner's
row ids and the wrapper's ids do).

Implementation: H is kept in the compact form of Byrd, Nocedal & Schnabel (1994)
(:func:`mpjax.lbfgs.compact_inverse`), recomputed only when a pair is pushed, so
a step applies H to [x, w] with three small matrix products instead of the 4m
dependent vector operations of the two-loop recursion (same H; tested against a
dense BFGS inverse).

K outputs (``learners.multi_output(make(...), K)``). For the squared loss the
pairs do not depend on the target or the weights (h = 1, s = H x), so the K
scalar learners would build K identical memories: the K-output form keeps one
memory for all outputs, W: f[K, d], and applies H to x and the K rows of W in one
product. It equals K independent learners (tested). The logistic loss has
per-output curvature weights h, hence K memories (a vmap over outputs). Every
function here accepts the scalar state and both K-output forms.

References:
  R. Byrd, S. Hansen, J. Nocedal, Y. Singer. A stochastic quasi-Newton method for
  large-scale optimization. SIAM J. Optim. 26(2), 2016.
  A. Mokhtari, A. Ribeiro. Global convergence of online limited memory BFGS.
  JMLR 16, 2015.
  N. Schraudolph, J. Yu, S. Guenter. A stochastic quasi-Newton method for online
  convex optimization. AISTATS 2007.
  S. Haykin. Adaptive Filter Theory, 4th ed., 2002.
  J. Nocedal, S. Wright. Numerical Optimization, 2nd ed., 2006, ch. 7.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mpjax import lbfgs, losses
from mpjax.learners.base import Learner, check_positive, clipped_coefficient, from_wstep

__all__ = ["MemoryPairState", "NO_BLOCK", "make", "insert", "restart", "purge", "precondition", "eigen_bounds"]


class MemoryPairState(NamedTuple):
    w: jax.Array  # f[d]
    memory: lbfgs.LbfgsMemory  # ring of curvature pairs
    t: jax.Array  # i32[] insert steps taken
    key: jax.Array  # PRNG key (deletion noise)
    probe: jax.Array  # f[d] s of the pair being measured in this block (H x of its first sample)
    probe_hv: jax.Array  # f[d] sum over this block of omega h (x . probe) x
    probe_tag: jax.Array  # i32[] tag of this block's first sample; NO_BLOCK between blocks
    inverse: lbfgs.CompactInverse  # H of `memory` in compact form, recomputed when the memory changes


NO_BLOCK = jnp.iinfo(jnp.int32).max  # probe_tag when no pair is being measured


class _Hyper(NamedTuple):
    fn: losses.Loss
    learning_rate: float
    l2: float
    clip_norm: float | None
    curvature_block: int


def _curvature(fn: losses.Loss):
    """h(z, y) = d^2 l / dz^2 of the loss."""
    if fn.name == "squared":
        return lambda z, y: jnp.ones_like(z)
    if fn.name == "logistic":
        return lambda z, y: jax.nn.sigmoid(z) * jax.nn.sigmoid(-z)
    raise ValueError(f"no curvature for loss {fn.name!r}")


def make(
    memory_size: int = 10,
    learning_rate: float = 1.0,
    l2: float = 1e-2,
    loss: str = "squared",
    clip_norm: float | None = 1.0,
    curvature_block: int = 20,
) -> Learner:
    """The Memory-Pair insert learner (the rule is in the module docstring).

    Args:
      memory_size: m, the number of curvature pairs in the ring.
      learning_rate: eta in eta_t = eta / sqrt(t + 1), before normalisation.
      l2: ridge strength lambda (> 0); also the strong-convexity constant.
      loss: "squared" or "logistic".
      clip_norm: G, each sample's loss gradient is clipped to this norm (None: off).
      curvature_block: L, samples whose average Hessian one curvature pair measures.
    """
    if not isinstance(memory_size, int) or memory_size < 1:
        raise ValueError(f"memory_size must be a positive int, got {memory_size!r}")
    if not isinstance(curvature_block, int) or curvature_block < 1:
        raise ValueError(f"curvature_block must be a positive int, got {curvature_block!r}")
    check_positive(learning_rate=learning_rate, l2=l2)
    if clip_norm is not None:
        check_positive(clip_norm=clip_norm)
    fn = losses.get(loss)
    hyper = _Hyper(fn, learning_rate, l2, clip_norm, curvature_block)

    def init(dim, key, num_outputs=None):
        shape = (dim,) if num_outputs is None else (num_outputs, dim)
        w = jnp.zeros(shape, float)
        probe = jnp.zeros((dim,), w.dtype)
        memory = lbfgs.init(memory_size, dim, w.dtype)
        return MemoryPairState(w, memory, jnp.zeros((), jnp.int32), key, probe, probe,
                               jnp.asarray(NO_BLOCK, jnp.int32), lbfgs.compact_inverse(memory))

    def wstep(state, x, y, weight):
        return insert(hyper, state, x, y, state.t, weight)

    def predict(state, x):
        return state.w @ x

    def loss_fn(state, x, y):
        return jnp.sum(fn.margin_value(state.w @ x, y))

    def multi(num_outputs):
        """One shared memory for K outputs (squared loss); see the module docstring."""
        return from_wstep(lambda dim, key: init(dim, key, num_outputs), wstep, predict, loss_fn, hyper)

    return from_wstep(init, wstep, predict, loss_fn, hyper, multi if fn.name == "squared" else None)


def _vmapped(state: MemoryPairState) -> bool:
    """A K-output state made by vmapping the scalar learner (one memory per output)."""
    return state.memory.s.ndim == 3


def insert(hyper: _Hyper, state: MemoryPairState, x, y, tag, weight=1.0):
    """One insert step (module docstring, steps 1-7); returns ``(state, loss before the update)``.

    ``weight`` multiplies the sample's clipped loss gradient and its Hessian's
    contribution to the curvature pair; the ridge terms stay. ``state`` may be
    scalar (w: f[d], y: f[]) or K-output (w: f[K, d], y: f[K]; the loss is summed).
    """
    if _vmapped(state):
        state, losses = jax.vmap(lambda st, yk: insert(hyper, st, x, yk, tag, weight))(state, y)
        return state, jnp.sum(losses)
    fn, lam, block = hyper.fn, hyper.l2, hyper.curvature_block
    dtype = state.w.dtype
    x = x.astype(dtype)
    w_rows = state.w.reshape(-1, x.shape[0])  # f[K, d]; K = 1 for a scalar state
    z = w_rows @ x
    y_rows = jnp.reshape(y, z.shape)
    loss = jnp.sum(fn.margin_value(z, y_rows))
    a = weight * clipped_coefficient(fn.dmargin(z, y_rows), x, hyper.clip_norm)
    uv = lbfgs.apply_inverse(state.inverse, jnp.concatenate([x[None, :], w_rows]))
    u, v = uv[0], uv[1:]
    q = jnp.dot(u, x)  # the state's vector first: under a vmap it is the batched matrix (no transpose)
    eta = hyper.learning_rate * jax.lax.rsqrt(jnp.asarray(state.t + 1, dtype))
    alpha = eta / (1.0 + eta * q)
    w = (w_rows - alpha * (a[:, None] * u[None, :] + lam * v)).reshape(state.w.shape)
    if state.w.ndim == 1:
        z = z[0]

    start = state.t % block == 0
    probe = jnp.where(start, u, state.probe)
    probe_tag = jnp.where(start, jnp.asarray(tag, jnp.int32), state.probe_tag)
    # One memory: h is the same for every output (squared loss), or there is one output.
    h = _curvature(fn)(z, y) if state.w.ndim == 1 else 1.0
    hv = (weight * h * jnp.dot(probe, x)) * x
    probe_hv = jnp.where(start, hv, state.probe_hv + hv)
    end = (state.t + 1) % block == 0

    def push(memory, inverse):
        memory, _ = lbfgs.push(memory, probe, probe_hv / block + lam * probe, probe_tag, eps=0.0)
        return memory, lbfgs.compact_inverse(memory)

    # A real branch (the push and the compact form once per block). Under a vmap over seeds it
    # stays one as long as the step counter is not batched: in a scan over seeds the counter
    # is the same for every seed, so the experiments keep the branch (a vmap of this step with
    # a batched counter would turn it into a select that runs on every step).
    memory, inverse = jax.lax.cond(end, push, lambda mem, inv: (mem, inv), state.memory, state.inverse)
    # Between blocks no pair is being measured: the tag of the next block's first sample comes with it.
    probe_tag = jnp.where(end, NO_BLOCK, probe_tag)
    new = MemoryPairState(w, memory, state.t + 1, state.key, probe, probe_hv, probe_tag, inverse)
    return new, loss


def restart(state: MemoryPairState, w: jax.Array) -> MemoryPairState:
    """The state with weights ``w`` and an empty curvature memory (counter and key kept).

    Used after an exact deletion: every stored pair was measured along a direction
    that depended on the deleted row (through H), so the whole memory goes, and the
    pair being measured is dropped too. Later inserts continue the online learner from ``w``.
    """
    if _vmapped(state):
        return jax.vmap(restart)(state, w)
    m, d = state.memory.s.shape
    return _with_memory(state._replace(w=w.astype(state.w.dtype)), lbfgs.init(m, d, state.w.dtype))


def purge(state: MemoryPairState, tag: jax.Array | int) -> MemoryPairState:
    """The state without the curvature information that sample ``tag`` reached.

    Empties the pair of the block that held the sample (the newest stored pair whose
    block began at or before ``tag``) and every later pair, and drops the pair being
    measured (a sample of that block reaches no stored pair). Later pairs go too because
    each was measured along H x with an H that contained the sample's pair; a sample
    older than every stored pair therefore
    empties the whole memory. Tags must grow with insertion order. Exact unlearning
    needs more than this (the weights carry the sample too): see :func:`restart`.
    """
    if _vmapped(state):
        return jax.vmap(purge, in_axes=(0, None))(state, tag)
    tag = jnp.asarray(tag, jnp.int32)
    mem = state.memory
    own = jnp.max(jnp.where((mem.rho != 0) & (mem.tag <= tag), mem.tag, -1))
    # A sample of the block being measured reached no stored pair.
    own = jnp.where(tag >= state.probe_tag, NO_BLOCK, own)
    return _with_memory(state, lbfgs.purge_since(mem, own))


def _with_memory(state: MemoryPairState, memory: lbfgs.LbfgsMemory) -> MemoryPairState:
    """``state`` with curvature ``memory`` (and its compact inverse); the pair being measured is dropped."""
    zero = jnp.zeros_like(state.probe)
    return state._replace(memory=memory, probe=zero, probe_hv=zero, inverse=lbfgs.compact_inverse(memory))


def precondition(hyper: _Hyper, state: MemoryPairState, g: jax.Array) -> jax.Array:
    """``H g``: the learner's inverse-Hessian approximation applied to ``g`` (shaped like ``state.w``)."""
    if _vmapped(state):
        return jax.vmap(lambda st, gk: precondition(hyper, st, gk))(state, g)
    return lbfgs.apply_inverse(state.inverse, g)


def eigen_bounds(hyper: _Hyper, state: MemoryPairState) -> tuple[jax.Array, jax.Array]:
    """``(c, C)``: the extreme eigenvalues of the operator :func:`precondition` applies (over all outputs)."""
    if _vmapped(state):
        c, big_c = jax.vmap(lambda st: eigen_bounds(hyper, st))(state)
        return jnp.min(c), jnp.max(big_c)
    return lbfgs.eigen_bounds(state.memory)
