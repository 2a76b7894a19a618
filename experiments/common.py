"""Host-side helpers shared by the experiments: safe output, metadata, statistics, plots.

Everything an experiment writes goes through the atomic writers here (temporary
file in the same folder, then ``os.replace``), so a crash never leaves a
half-written CSV, JSON, NPZ or PNG.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = [
    "COLORS",
    "ResultsExistError",
    "atomic_write",
    "write_text",
    "write_json",
    "write_csv",
    "write_npz",
    "save_figure",
    "resolve_workdir",
    "guard_existing",
    "config_hash",
    "provenance_metadata",
    "t_quantile_975",
    "mean_ci",
    "Stopwatch",
    "format_table",
    "resolve_config",
    "default_log_level",
]

# Plot colours, cycled in this order before any other (STYLE.md).
COLORS = ("black", "red", "blue", "brown", "purple", "green")

PACKAGES = ("jax", "jaxlib", "optax", "chex", "numpy", "pandas", "matplotlib", "ml-collections", "absl-py")


class ResultsExistError(RuntimeError):
    """Earlier results with a different configuration would be overwritten."""


# --------------------------------------------------------------------------- writing


def atomic_write(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Writes ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text(path, text: str) -> pathlib.Path:
    return atomic_write(path, text.encode())


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, pathlib.Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite_or_none(obj):
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def write_json(path, obj: Mapping[str, Any]) -> pathlib.Path:
    """Strict JSON (NaN/Inf become null), sorted keys, atomically."""
    text = json.dumps(_finite_or_none(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    return write_text(path, text + "\n")


def write_csv(path, frame) -> pathlib.Path:
    """A pandas DataFrame as CSV (full float precision), atomically."""
    return write_text(path, frame.to_csv(index=False, float_format="%.10g"))


def write_npz(path, **arrays) -> pathlib.Path:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write(path, buf.getvalue())


def save_figure(fig, path, dpi: int = 130) -> pathlib.Path:
    """Saves a matplotlib figure as PNG atomically (deterministic metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return atomic_write(path, buf.getvalue())


# --------------------------------------------------------------------------- folders


def resolve_workdir(workdir: str, root: str | os.PathLike | None = None) -> pathlib.Path:
    """The results folder, refused if it escapes the project (or ``root``).

    A relative ``workdir`` is taken under ``root`` (default: the current
    directory); ``..`` components or symlinks that lead outside it are refused,
    so a run-folder name can never write over unrelated files. An absolute
    path is accepted as the user's explicit choice.
    """
    if not workdir or not str(workdir).strip():
        raise ValueError("workdir must be a non-empty path")
    p = pathlib.Path(workdir).expanduser()
    if p.is_absolute():
        return p
    base = pathlib.Path(root or os.getcwd()).resolve()
    resolved = (base / p).resolve()
    if resolved != base and base not in resolved.parents:
        raise ValueError(f"workdir {workdir!r} escapes its parent folder {str(base)!r}; refusing to write there")
    return resolved


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of a resolved configuration (for rerun detection)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def guard_existing(meta_path: pathlib.Path, new_hash: str, overwrite: bool) -> None:
    """Refuses to replace results made with a different configuration.

    A rerun of the same configuration (same hash recorded in the metadata)
    may replace its own files: the results are deterministic. Anything else
    needs ``overwrite=True`` or another workdir.
    """
    if overwrite or not meta_path.exists():
        return
    try:
        old = json.loads(meta_path.read_text()).get("config_hash")
    except (OSError, ValueError):
        old = None
    if old != new_hash:
        raise ResultsExistError(
            f"{meta_path} holds results of a different configuration (hash {old}, now {new_hash}); "
            "pass --overwrite to replace them or choose another --workdir"
        )


# --------------------------------------------------------------------------- flags


def resolve_config(config, named: Mapping[str, Any], default):
    """Applies named flags over a ConfigDict; a field set both ways must agree.

    Args:
      config: the ``--config`` value (with any ``--config.x=...`` overrides).
      named: flag name -> value (None when the flag was not given).
      default: the experiment's ``get_config()``, to tell which fields were overridden.

    Raises:
      absl.app.UsageError: a named flag and a ``--config.`` override set one field to
        different values (a one-line error, like any other bad flag).
    """
    from absl import app

    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
        for name, value in named.items():
            if value is None:
                continue
            if cfg[name] != default[name] and cfg[name] != value:
                raise app.UsageError(f"--{name}={value} conflicts with --config.{name}={cfg[name]}; set it one way")
            cfg[name] = value
    return cfg


# --------------------------------------------------------------------------- metadata


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def provenance_metadata() -> dict[str, Any]:
    """Git commit, package versions, backend and host: what every result folder records."""
    import jax

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "packages": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "created_unix": time.time(),
    }


