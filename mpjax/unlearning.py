"""Certified unlearning for the Memory-Pair learner: phase machine, delete, exact references.

The model is the K-output Memory-Pair learner (``multi_output(memory_pair.make(...), K)``),
whose parameters theta = vec(W), W: f[K, d]. Operations arrive as an event stream
``(op, row)`` consumed by :func:`apply` inside one ``lax.scan``:

* ``OP_CALIBRATE`` (CALIBRATION only): an insert that also feeds the calibrator.
* ``OP_INSERT`` (LEARNING, INTERLEAVING): one quasi-Newton insert.
* ``OP_DELETE`` (INTERLEAVING only): a certified deletion of a present row.
* ``OP_NOOP``: nothing.

An operation the phase, the membership or the budget forbids is *refused*: the
state is returned unchanged (but for the event counter) and ``refused`` is
emitted; nothing is applied silently. Phases: CALIBRATION -> (``finalize``) ->
LEARNING -> (inserts reach N*) -> INTERLEAVING; the model is ready to predict
and to delete in INTERLEAVING.

:func:`finalize` is called once, between scans (it runs the calibrator's and the
odometer's searches, which must not sit inside every scan step): it fixes
``(G, D, c, C, N*)`` and the deletion capacity ``m``, ``sigma`` and the per-step
``(epsilon, delta)``. Both depend only on the calibration constants and the
configuration, so fixing the odometer at calibration time is equivalent to
fixing it when LEARNING ends.

Delete (Memory-Pair). For a present row (x, y):

1. removal step ``theta <- theta + (1 / (n - 1)) H clip(grad l(theta; x, y), G)``: the
   Newton / influence-function estimate of the model without the row, with n the
   number of rows present; its norm is at most ``C G / (n - 1) <= G / lambda``;
2. the row's curvature pairs are purged from the L-BFGS ring (tags), so nothing
   computed from the row stays behind in the memory;
3. ``theta <- theta + sigma xi``, ``xi ~ N(0, I)``, with ``sigma = z Delta`` and the
   data-independent sensitivity ``Delta = sqrt(K) clip_norm / lambda`` (the bound on
   one sample's clipped gradient over all K outputs, over lambda), never the realised
   step and never the calibrated quantile G (which 5% of the gradients exceed). The
   odometer's regret terms therefore also use this bound for G (conservative).

Exact references: :class:`RidgeRef` keeps the exact ridge solution of the rows
present (insert = Sherman-Morrison update, delete = exact downdate, P shared by
the K outputs) and the optimal objective ``J`` of those rows, so the distance to
retraining and the comparator are exact at every event.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from mpjax.learners import base, memory_pair
from mpjax.privacy import calibrator as cal
from mpjax.privacy import odometer as odo

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
    "Settings",
    "UnlearningState",
    "Event",
    "Unlearner",
    "make",
    "RidgeRef",
    "ridge_init",
    "ridge_insert",
    "ridge_delete",
]

CALIBRATION, LEARNING, INTERLEAVING = 0, 1, 2
PHASE_NAMES = ("CALIBRATION", "LEARNING", "INTERLEAVING")
OP_NOOP, OP_CALIBRATE, OP_INSERT, OP_DELETE = -1, 0, 1, 2
OP_NAMES = {OP_NOOP: "noop", OP_CALIBRATE: "calibrate", OP_INSERT: "insert", OP_DELETE: "delete"}

# Refusal reasons (Event.reason).
OK, WRONG_PHASE, NOT_PRESENT, ALREADY_PRESENT, BUDGET = 0, 1, 2, 3, 4
REASONS = ("ok", "wrong phase", "row not present (never inserted or already deleted)",
           "row already present", "deletion budget exhausted")

_TAG_NOISE = 11  # fold_in purpose tag of the deletion noise


class Settings(NamedTuple):
    """Static privacy and calibration settings (Python values)."""

    horizon: int = 100_000  # T: insertions the regret budget is spread over
    gamma_learn: float = 0.5  # target average regret of LEARNING (sets N*)
    gamma_priv: float = 0.5  # target average regret with deletions (sets m)
    eps_total: float = 1.0
    delta_total: float = 1e-5
    delta_B: float = 0.05  # failure probability of the noise-norm bound
    accountant: str = "zcdp"
    bound: str = "original"  # N* constant: sqrt(cC) ("original") or sqrt(C/c) ("corrected")
    quantile: float = 0.95  # G = this quantile of the calibration gradient norms
    D_cap: float = float("inf")
    min_points: int = 32
    window: int = 1024  # calibrator ring of gradient norms
    noise: bool = True  # False only for diagnostics (no certificate)
    max_deletions: int = 2**20


class UnlearningState(NamedTuple):
    model: memory_pair.MemoryPairState  # leaves with a leading K axis
    stats: cal.CalibratorStats
    calibration: cal.Calibration
    odometer: odo.OdometerState
    present: jax.Array  # bool[n] rows currently in the model
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
    capacity_remaining: jax.Array  # i32[] m - used (0 before finalize)
    noise_norm: jax.Array  # f[] |sigma xi| of a delete (0 otherwise)


class Unlearner(NamedTuple):
    init: object  # (dim, num_rows, key) -> UnlearningState
    apply: object  # (state, op, row, x, y) -> (state, Event)
    finalize: object  # (state) -> state
    predict: object  # (state, x) -> f[K]
    settings: Settings
    hyper: object


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


def make(num_outputs: int, settings: Settings = Settings(), **memory_pair_hyper) -> Unlearner:
    """A K-output Memory-Pair learner with calibration, accounting and certified deletes.

    Args:
      num_outputs: K (one-hot targets of K classes).
      settings: privacy and calibration settings.
      **memory_pair_hyper: passed to :func:`mpjax.learners.memory_pair.make`;
        ``clip_norm`` (G for each output's loss gradient) must be set: the
        sensitivity bound needs clipped gradients.
    """
    if memory_pair_hyper.get("clip_norm", 1.0) is None:
        raise ValueError("certified deletion needs clipped gradients: clip_norm must not be None")
    if settings.accountant not in ("basic", "zcdp", "rdp", "exact"):
        raise ValueError(f"unknown accountant {settings.accountant!r}; valid: basic, zcdp, rdp, exact")
    for name in ("gamma_learn", "gamma_priv", "eps_total", "delta_total", "delta_B"):
        base.check_positive(**{name: getattr(settings, name)})
    scalar = memory_pair.make(**memory_pair_hyper)
    learner = base.multi_output(scalar, num_outputs)
    hyper = scalar.hyper
    lam = hyper.l2
    k_out = num_outputs
    sens_bound = float(hyper.clip_norm) * float(num_outputs) ** 0.5  # |grad| bound of one sample, all outputs

    def init(dim, num_rows, key):
        model = learner.init(dim, jax.random.fold_in(key, 0))
        dtype = model.w.dtype
        return UnlearningState(
            model=model,
            stats=cal.init(k_out * dim, settings.window, dtype),
            calibration=_empty_calibration(dtype),
            odometer=_empty_odometer(dtype),
            present=jnp.zeros((num_rows,), bool),
            phase=jnp.asarray(CALIBRATION, jnp.int32),
            events=jnp.zeros((), jnp.int32),
            inserts=jnp.zeros((), jnp.int32),
            deletes=jnp.zeros((), jnp.int32),
            key=jax.random.fold_in(key, _TAG_NOISE),
        )

    def _loss_grads(w, x, y):
        # Clipped per-output loss gradients, f[K, d] (what the calibrator observes).
        z = w @ x
        return jax.vmap(lambda zk, yk: base.grad_clip(hyper.fn.dmargin(zk, yk) * x, hyper.clip_norm))(z, y)

    def _insert(state, row, x, y, calibrating):
        new_stats = cal.observe(state.stats, _loss_grads(state.model.w, x, y).reshape(-1),
                                state.model.w.reshape(-1))
        model, loss = memory_pair.insert(hyper, state.model, x, y, row)
        inserts = state.inserts + 1
        reached = (state.phase == LEARNING) & (inserts >= state.calibration.N_star)
        return UnlearningState(
            model=model,
            stats=jax.tree_util.tree_map(lambda a, b: jnp.where(calibrating, a, b), new_stats, state.stats),
            calibration=state.calibration,
            odometer=state.odometer,
            present=state.present.at[row].set(True),
            phase=jnp.where(reached, INTERLEAVING, state.phase).astype(jnp.int32),
            events=state.events + 1,
            inserts=inserts,
            deletes=state.deletes,
            key=state.key,
        ), loss

    def _delete(state, row, x, y):
        odometer, allowed = odo.spend(state.odometer)
        n_present = jnp.sum(state.present)
        w = state.model.w
        grads = _loss_grads(w, x, y)  # f[K, d], clipped to G per output
        step = memory_pair.precondition(hyper, state.model, grads)
        w = w + step / jnp.maximum(n_present - 1, 1).astype(w.dtype)
        purged = memory_pair.purge(state.model, row)
        key = jax.random.fold_in(state.key, state.events)
        xi = jax.random.normal(key, w.shape, w.dtype)
        noise = odometer.sigma * xi if settings.noise else jnp.zeros_like(w)
        w = w + noise
        model = purged._replace(w=w)
        new = UnlearningState(
            model=model,
            stats=state.stats,
            calibration=state.calibration,
            odometer=odometer,
            present=state.present.at[row].set(False),
            phase=state.phase,
            events=state.events + 1,
            inserts=state.inserts,
            deletes=state.deletes + 1,
            key=state.key,
        )
        return new, allowed, jnp.linalg.norm(noise)

    def _refuse(state):
        return state._replace(events=state.events + 1)

    def apply(state, op, row, x, y):
        """One event; returns ``(state, Event)``. ``y`` is the one-hot f[K] target of ``row``."""
        op = jnp.asarray(op, jnp.int32)
        row = jnp.asarray(row, jnp.int32)
        was_present = state.present[row]
        phase = state.phase
        nan = jnp.asarray(jnp.nan, state.model.w.dtype)
        pred = state.model.w @ x
        correct = jnp.argmax(pred) == jnp.argmax(y)

        is_cal = op == OP_CALIBRATE
        is_ins = op == OP_INSERT
        is_del = op == OP_DELETE
        phase_ok = jnp.where(is_cal, phase == CALIBRATION,
                             jnp.where(is_ins, phase != CALIBRATION,
                                       jnp.where(is_del, phase == INTERLEAVING, True)))
        member_ok = jnp.where(is_cal | is_ins, ~was_present, jnp.where(is_del, was_present, True))
        budget_ok = ~is_del | (state.odometer.used < state.odometer.m)
        reason = jnp.where(~phase_ok, WRONG_PHASE,
                           jnp.where(~member_ok, jnp.where(is_del, NOT_PRESENT, ALREADY_PRESENT),
                                     jnp.where(~budget_ok, BUDGET, OK))).astype(jnp.int32)
        go = (reason == OK) & (op != OP_NOOP)

        ins_state, loss = _insert(state, row, x, y, is_cal)
        del_state, _, noise_norm = _delete(state, row, x, y)
        refused = _refuse(state)
        out_state = jax.tree_util.tree_map(
            lambda a, b, c: jnp.where(go & (is_cal | is_ins), a, jnp.where(go & is_del, b, c)),
            ins_state, del_state, refused,
        )
        applied_insert = go & (is_cal | is_ins)
        event = Event(
            op=op,
            applied=go,
            reason=reason,
            loss=jnp.where(applied_insert, loss, nan),
            correct=applied_insert & correct,
            phase=out_state.phase,
            eps_spent=out_state.odometer.eps_spent,
            capacity_remaining=(out_state.odometer.m - out_state.odometer.used).astype(jnp.int32),
            noise_norm=jnp.where(go & is_del, noise_norm, 0.0),
        )
        return out_state, event

    def finalize(state):
        """Ends CALIBRATION: fixes (G, D, c, C, N*) and the odometer (m, sigma, eps_step)."""
        # H of the K-output model is block diagonal: its spectrum is the union of the blocks'.
        c, big_c = memory_pair.eigen_bounds(hyper, state.model)
        one = state.model.memory
        if one.s.ndim == 3:  # one memory per output
            one = jax.tree_util.tree_map(lambda a: a[0], one)
        calibration = cal.finalize(state.stats, one, settings.gamma_learn, quantile=settings.quantile,
                                   D_cap=settings.D_cap, bound=settings.bound, min_points=settings.min_points)
        kappa = cal.kappa(c, big_c, settings.bound)
        ratio = calibration.G * calibration.D * kappa / settings.gamma_learn
        n_star = jnp.maximum(jnp.ceil(ratio * ratio), 1.0)
        n_star = jnp.where(jnp.isfinite(n_star) & (n_star < 2.0**31 - 128), n_star, 2.0**31 - 128)
        calibration = calibration._replace(c=c, C=big_c, kappa=kappa, N_star=n_star.astype(jnp.int32))
        # Sensitivity from the clipping actually applied, not from the calibrated quantile G: each
        # output's loss gradient is clipped to clip_norm, so one sample's full K*d gradient has norm
        # <= sqrt(K) clip_norm, and Delta = sqrt(K) clip_norm / lambda is a valid, data-independent
        # bound. (The 95% quantile G would leave 5% of the gradients outside the bound.)
        g_sens = jnp.asarray(sens_bound, calibration.G.dtype)
        odometer = odo.finalize(calibration._replace(G=g_sens), settings.horizon, settings.gamma_priv,
                                settings.eps_total,
                                settings.delta_total, lam, settings.delta_B, accountant=settings.accountant,
                                dim=int(state.model.w.size), max_deletions=settings.max_deletions)
        reached = state.inserts >= calibration.N_star
        return state._replace(
            calibration=calibration,
            odometer=odometer,
            phase=jnp.where(reached, INTERLEAVING, LEARNING).astype(jnp.int32),
        )

    def predict(state, x):
        return state.model.w @ x

    return Unlearner(init, apply, finalize, predict, settings, hyper)


# --------------------------------------------------------------------------- exact reference


class RidgeRef(NamedTuple):
    """Exact ridge on the rows present: W = P X^T Y, P = (lam I + X^T X)^{-1}; J its optimal objective."""

    w: jax.Array  # f[d, K]
    p: jax.Array  # f[d, d] shared by the K outputs
    j: jax.Array  # f[] min_W 1/2 |X W - Y|^2 + lam/2 |W|^2 over the rows present


def ridge_init(dim: int, num_outputs: int, lam: float, dtype=None) -> RidgeRef:
    dtype = dtype or jnp.result_type(float)
    return RidgeRef(jnp.zeros((dim, num_outputs), dtype), jnp.eye(dim, dtype=dtype) / lam, jnp.zeros((), dtype))


def ridge_insert(ref: RidgeRef, x: jax.Array, y: jax.Array) -> RidgeRef:
    """Adds a row: Sherman-Morrison, and J += 1/2 |e|^2 / (1 + x.Px) (prediction-error identity)."""
    u = ref.p @ x
    denom = 1.0 + x @ u
    e = y - x @ ref.w
    return RidgeRef(ref.w + jnp.outer(u, e) / denom, ref.p - jnp.outer(u, u) / denom,
                    ref.j + 0.5 * (e @ e) / denom)


def ridge_delete(ref: RidgeRef, x: jax.Array, y: jax.Array) -> RidgeRef:
    """Removes a present row exactly: downdate, and J -= 1/2 |r|^2 / (1 - h), h = x.Px (leave-one-out)."""
    u = ref.p @ x
    h = x @ u
    denom = jnp.where(h < 1.0, 1.0 - h, 1.0)
    r = y - x @ ref.w
    return RidgeRef(ref.w - jnp.outer(u, r) / denom, ref.p + jnp.outer(u, u) / denom,
                    ref.j - 0.5 * (r @ r) / denom)
