"""``mpjax.MemoryPair``: the imperative API researchers know, on the pure core.

    mp = mpjax.MemoryPair(dim=55, num_classes=7)          # mechanism="exact" (default), "polish" or "seed"
    for x, y in calibration_rows:  mp.calibrate_step(x, y)
    mp.finalize_calibration()             # fixes G, D, c, C, N* and the mechanism's odometer
    for x, y in stream:   mp.insert(x, y)  # LEARNING until N* inserts, then INTERLEAVING
    mp.predict(x)                          # class scores, once ready_to_predict
    mp.delete(x, y)                        # certified delete, once ready_to_delete

Every call runs one compiled step of :mod:`mpjax.unlearning` (compiled once per
instance shape). An operation the pure core refuses raises ``RuntimeError``
naming the reason; the model is left unchanged. Samples are identified by their
bytes (x and y): deleting a sample deletes one inserted copy of it.

The deletion mechanisms and what each certifies are described in
:mod:`mpjax.unlearning.core`: ``exact`` publishes the exact minimiser of the ridge
objective over the rows left (no noise, no budget); ``polish`` publishes a model
certified within ``Settings.polish_delta`` of it plus Gaussian noise fixed by the
configuration; ``seed`` is the original removal step plus noise. For the exactness
claims, enable float64 (``jax.config.update("jax_enable_x64", True)``) before creating
the instance; the rows are then kept as the float32 values given.
"""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from mpjax import unlearning as ul
from mpjax.privacy import odometer as odo

__all__ = ["MemoryPair"]