# --------------------------------------------------------------------------- statistics

# Two-sided 95% Student-t quantiles t_{0.975, nu} for nu = 1..30 (standard tables).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)


def t_quantile_975(nu: int) -> float:
    """t_{0.975, nu}: the table for nu <= 30, a Cornish-Fisher expansion beyond (error < 1e-4)."""
    if nu < 1:
        return math.nan
    if nu <= 30:
        return _T975[nu - 1]
    z = 1.959963984540054
    return z + (z**3 + z) / (4 * nu) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * nu**2)


def mean_ci(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% Student-t interval over ``axis``, ignoring non-finite entries.

    One finite replicate gives lo = hi = mean; none gives NaN (computed from counts, so an
    all-NaN slice is NaN without NumPy's empty-slice warnings).
    """
    v = np.moveaxis(np.asarray(values, np.float64), axis, 0)
    ok = np.isfinite(v)
    n = ok.sum(axis=0)
    vz = np.where(ok, v, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, vz.sum(axis=0) / np.maximum(n, 1), np.nan)
        var = np.where(ok, (v - mean) ** 2, 0.0).sum(axis=0) / np.maximum(n - 1, 1)
    q = np.vectorize(lambda k: t_quantile_975(int(k) - 1) if k >= 2 else 0.0, otypes=[float])(np.atleast_1d(n))
    half = q.reshape(np.shape(n)) * np.sqrt(var) / np.sqrt(np.maximum(n, 1))
    return mean, mean - half, mean + half


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        return False


def format_table(rows: Iterable[Mapping[str, Any]], columns: list[str]) -> str:
    """A plain fixed-width text table for the end-of-run summary."""
    rows = list(rows)

    def fmt(v):
        if isinstance(v, float):
            return "nan" if not math.isfinite(v) else f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join([line, sep, *body])


def default_log_level() -> None:
    """Library INFO logs off unless ``--verbosity`` was given (call at the start of ``main``).

    absl turns Python logging to INFO after parsing flags, which prints other libraries'
    informational lines (JAX probing for a TPU, matplotlib building its font cache) on
    every run. Warnings and errors still show; ``--verbosity=0`` brings INFO back.
    """
    from absl import flags, logging

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


# --------------------------------------------------------------------------- BLAS threads


@contextlib.contextmanager
def single_threaded_blas():
    """Limits OpenBLAS (NumPy's, and the copy JAX's CPU LAPACK kernels call) to one thread inside.

    On a shared, oversubscribed CPU a multi-threaded OpenBLAS call inside a compiled scan (a
    Cholesky per exact deletion) took 2-215 ms instead of 1 ms (measured, 4 lanes, d = 198): the
    threads spin for cores they do not get. Needs ``threadpoolctl`` (installed with scikit-learn,
    which mlxtend requires); without it this is a no-op. Yields whether the limit is in force.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    import jax.numpy as jnp

    jnp.linalg.cholesky(jnp.eye(2)).block_until_ready()  # loads the LAPACK that JAX calls
    with threadpool_limits(limits=1, user_api="blas"):
        yield True


__all__ += ["single_threaded_blas"]


# --------------------------------------------------------------------------- XLA CPU settings for the scans

#: XLA CPU compiles a ``while`` loop whose body moves fewer bytes per iteration than this
#: into one function (its small-while-loop hoisting) instead of running every kernel of
#: every iteration through the thunk runtime (~120-150 ns of dispatch each; a learner's
#: step is 10-40 small kernels). Set through ``XLA_FLAGS`` by :func:`configure_xla_cpu`;
#: 1 GiB: every loop that XLA can hoist (the learners' scans at every seed batch width
#: measured; README "Where the time goes"). Loops with a LAPACK call (the comparator) or a
#: YNNPACK fusion are never hoisted.
SMALL_LOOP_BYTES = 1 << 30

#: Per-program XLA options that let every learner's scan be hoisted: YNNPACK fusions off (a
#: loop with one is never hoisted: Memory-Pair's small dots are YNNPACK fusions) and Eigen on
#: one thread (a dot inside a hoisted loop calls Eigen, whose thread pool costs more than a
#: 55 x 20 product). Memory-Pair gets them up to :data:`FAST_SCAN_MAX_DIM` features only: at
#: d = 197 and 785 its hoisted step was 4-6x slower (its small matrix products), while the
#: other learners are hoisted at every size measured.
SCAN_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_multi_thread_eigen": False}
FAST_SCAN_MAX_DIM = 128
_THRESHOLD_KEY = "xla_cpu_small_while_loop_byte_threshold"


def whole_scan(algo: str, dim: int, small_loop_bytes: int) -> bool:
    """Whether learner ``algo``'s scan over ``dim`` features is compiled whole (hoisted).

    ``small_loop_bytes`` must be the threshold in effect (:func:`small_loop_bytes_in_effect`).
    Only on the CPU backend; Memory-Pair only up to :data:`FAST_SCAN_MAX_DIM` features.
    """
    import jax

    if not small_loop_bytes or jax.default_backend() != "cpu":
        return False
    return algo != "memorypair" or dim <= FAST_SCAN_MAX_DIM


#: ``seeds_per_batch = AUTO_WIDTH``: where the scan is compiled whole (:func:`whole_scan`),
#: :data:`AUTO_WHOLE` seeds per batch for the learners listed there and one at a time for the
#: others; batches of :data:`AUTO_WIDE` where it runs kernel by kernel (or on an accelerator,
#: where a ``vmap`` is what uses the device).
AUTO_WIDTH, AUTO_WIDE = -1, 16
#: Pairs where a whole-compiled scan runs faster two seeds at a time than one (``python -m
#: benchmarks.seed_gain --widths=1,2``, d = 55, 32 / 128 seeds over 2 cores, 5 interleaved
#: rounds, medians of the per-round ratios: Memory-Pair +8 % / +8 %, SGD +9 % / +6 %, AdaGrad
#: +3 % / +3 %, ONS -2 % / -1 %, RLS -10 % / -8 %; SGD in fours was slower than in pairs), up to
#: :data:`AUTO_WHOLE_MAX_DIM` features (SGD, 32 seeds: faster in pairs at d = 197, slower at
#: 785, README "Where the time goes"). Only where each device runs an even number of seeds:
#: an odd one would be padded with a copy (one seed per device: twice the work). Widths 1 and
#: 2 give bit-identical losses in a whole-compiled scan (tested), so the width changes the
#: speed only, and may depend on the device count.
AUTO_WHOLE = {"memorypair": 2, "sgd": 2}
AUTO_WHOLE_MAX_DIM = 256


def batch_width(seeds_per_batch: int, whole: bool, algo: str = "", dim: int = 0, local_seeds: int = 0) -> int:
    """The ``seeds_per_batch`` to use: ``AUTO_WIDTH`` (-1) resolved, else as given.

    Auto: where the scan is compiled whole (``whole``), ``AUTO_WHOLE.get(algo, 1)`` up to
    :data:`AUTO_WHOLE_MAX_DIM` features if it divides ``local_seeds`` (the seeds of one
    device, :func:`local_seed_count`; 0: unknown, taken as divisible), else 1; where it is
    not, :data:`AUTO_WIDE`.
    """
    if seeds_per_batch == AUTO_WIDTH:
        if not whole:
            return AUTO_WIDE
        width = AUTO_WHOLE.get(algo, 1) if dim <= AUTO_WHOLE_MAX_DIM else 1
        return width if local_seeds % width == 0 else 1
    if seeds_per_batch < 0:
        raise ValueError(f"seeds_per_batch must be >= 0 or {AUTO_WIDTH} (auto), got {seeds_per_batch}")
    return int(seeds_per_batch)


def scan_plan(algo: str, dim: int, seeds_per_batch: int, small_loop_bytes: int, local_seeds: int = 0) -> tuple[bool, int]:
    """``(whole, width)``: whether ``algo``'s scan is compiled whole (:func:`whole_scan`) and its batch width.

    ``local_seeds``: the seeds each device runs (:func:`local_seed_count`), for the auto width.
    """
    whole = whole_scan(algo, dim, small_loop_bytes)
    return whole, batch_width(seeds_per_batch, whole, algo, dim, local_seeds)


def small_loop_bytes_in_effect() -> int:
    """The small-loop threshold that ``XLA_FLAGS`` passes to XLA CPU (0: none, XLA's default)."""
    import re

    found = re.findall(rf"{_THRESHOLD_KEY}=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return int(found[-1]) if found else 0


def configure_xla_cpu(small_loop_bytes: int = SMALL_LOOP_BYTES) -> str:
    """Adds XLA CPU's small-loop threshold to ``XLA_FLAGS`` before JAX starts its backends.

    Returns what was done: ``"set"``; ``"kept"`` (``XLA_FLAGS`` already sets the threshold:
    the user's value stays); ``"off"`` (``small_loop_bytes = 0``: nothing added); or
    ``"too late"`` (the backends were already running, as in a test that calls an entry
    point's ``main``: nothing added). Other ``xla_backend_extra_options`` keys are kept.
    Callers read the threshold actually passed with :func:`small_loop_bytes_in_effect`.
    """
    if small_loop_bytes < 0:
        raise ValueError(f"small_loop_bytes must be >= 0 (0: XLA's default), got {small_loop_bytes}")
    if not small_loop_bytes:
        return "off"
    flags = os.environ.get("XLA_FLAGS", "")
    if _THRESHOLD_KEY in flags:
        return "kept"
    try:  # no public API says whether the backends have started
        from jax._src import xla_bridge

        started = xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):
        started = False
    if started:
        return "too late"
    entry = f"{_THRESHOLD_KEY}={int(small_loop_bytes)}"
    parts = flags.split()
    for i, part in enumerate(parts):
        if part.startswith("--xla_backend_extra_options="):
            parts[i] = f"{part},{entry}"
            break
    else:
        parts.append(f"--xla_backend_extra_options={entry}")
    os.environ["XLA_FLAGS"] = " ".join(parts)
    return "set"


def setup_xla_cpu(small_loop_bytes: int) -> tuple[int, str]:
    """:func:`configure_xla_cpu`, then ``(threshold in effect, status)``; warns when they differ."""
    status = configure_xla_cpu(small_loop_bytes)
    effective = small_loop_bytes_in_effect()
    if effective != small_loop_bytes:
        import warnings

        warnings.warn(f"small_loop_bytes={small_loop_bytes} requested, {effective} in effect ({status}; "
                      f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}): results and speed follow the "
                      "threshold in effect, which the outputs record", RuntimeWarning, stacklevel=2)
    return effective, status


