"""Certified unlearning for the Memory-Pair learner: phase machine and three deletion mechanisms.

The model is the K-output Memory-Pair learner (``multi_output(memory_pair.make(...), K)``),
parameters ``W: f[K, d]``. Operations arrive as events ``(op, row, x, y)`` consumed by
``apply`` (jit it, or run it inside one ``lax.scan``):

* ``OP_CALIBRATE`` (CALIBRATION only): an insert that also feeds the calibrator.
* ``OP_INSERT`` (LEARNING, INTERLEAVING): one quasi-Newton insert.
* ``OP_DELETE`` (INTERLEAVING only): a certified deletion of a present row.
* ``OP_NOOP``: nothing.

An operation the phase, the membership, the budget or the mechanism forbids is *refused*:
the state is returned unchanged (but for the event counter) and ``Event.reason`` says why;
nothing is applied silently. Phases: CALIBRATION -> (``finalize``) -> LEARNING -> (inserts
reach N*) -> INTERLEAVING; the model predicts and deletes in INTERLEAVING. ``finalize`` runs
once, between scans: it fixes the calibration ``(G, D, c, C, N*)`` and the odometer of the
mechanism. ``apply`` branches on ``op`` with ``lax.switch``: when ``op`` is the same for every
lane of a ``vmap`` (a shared schedule), only the branch of that op runs.

Rows are identified by an id ``row`` in ``[0, num_rows)``. A delete must pass the same
``(x, y)`` as the insert of that row; a fingerprint of the row (two fixed projections of
``(x, y)``) is kept and a mismatch is refused.

The objective (DESIGN.md section 2): over the rows ``S`` present, ``n = |S|``,

    F_S(W) = sum_{i in S} [1/2 |W x_i - y_i|^2 + lambda/2 |W|^2],   mu = n lambda,

``W*_S`` its minimiser (:mod:`mpjax.unlearning.ridge`). A deletion of the present row ``r``
turns ``S`` into ``S' = S \\ {r}``. The *published model* is the state's ``model.w``: what
``predict`` uses. Features satisfy ``|x| <= 1``, targets are one-hot.

Mechanisms (``Settings.mechanism``)
-----------------------------------

**exact** (default for squared loss). The state carries ``A = sum x x^T``, ``B = sum x y^T``
and ``n`` over ``S`` (O(d^2) memory: 23 KB at d = 55, 4.7 MB at d = 785 in float64). A
deletion downdates them, publishes ``W*_{S'}`` (Cholesky solve) and empties the whole
curvature memory of every output (``memory_pair.restart``): each stored pair is a
difference of iterates that depended on ``r``, not only the pairs ``r`` produced. Later
inserts continue the online learner from ``W*_{S'}``.

  *Theorem (exact removal).* For squared loss, the published model after the deletion is
  ``W*_{S'}``, a deterministic function of the multiset ``S'`` alone; so is every
  learned quantity in the state (the statistics, the weights, the empty curvature memory).
  The output therefore has the distribution of the reference "retrain the ridge objective
  from scratch on ``S'``": a (0, 0)-certified removal (Ginart et al. 2019, exact deletion;
  Guo et al. 2020, Def. 1 with epsilon = 0). No noise, no budget. Exactness holds up to
  floating-point rounding: the statistics are updated by signed rank-one terms, so a
  deleted row leaves a residue of order ``u |x|^2`` per entry (``u`` the unit roundoff,
  1.1e-16 in float64); ``Event.bound`` reports a certified bound on
  ``|W - W*_{S'}|_F`` over the exact rows, rounding included (:func:`ridge.certified_distance`).
  Not covered: the bookkeeping (membership bits, the insert and step counters, which
  reveal how many rows came and went, not which) and the calibration constants, which
  are functions of the calibration prefix and are not recomputed; they do not enter
  the published models of this mechanism.

**polish** (logistic loss, or d too large for d^2 memory). ``Delta`` (``polish_delta``),
the capacity ``m`` (``polish_capacity``) and ``sigma = z(m, eps, delta) Delta`` are fixed by
the configuration before any data. The state stores the rows present (O(N d) memory, N the
membership table size). A deletion zeroes the row in the store, iterates on the stored rows
from the online model (:func:`polish.polish`: conjugate gradients for squared loss,
accelerated gradient for logistic) until the certified bound
``(|grad F_{S'}(W~)|_F + rounding allowance) / (|S'| lambda) <= Delta`` holds, then publishes
``W~ + sigma Xi``, ``Xi ~ N(0, I_{K x d})``, and empties the curvature memory. A deletion that
cannot reach the bound within ``polish_passes`` passes over the rows is refused
(``NOT_CERTIFIED``) and changes nothing: an uncertified model is never published.

  *Theorem (certified removal by polishing).* Assume a convex, smooth loss (squared or
  logistic), ``lambda > 0``. Because ``F_{S'}`` is ``|S'| lambda``-strongly convex, the
  certified bound implies ``|W~ - W*_{S'}|_F <= Delta`` whatever the starting point (and
  hence whatever the deleted row did to it). The release ``W~ + sigma Xi`` and the
  reference release ``W*_{S'} + sigma Xi'`` (exact retrain, same noise) are Gaussians with
  covariance ``sigma^2 I`` whose means differ by at most ``Delta``: one release is
  ``(eps_1, delta_1)``-indistinguishable from the reference, the Gaussian mechanism at
  multiplier ``z`` (Dwork & Roth 2014, Thm A.1; Balle & Wang 2018), the ``eps_step`` of the
  odometer. The ``m`` releases of a stream compose adaptively (each may depend on earlier
  releases through the continued learner) to the accountant's ``(eps, delta)``. This is
  output perturbation of a strongly convex minimiser (Chaudhuri et al. 2011) with the
  sensitivity replaced by a certified optimisation error, as in certified removal (Guo et
  al. 2020), unlearning with a data-independent distance bound (Sekhari et al. 2021) and
  descent-to-delete (Neel et al. 2021; there the reference also runs the optimiser, which
  doubles the distance; here the reference is the exact minimiser). ``sigma`` depends on
  ``(Delta, m, eps, delta, accountant)`` only, never on which row is deleted.
  Not covered: a refusal for the step budget, and the number of passes spent, depend on
  the data (both are visible); the certificate is about the releases that are made.

**seed**. The original mechanism, kept to show why it fails: the removal step
``W <- W + H clip(grad l(W; x, y)) / (n - 1)`` (the Newton / influence estimate with the
learner's L-BFGS operator ``H``), purge of the row's own curvature pairs, and noise
``sigma = z Delta_seed`` with the data-independent ``Delta_seed = sqrt(K) clip_norm / lambda``
and the capacity of the regret-budget search (:func:`mpjax.privacy.odometer.finalize`).

  *What it certifies.* If the pre-noise model lies within ``Delta_seed`` of the reference
  model (the learner without the row), the release is the Gaussian mechanism at
  multiplier ``z`` (Chaudhuri et al. 2011: a lambda-strongly convex minimiser moves by at
  most ``G / lambda`` when one ``G``-Lipschitz term is removed). The assumption is proved
  for minimisers, not for the online state, whose sensitivity to a recent row is of order
  ``eta_t G``; and ``Delta_seed`` is so large that a handful of deletions destroys the model.
  ``Event.bound`` is NaN: no distance to the retrain is certified.

References:
  K. Chaudhuri, C. Monteleoni, A. Sarwate. Differentially private empirical risk
  minimization. JMLR 12, 2011.
  A. Ginart, M. Guan, G. Valiant, J. Zou. Making AI forget you: data deletion in machine
  learning. NeurIPS 2019.
  C. Guo, T. Goldstein, A. Hannun, L. van der Maaten. Certified data removal from machine
  learning models. ICML 2020.
  A. Sekhari, J. Acharya, G. Kamath, A. T. Suresh. Remember what you want to forget:
  algorithms for machine unlearning. NeurIPS 2021.
  S. Neel, A. Roth, S. Sharifi-Malvajerdi. Descent-to-delete: gradient-based methods for
  machine unlearning. ALT 2021.
  C. Dwork, A. Roth. The Algorithmic Foundations of Differential Privacy. 2014.
  B. Balle, Y.-X. Wang. Improving the Gaussian mechanism for differential privacy. ICML 2018.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from mpjax import losses
from mpjax.learners import base, memory_pair
from mpjax.privacy import calibrator as cal
from mpjax.privacy import odometer as odo
from mpjax.unlearning import polish as pol
from mpjax.unlearning import ridge

__all__ = [
    "CALIBRATION",
    "LEARNING",
    "INTERLEAVING",
    "PHASE_NAMES",
    "OP_NOOP",
    "OP_CALIBRATE",
    "OP_INSERT",
    "OP_DELETE",
    "OP_NAMES",
    "MECHANISMS",
    "OK",
    "WRONG_PHASE",
    "NOT_PRESENT",
    "ALREADY_PRESENT",
    "BUDGET",
    "NOT_CERTIFIED",
    "MISMATCH",
    "BAD_ROW",
    "REASONS",
    "Settings",
    "UnlearningState",
    "Event",
    "Unlearner",
    "make",
    "resolve_mechanism",
]

CALIBRATION, LEARNING, INTERLEAVING = 0, 1, 2
PHASE_NAMES = ("CALIBRATION", "LEARNING", "INTERLEAVING")
OP_NOOP, OP_CALIBRATE, OP_INSERT, OP_DELETE = -1, 0, 1, 2
OP_NAMES = {OP_NOOP: "noop", OP_CALIBRATE: "calibrate", OP_INSERT: "insert", OP_DELETE: "delete"}
MECHANISMS = ("exact", "polish", "seed")

# Refusal reasons (Event.reason).
OK, WRONG_PHASE, NOT_PRESENT, ALREADY_PRESENT, BUDGET, NOT_CERTIFIED, MISMATCH, BAD_ROW = 0, 1, 2, 3, 4, 5, 6, 7
REASONS = ("ok", "wrong phase", "row not present (never inserted or already deleted)",
           "row already present", "deletion budget exhausted",
           "polish could not certify the distance bound within its step budget",
           "(x, y) differ from the inserted row", "row id outside [0, num_rows)")

_TAG_NOISE = 11  # fold_in purpose tag of the deletion noise


class Settings(NamedTuple):
    """Static privacy, calibration and mechanism settings (Python values)."""

    mechanism: str = "auto"  # exact | polish | seed; auto: exact for squared loss, polish for logistic
    horizon: int = 100_000  # T: insertions the regret budget is spread over
    gamma_learn: float = 0.5  # target average regret of LEARNING (sets N*)
    gamma_priv: float = 0.5  # target average regret with deletions
    eps_total: float = 1.0
    delta_total: float = 1e-5
    delta_B: float = 0.05  # seed: failure probability of the noise-norm bound
    accountant: str = "zcdp"
    bound: str = "original"  # N* constant: sqrt(cC) ("original") or sqrt(C/c) ("corrected")
    quantile: float = 0.95  # G = this quantile of the calibration gradient norms
    D_cap: float = float("inf")
    min_points: int = 32
    window: int = 1024  # calibrator ring of gradient norms
    noise: bool = True  # False only for diagnostics (no certificate)
    max_deletions: int = 2**20  # seed: upper end of the capacity search
    polish_delta: float = 1e-5  # polish: Delta, the certified distance to the minimiser
    polish_passes: int = 200  # polish: passes over the stored rows per deletion, certification included
    polish_capacity: int = 1000  # polish: deletions provisioned; fixes z(m, eps, delta) before any data


class UnlearningState(NamedTuple):
    model: memory_pair.MemoryPairState  # leaves with a leading K axis
    stats: cal.CalibratorStats
    calibration: cal.Calibration
    odometer: odo.OdometerState
    present: jax.Array  # bool[N] rows currently in the model
    fingerprint: jax.Array  # f[N, 2] projections of the rows present (zeros elsewhere)
    suff: ridge.RidgeStats | None  # exact: A, B, n of the rows present
    store: pol.RowStore | None  # polish: the rows present
    phase: jax.Array  # i32[]
    events: jax.Array  # i32[] events processed (refused ones included)
    inserts: jax.Array  # i32[] applied inserts (calibration included)
    deletes: jax.Array  # i32[] applied deletes
    key: jax.Array  # PRNG key of the deletion noise


class Event(NamedTuple):
    op: jax.Array  # i32[]
    applied: jax.Array  # bool[]
    reason: jax.Array  # i32[] OK or the refusal reason
    loss: jax.Array  # f[] loss before an insert (NaN otherwise)
    correct: jax.Array  # bool[] arg-max prediction before an insert was right
    phase: jax.Array  # i32[] phase after the event
    eps_spent: jax.Array  # f[]
    capacity_remaining: jax.Array  # i32[] m - used (0 before finalize; int32 max - used for exact)
    noise_norm: jax.Array  # f[] |sigma Xi|_F of an applied delete (0 otherwise)
    sigma: jax.Array  # f[] noise std of a delete request (0 otherwise)
    bound: jax.Array  # f[] certified bound on |W~ - W*_{S'}|_F of a delete request (NaN otherwise, and for seed)
    passes: jax.Array  # i32[] polish: passes over the stored rows of a delete request (0 otherwise)


class Unlearner(NamedTuple):
    init: object  # (dim, num_rows, key) -> UnlearningState
    apply: object  # (state, op, row, x, y) -> (state, Event)
    finalize: object  # (state) -> state
    predict: object  # (state, x) -> f[K]
    settings: Settings  # mechanism resolved
    hyper: object
    apply_detail: object  # (state, op, row, x, y) -> (state, Event, w_certified f[K, d])


# --------------------------------------------------------------------------- the K-output model
# The model is ``multi_output(memory_pair.make(...), K)``: one curvature memory shared by the K
# outputs (squared loss), or K scalar learners under a vmap (logistic loss). memory_pair's
# insert / restart / purge / precondition / eigen_bounds accept both forms.


def _empty_odometer(dtype) -> odo.OdometerState:
    z = jnp.zeros((), dtype)
    i = jnp.zeros((), jnp.int32)
    return odo.OdometerState(m=i, used=i, eps_spent=z, delta_spent=z, sigma=z, noise_multiplier=z,
                             sensitivity=z, eps_step=z, delta_step=z, eps_total=z, delta_total=z,
                             regret_insert=z, regret_delete=z, accountant=i, status=i)


def _empty_calibration(dtype) -> cal.Calibration:
    z = jnp.zeros((), dtype)
    big = jnp.asarray(2**31 - 1, jnp.int32)
    return cal.Calibration(G=z, D=z, c=z, C=z, kappa=z, N_star=big, n_points=jnp.zeros((), jnp.int32),
                           status=jnp.zeros((), jnp.int32))


def _projections(dim: int, k: int, dtype):
    """Two fixed, data-independent projection vectors of (x, y): weights in [1, 2) and in [-1, 1]."""
    i = jnp.arange(dim + k, dtype=dtype)
    golden = 0.6180339887498949
    return jnp.stack([1.0 + jnp.mod(i * golden, 1.0), jnp.sin(1.0 + 2.0 * i)])  # f[2, d + K]


def resolve_mechanism(mechanism: str, loss: str) -> str:
    """``auto`` -> exact (squared loss) or polish (logistic); validates the name and the loss."""
    if mechanism == "auto":
        return "exact" if loss == "squared" else "polish"
    if mechanism not in MECHANISMS:
        raise ValueError(f"unknown mechanism {mechanism!r}; valid: auto, {', '.join(MECHANISMS)}")
    if mechanism == "exact" and loss != "squared":
        raise ValueError(f"mechanism 'exact' needs loss='squared' (sufficient statistics), got loss={loss!r}; "
                         "use mechanism='polish'")
    return mechanism


def _check_settings(s: Settings):
    if s.accountant not in ("basic", "zcdp", "rdp", "exact"):
        raise ValueError(f"unknown accountant {s.accountant!r}; valid: basic, zcdp, rdp, exact")
    for name in ("gamma_learn", "gamma_priv", "eps_total", "delta_total", "delta_B", "polish_delta"):
        base.check_positive(**{name: getattr(s, name)})
    for name in ("polish_passes", "polish_capacity", "max_deletions"):
        value = getattr(s, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def make(num_outputs: int, settings: Settings = Settings(), **memory_pair_hyper) -> Unlearner:
    """A K-output Memory-Pair learner with calibration, accounting and certified deletes.

    Args:
      num_outputs: K (one-hot targets of K classes).
      settings: privacy, calibration and mechanism settings (module docstring).
      **memory_pair_hyper: passed to :func:`mpjax.learners.memory_pair.make`; ``l2`` is the
        lambda of the deletion objective, ``clip_norm`` must not be None (the seed
        mechanism's sensitivity and the calibrator need clipped gradients).

    Raises:
      ValueError: bad settings, an unknown mechanism, ``exact`` with a non-squared loss,
        ``clip_norm=None``.
    """
    if memory_pair_hyper.get("clip_norm", 1.0) is None:
        raise ValueError("certified deletion needs clipped gradients: clip_norm must not be None")
    _check_settings(settings)
    loss_name = memory_pair_hyper.get("loss", "squared")
    fn = losses.get(loss_name)
    mechanism = resolve_mechanism(settings.mechanism, loss_name)
    settings = settings._replace(mechanism=mechanism)
    scalar = memory_pair.make(**memory_pair_hyper)
    learner = base.multi_output(scalar, num_outputs)
    hyper = scalar.hyper
    lam = float(hyper.l2)
    clip = float(hyper.clip_norm)
    k_out = num_outputs
    sens_bound = clip * float(num_outputs) ** 0.5  # |clipped grad| of one sample, all outputs

    def init(dim, num_rows, key):
        if num_rows < 1:
            raise ValueError(f"num_rows must be >= 1, got {num_rows}")
        model = learner.init(dim, jax.random.fold_in(key, 0))
        dtype = model.w.dtype
        return UnlearningState(
            model=model,
            stats=cal.init(k_out * dim, settings.window, dtype),
            calibration=_empty_calibration(dtype),
            odometer=_empty_odometer(dtype),
            present=jnp.zeros((num_rows,), bool),
            fingerprint=jnp.zeros((num_rows, 2), dtype),
            suff=ridge.init(dim, k_out, dtype) if mechanism == "exact" else None,
            store=pol.store_init(num_rows, dim, k_out, dtype) if mechanism == "polish" else None,
            phase=jnp.asarray(CALIBRATION, jnp.int32),
            events=jnp.zeros((), jnp.int32),
            inserts=jnp.zeros((), jnp.int32),
            deletes=jnp.zeros((), jnp.int32),
            key=jax.random.fold_in(key, _TAG_NOISE),
        )

    def _fingerprint(x, y, dtype):
        v = jnp.concatenate([x.astype(dtype), y.astype(dtype)])
        proj = _projections(x.shape[0], y.shape[0], dtype)
        fp = proj @ v
        mass = jnp.abs(proj) @ jnp.abs(v)
        return fp, mass

    def _loss_grads(w, x, y):
        # Clipped per-output loss gradients, f[K, d] (what the calibrator observes).
        z = w @ x
        return base.clipped_coefficient(fn.dmargin(z, y), x, clip)[:, None] * x[None, :]  # as the insert clips them

    def _detail(dtype, loss, sigma=0.0, noise_norm=0.0, bound=jnp.nan, passes=0, ok=True):
        return (jnp.asarray(loss, dtype), jnp.asarray(ok), jnp.asarray(noise_norm, dtype), jnp.asarray(sigma, dtype),
                jnp.asarray(bound, dtype), jnp.asarray(passes, jnp.int32))

    def _keep(go, new, old):
        return jax.tree_util.tree_map(lambda a, b: jnp.where(go, a, b), new, old)

    # The branches of apply_detail see the state without its per-row tables and statistics
    # (``small``) and read those (``big``) without returning them: a conditional that passes a
    # large buffer through makes XLA copy it at every event. The tables are updated after the
    # branch, one row at a time, in place.

    def _insert(small, big, go, row, x, y, calibrating):
        dtype = small.model.w.dtype
        model, loss = memory_pair.insert(hyper, small.model, x, y, row)
        stats = _keep(go & calibrating, cal.observe(small.stats, _loss_grads(small.model.w, x, y).reshape(-1),
                                                    small.model.w.reshape(-1)), small.stats)
        inserts = small.inserts + go.astype(jnp.int32)
        reached = (small.phase == LEARNING) & (inserts >= small.calibration.N_star)
        new = small._replace(
            model=_keep(go, model, small.model),
            stats=stats,
            phase=jnp.where(go & reached, INTERLEAVING, small.phase).astype(jnp.int32),
            inserts=inserts,
        )
        return new, _detail(dtype, loss), model.w

    def _delete(small, big, go, row, x, y, calibrating):
        """Returns (small, detail, w_certified); ``detail.ok`` false means refused (NOT_CERTIFIED)."""
        dtype = small.model.w.dtype
        suff, store = big
        odometer, _ = odo.spend(small.odometer)
        key = jax.random.fold_in(small.key, small.events)
        xi = jax.random.normal(key, small.model.w.shape, dtype)
        sigma = small.odometer.sigma.astype(dtype)
        noise = sigma * xi if settings.noise else jnp.zeros_like(xi)
        if mechanism == "exact":
            after = ridge.remove(suff, x, y)
            w_cert = ridge.solve(after, lam)
            bound = ridge.certified_distance(after, w_cert, lam)
            ok, passes, noise = jnp.all(jnp.isfinite(w_cert)), 0, jnp.zeros_like(xi)
            model = memory_pair.restart(small.model, w_cert)
        elif mechanism == "polish":
            n_after = small.inserts - small.deletes - 1
            res = pol.polish(loss_name, pol.store_remove(store, row), n_after, small.model.w, lam,
                             settings.polish_delta, settings.polish_passes)
            w_cert, bound, passes, ok = res.w, res.bound, res.passes, res.certified
            model = memory_pair.restart(small.model, w_cert + noise)
        else:  # seed
            n_present = small.inserts - small.deletes
            step = memory_pair.precondition(hyper, small.model, _loss_grads(small.model.w, x, y))
            w_cert = small.model.w + step / jnp.maximum(n_present - 1, 1).astype(dtype)
            bound, passes, ok = jnp.nan, 0, True
            model = memory_pair.purge(small.model, row)._replace(w=w_cert + noise)
        go = go & ok
        new = small._replace(
            model=_keep(go, model, small.model),
            odometer=_keep(go, odometer, small.odometer),
            deletes=small.deletes + go.astype(jnp.int32),
        )
        noise_norm = jnp.where(go, jnp.linalg.norm(noise), 0.0)
        return new, _detail(dtype, jnp.nan, sigma, noise_norm, bound, passes, ok), w_cert

    def _noop(small, big, go, row, x, y, calibrating):
        return small, _detail(small.model.w.dtype, jnp.nan), small.model.w

    def apply_detail(state, op, row, x, y):
        """One event; returns ``(state, Event, w_certified)``.

        ``y`` is the one-hot f[K] target of ``row``. ``w_certified`` (f[K, d]) is, for a delete
        request, the model before noise (exact: the published minimiser; polish: W~; seed: after
        the removal step), computed even when the request is refused; for other events the
        model after the event. Keep it out of per-event scan outputs (it is not a scalar).
        """
        op = jnp.asarray(op, jnp.int32)
        in_range = (row >= 0) & (row < state.present.shape[0])
        row = jnp.where(in_range, jnp.asarray(row, jnp.int32), 0)  # refused below; no clamped read or write
        dtype = state.model.w.dtype
        was_present = state.present[row]
        phase = state.phase
        correct = jnp.argmax(state.model.w @ x) == jnp.argmax(y)
        fp, mass = _fingerprint(x, y, dtype)
        tol = 8.0 * (x.shape[0] + y.shape[0]) * jnp.finfo(dtype).eps * mass + jnp.finfo(dtype).tiny
        same_row = jnp.all(jnp.abs(fp - state.fingerprint[row]) <= tol)

        is_cal, is_ins, is_del = op == OP_CALIBRATE, op == OP_INSERT, op == OP_DELETE
        phase_ok = jnp.where(is_cal, phase == CALIBRATION,
                             jnp.where(is_ins, phase != CALIBRATION,
                                       jnp.where(is_del, phase == INTERLEAVING, True)))
        member_ok = jnp.where(is_cal | is_ins, ~was_present, jnp.where(is_del, was_present, True))
        budget_ok = ~is_del | (state.odometer.used < state.odometer.m)
        reason = jnp.where(~phase_ok, WRONG_PHASE,
                           jnp.where(~member_ok, jnp.where(is_del, NOT_PRESENT, ALREADY_PRESENT),
                                     jnp.where(is_del & ~same_row, MISMATCH,
                                               jnp.where(~budget_ok, BUDGET, OK)))).astype(jnp.int32)
        reason = jnp.where(in_range | (op == OP_NOOP), reason, BAD_ROW).astype(jnp.int32)
        go = (reason == OK) & (op != OP_NOOP)

        # One branch per kind of work (calibrate and insert share one; it feeds the calibrator
        # when calibrating), so the step compiles the insert once.
        branch = jnp.where(is_del, 2, jnp.where(is_cal | is_ins, 1, 0))
        small = state._replace(present=None, fingerprint=None, suff=None, store=None)
        small, (loss, ok, noise_norm, sigma, bound, passes), w_cert = lax.switch(
            branch, [_noop, _insert, _delete], small, (state.suff, state.store), go, row, x, y, is_cal)
        reason = jnp.where(go & ~ok, NOT_CERTIFIED, reason).astype(jnp.int32)
        applied = go & ok
        applied_insert = applied & (is_cal | is_ins)
        applied_delete = applied & is_del
        # Per-row tables and statistics: one row (or one rank-one term), in place.
        sign = applied_insert.astype(jnp.int32) - applied_delete.astype(jnp.int32)
        out_state = small._replace(
            present=state.present.at[row].set(jnp.where(sign != 0, sign > 0, was_present)),
            fingerprint=state.fingerprint.at[row].set(
                jnp.where(applied_insert, fp, jnp.where(applied_delete, 0.0, state.fingerprint[row]))),
            suff=ridge.update(state.suff, x, y, sign) if mechanism == "exact" else None,
            store=pol.store_update(state.store, row, x, y, sign) if mechanism == "polish" else None,
            events=state.events + 1,
        )
        nan = jnp.asarray(jnp.nan, dtype)
        event = Event(
            op=op,
            applied=applied,
            reason=reason,
            loss=jnp.where(applied_insert, loss, nan),
            correct=applied_insert & correct,
            phase=out_state.phase,
            eps_spent=out_state.odometer.eps_spent,
            capacity_remaining=(out_state.odometer.m - out_state.odometer.used).astype(jnp.int32),
            noise_norm=noise_norm,
            sigma=jnp.where(is_del, sigma, 0.0),
            bound=jnp.where(is_del, bound, nan),
            passes=jnp.where(is_del, passes, 0).astype(jnp.int32),
        )
        return out_state, event, w_cert

    def apply(state, op, row, x, y):
        """One event; returns ``(state, Event)``. ``y`` is the one-hot f[K] target of ``row``."""
        state, event, _ = apply_detail(state, op, row, x, y)
        return state, event

    def finalize(state):
        """Ends CALIBRATION: fixes (G, D, c, C, N*) and the odometer of the mechanism."""
        # H of the K-output model is block diagonal: its spectrum is the union of the blocks'.
        c, big_c = memory_pair.eigen_bounds(hyper, state.model)
        one = state.model.memory  # the calibrator's own (c, C) are replaced just below
        if one.s.ndim == 3:  # one memory per output
            one = jax.tree_util.tree_map(lambda a: a[0], one)
        calibration = cal.finalize(state.stats, one, settings.gamma_learn, quantile=settings.quantile,
                                   D_cap=settings.D_cap, bound=settings.bound, min_points=settings.min_points)
        kappa = cal.kappa(c, big_c, settings.bound)
        ratio = calibration.G * calibration.D * kappa / settings.gamma_learn
        n_star = jnp.maximum(jnp.ceil(ratio * ratio), 1.0)
        n_star = jnp.where(jnp.isfinite(n_star) & (n_star < 2.0**31 - 128), n_star, 2.0**31 - 128)
        calibration = calibration._replace(c=c, C=big_c, kappa=kappa, N_star=n_star.astype(jnp.int32))
        # The regret bounds use the clipping bound sqrt(K) clip_norm for G (conservative): the
        # calibrated 95% quantile leaves 5% of the gradients outside it.
        g_sens = calibration._replace(G=jnp.asarray(sens_bound, calibration.G.dtype))
        dtype = state.model.w.dtype
        if mechanism == "exact":
            odometer = odo.exact_state(dtype)
        elif mechanism == "polish":
            odometer = odo.finalize_polish(g_sens, settings.horizon, settings.gamma_priv, settings.eps_total,
                                           settings.delta_total, lam, settings.polish_delta,
                                           capacity=settings.polish_capacity, num_outputs=k_out,
                                           accountant=settings.accountant, loss=loss_name)
        else:
            # Seed sensitivity: Delta = sqrt(K) clip_norm / lambda, data-independent.
            odometer = odo.finalize(g_sens, settings.horizon, settings.gamma_priv, settings.eps_total,
                                    settings.delta_total, lam, settings.delta_B, accountant=settings.accountant,
                                    dim=int(state.model.w.size), max_deletions=settings.max_deletions)
        odometer = jax.tree_util.tree_map(lambda a, b: a.astype(b.dtype), odometer, state.odometer)
        reached = state.inserts >= calibration.N_star
        return state._replace(
            calibration=calibration,
            odometer=odometer,
            phase=jnp.where(reached, INTERLEAVING, LEARNING).astype(jnp.int32),
        )

    def predict(state, x):
        return state.model.w @ x

    return Unlearner(init, apply, finalize, predict, settings, hyper, apply_detail)