class MemoryPair:
    """Memory-Pair learner with calibration, a privacy odometer and certified deletes.

    Args:
      dim: feature dimension d (features should satisfy |x| <= 1).
      num_classes: K for classification (``y`` is a class index); None for one
        regression output (``y`` is a float).
      max_points: capacity of the membership table (rows that can be inserted).
      seed: integer seed (deletion noise).
      mechanism: "exact", "polish" or "seed" (overrides ``settings.mechanism``; default: exact
        for squared loss, polish for logistic).
      settings: :class:`mpjax.unlearning.Settings` (privacy budget, gammas, accountant, polish).
      **hyper: Memory-Pair hyper-parameters (memory_size, learning_rate, l2, clip_norm, ...).
    """

    def __init__(self, dim: int, num_classes: int | None = None, *, max_points: int = 100_000, seed: int = 42,
                 mechanism: str | None = None, settings: ul.Settings | None = None, **hyper):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (or None for regression), got {num_classes}")
        self.dim = int(dim)
        self.num_classes = num_classes
        self._k = num_classes or 1
        self.max_points = int(max_points)
        settings = settings or ul.Settings()
        if mechanism is not None:
            settings = settings._replace(mechanism=mechanism)
        self._u = ul.make(self._k, settings, **hyper)
        self._state = self._u.init(self.dim, self.max_points, jax.random.key(seed))
        self._apply = jax.jit(self._u.apply)
        self._finalize = jax.jit(self._u.finalize)
        self._predict = jax.jit(self._u.predict)
        self._ids: dict[str, list[int]] = {}
        self._next = 0

    # ------------------------------------------------------------------ helpers
    def _xy(self, x, y):
        x = np.asarray(x, np.float32).reshape(-1)
        if x.shape != (self.dim,):
            raise ValueError(f"x must have {self.dim} features, got shape {np.shape(x)}")
        if not np.isfinite(x).all():
            raise ValueError("x contains NaN or Inf")
        if self.num_classes is None:
            yv = np.asarray([float(y)], np.float32)
            if not np.isfinite(yv).all():
                raise ValueError("y is NaN or Inf")
        else:
            label = int(y)
            if label != y or not 0 <= label < self.num_classes:
                raise ValueError(f"y must be a class index in [0, {self.num_classes}), got {y!r}")
            yv = np.eye(self.num_classes, dtype=np.float32)[label]
        return x, yv

    @staticmethod
    def _key(x, yv) -> str:
        return hashlib.sha256(x.tobytes() + b"|" + yv.tobytes()).hexdigest()

    def _run(self, op, row, x, yv):
        state, event = self._apply(self._state, op, row, jnp.asarray(x), jnp.asarray(yv))
        event = jax.device_get(event)
        if not bool(event.applied):
            reason = ul.REASONS[int(event.reason)]
            raise RuntimeError(f"{ul.OP_NAMES[op]} refused in phase {self.phase}: {reason}"
                               + self._budget_hint(int(event.reason)))
        self._state = state
        return event

    def _budget_hint(self, reason):
        if reason == ul.BUDGET and int(self._state.odometer.status) == odo.STATUS_REGRET:
            return (" (the polish regret condition R_ins + T charge <= gamma_priv T fails at the configured noise, "
                    "so no deletion is admitted; raise gamma_priv or the horizon, or use mechanism='exact')")
        if reason == ul.BUDGET:
            return (f" (capacity m = {int(self._state.odometer.m)} used up; retrain from scratch "
                    "to delete more)")
        if reason == ul.NOT_CERTIFIED:
            s = self._u.settings
            return (f" (no certified model within polish_delta = {s.polish_delta:g} after polish_passes = "
                    f"{s.polish_passes} passes; the model is unchanged: raise polish_passes or polish_delta, and use "
                    "float64 for small polish_delta)")
        if reason == ul.WRONG_PHASE and self.phase == "CALIBRATION":
            return " (call finalize_calibration() first)"
        if reason == ul.WRONG_PHASE and self.phase == "LEARNING":
            return f" (deletions open after N* = {self.n_star} inserts; {self.inserts} so far)"
        return ""

    def _add(self, op, x, y) -> float:
        """Calibrate or insert one sample under a fresh row id; returns the loss before the update."""
        x, yv = self._xy(x, y)
        if self._next >= self.max_points:
            raise RuntimeError(f"membership table full ({self.max_points} rows); create with a larger max_points")
        event = self._run(op, self._next, x, yv)
        self._ids.setdefault(self._key(x, yv), []).append(self._next)
        self._next += 1
        return float(event.loss)

    # ------------------------------------------------------------------ API
    def calibrate_step(self, x, y) -> float:
        """Inserts one calibration sample (CALIBRATION phase); returns its loss before the update."""
        return self._add(ul.OP_CALIBRATE, x, y)

    def finalize_calibration(self) -> dict:
        """Ends CALIBRATION: returns the calibration (G, D, c, C, N*) and the odometer (m, sigma, ...)."""
        if self.phase != "CALIBRATION":
            raise RuntimeError(f"finalize_calibration() called in phase {self.phase}; it ends CALIBRATION once")
        self._state = self._finalize(self._state)
        return self.calibration

    def insert(self, x, y) -> float:
        """One quasi-Newton insert; returns the loss before the update."""
        return self._add(ul.OP_INSERT, x, y)

    def delete(self, x, y) -> float:
        """Certified deletion of an inserted sample; returns the norm of the added noise (0 for exact)."""
        x, yv = self._xy(x, y)
        rows = self._ids.get(self._key(x, yv))
        if not rows:
            raise RuntimeError("delete refused: this sample was never inserted, or every copy was already deleted")
        event = self._run(ul.OP_DELETE, rows[-1], x, yv)
        rows.pop()
        return float(event.noise_norm)

    def predict(self, x) -> np.ndarray | float:
        """Class scores f[K] (arg-max is the class), or the regression output."""
        if not self.ready_to_predict:
            raise RuntimeError(f"not ready to predict in phase {self.phase}: needs N* = {self.n_star} inserts "
                               f"after calibration ({self.inserts} so far)")
        x = np.asarray(x, np.float32).reshape(-1)
        if x.shape != (self.dim,):
            raise ValueError(f"x must have {self.dim} features, got shape {np.shape(x)}")
        out = np.asarray(self._predict(self._state, jnp.asarray(x)))
        return float(out[0]) if self.num_classes is None else out

    # ------------------------------------------------------------------ properties
    @property
    def phase(self) -> str:
        return ul.PHASE_NAMES[int(self._state.phase)]

    @property
    def ready_to_predict(self) -> bool:
        return int(self._state.phase) == ul.INTERLEAVING

    @property
    def mechanism(self) -> str:
        return self._u.settings.mechanism

    @property
    def ready_to_delete(self) -> bool:
        odo = self._state.odometer
        return self.ready_to_predict and int(odo.used) < int(odo.m)

    @property
    def inserts(self) -> int:
        return int(self._state.inserts)

    @property
    def deletes(self) -> int:
        return int(self._state.deletes)

    @property
    def n_star(self) -> int | None:
        return None if self.phase == "CALIBRATION" else int(self._state.calibration.N_star)

    @property
    def calibration(self) -> dict:
        c, o = self._state.calibration, self._state.odometer
        return {"mechanism": self.mechanism, "G": float(c.G), "D": float(c.D), "c": float(c.c), "C": float(c.C),
                "N_star": int(c.N_star), "m": None if self.mechanism == "exact" else int(o.m),
                "sigma": float(o.sigma), "eps_step": float(o.eps_step), "delta_step": float(o.delta_step),
                "eps_spent": float(o.eps_spent), "deletions_used": int(o.used)}

    @property
    def state(self) -> ul.UnlearningState:
        """The pure state (a pytree), for use with :mod:`mpjax.unlearning` directly."""
        return self._state