def compile_scan(fn, *args, fast: bool = True):
    """``jax.jit(fn).lower(*args).compile()``, with :data:`SCAN_COMPILER_OPTIONS` when ``fast``.

    A jaxlib that does not know one of the options (they are XLA CPU internals) gets a
    warning and the default compilation: the results are the same up to rounding, only slower.
    """
    import jax

    lowered = jax.jit(fn).lower(*args)
    if not fast:
        return lowered.compile()
    try:
        return lowered.compile(compiler_options=dict(SCAN_COMPILER_OPTIONS))
    except Exception as err:  # noqa: BLE001 - jaxlib raises its runtime error type for unknown options
        if not any(name in str(err) for name in SCAN_COMPILER_OPTIONS):
            raise
        import warnings

        warnings.warn(f"XLA rejected the scan options {sorted(SCAN_COMPILER_OPTIONS)} ({str(err)[:200]}); "
                      "compiling with the defaults (same results up to rounding, slower)", RuntimeWarning, stacklevel=2)
        return lowered.compile()


__all__ += ["SMALL_LOOP_BYTES", "SCAN_COMPILER_OPTIONS", "FAST_SCAN_MAX_DIM", "whole_scan", "AUTO_WIDTH", "AUTO_WIDE", "AUTO_WHOLE", "AUTO_WHOLE_MAX_DIM",
            "batch_width", "scan_plan", "small_loop_bytes_in_effect", "configure_xla_cpu", "setup_xla_cpu", "compile_scan"]


# --------------------------------------------------------------------------- seeds over devices


def configure_cpu_devices(cpu_devices: int = 0) -> int:
    """Host devices on a CPU backend, so that a seed axis can be sharded over every core.

    ``cpu_devices``: 0 = one per core this process may use, 1 = a single device (JAX's
    default), n = n devices. Takes effect only before JAX first touches a device; called
    later (a test calling ``main`` in a process that already ran JAX), it leaves the
    devices as they are. Returns the number of devices requested.
    """
    import jax

    if cpu_devices < 0:
        raise ValueError(f"cpu_devices must be >= 0 (0: one per core), got {cpu_devices}")
    n = cpu_devices or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if n != 1:
        with contextlib.suppress(RuntimeError):  # backends already initialised: keep them
            jax.config.update("jax_num_cpu_devices", int(n))
    return int(n)


def seed_mesh(num_seeds: int | None = None):
    """A one-axis ("seeds") mesh over every device, or None with a single device.

    With ``num_seeds``, also None unless there are at least 2 seeds and they split evenly
    over the devices (for callers that do not pad, see :func:`padded_seeds`).
    """
    import jax

    n = jax.device_count()
    if n < 2 or (num_seeds is not None and (num_seeds < 2 or num_seeds % n)):
        return None
    return jax.make_mesh((n,), ("seeds",), axis_types=(jax.sharding.AxisType.Auto,))


def padded_seeds(num_seeds: int, mesh) -> int:
    """Seed count rounded up to a multiple of the devices (extra seeds are computed, then dropped)."""
    n = 1 if mesh is None else mesh.devices.size
    return -(-num_seeds // n) * n


def local_seed_count(num_seeds: int, mesh) -> int:
    """Seeds per device: :func:`padded_seeds` over the devices of ``mesh`` (all of them on one device)."""
    return padded_seeds(num_seeds, mesh) // (1 if mesh is None else int(mesh.devices.size))


def width_in_effect(seeds_per_batch: int, num_seeds: int, mesh) -> int:
    """The batch width :func:`map_seeds` runs: never more than the run's seeds; 0: each device's all."""
    return min(seeds_per_batch, num_seeds) if seeds_per_batch else local_seed_count(num_seeds, mesh)


def put_seeds(mesh, value, sharded: bool):
    """Device placement: the seed axis (axis 0) split over ``mesh``, or replicated; default device without one."""
    import jax

    if mesh is None:
        return jax.device_put(value)
    from jax.sharding import NamedSharding, PartitionSpec

    return jax.device_put(value, NamedSharding(mesh, PartitionSpec("seeds") if sharded else PartitionSpec()))


def map_seeds(fn, mesh, seeds_per_batch: int = 0, num_shared: int = 0, num_seeds: int | None = None):
    """``fn(key, stream, *shared)`` over the seed axis (axis 0 of ``key`` and ``stream``).

    On each device of ``mesh`` (all of them, with a ``shard_map``; or the default device
    when ``mesh`` is None) the local seeds run in batches of width
    ``w = min(seeds_per_batch, num_seeds)``: one ``vmap`` inside a batch, a sequential
    ``lax.map`` over batches, the local seeds padded to full batches (the last seed
    repeated, its copies dropped). ``seeds_per_batch = 0``: all local seeds in one ``vmap``.
    The last ``num_shared`` arguments are the same for every seed (replicated).
    ``num_seeds``: the run's real seed count (before any padding to the mesh; default: the
    global count seen here).

    Why batches: a ``vmap`` over seeds pays off when a step's cost is per-kernel overhead,
    and not when it is memory traffic. ONS (K inverses of d x d per seed) ran *slower* per
    seed vmapped than one seed at a time (32 seeds, d = 55: 87k against 206k samples/s on
    one core), since the vmapped state leaves the core's cache.

    Why a fixed width: XLA's batched kernels may round differently at another batch width
    (Memory-Pair: widths 3 and 4 differ in the last bits, 4 and 8 agree). The width depends on
    the configuration only, never on the device count, so every seed runs the same program
    and a sharded run is bit-identical to one device (tested). The price is padding when a
    device's seed count is not a multiple of ``w`` (e.g. 32 seeds of width 16 on 3 devices:
    11 per device, padded to 16). With ``seeds_per_batch = 1`` each seed's result is also
    bit-identical to a one-seed run. With 0 the width is the local count, which differs
    between device counts: no bit-identity guarantee. (The auto pairs of :func:`batch_width`
    do follow the device count, 2 or 1, which is safe only because widths 1 and 2 give the
    same bits in a whole-compiled scan, tested in ``tests/test_xla_cpu.py``.)
    """
    import jax
    import jax.numpy as jnp

    if seeds_per_batch < 0:
        raise ValueError(f"seeds_per_batch must be >= 0 (0: all local seeds in one vmap), got {seeds_per_batch}")
    devices = 1 if mesh is None else int(mesh.devices.size)

    def local(keys, stream, *shared):
        one = lambda k, s: fn(k, s, *shared)  # noqa: E731
        n = keys.shape[0]
        if not seeds_per_batch:
            return jax.vmap(one)(keys, stream)
        width = width_in_effect(seeds_per_batch, num_seeds or n * devices, mesh)
        pad = -n % width
        grow = lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)])  # noqa: E731
        out = jax.lax.map(lambda ks: one(*ks), jax.tree.map(grow, (keys, stream)), batch_size=width)
        return jax.tree.map(lambda a: a[:n], out)

    if mesh is None:
        return local
    from jax.sharding import PartitionSpec

    specs = (PartitionSpec("seeds"),) * 2 + (PartitionSpec(),) * num_shared
    # check_vma=False: a learner's scan starts from a state built inside the body (replicated
    # type) and returns a per-device one; the values are per-seed either way.
    return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=PartitionSpec("seeds"), check_vma=False)


__all__ += ["configure_cpu_devices", "seed_mesh", "padded_seeds", "local_seed_count", "width_in_effect", "put_seeds", "map_seeds"]
