"""XLA CPU settings for the learners' scans (experiments.common: configure_xla_cpu, compile_scan).

The small-loop threshold must be in ``XLA_FLAGS`` before JAX starts its backends, so
what it does is checked in a fresh interpreter: every learner's scan is compiled whole
(one hoisted call, no per-kernel dispatch) and its losses agree with the default
compilation to float32 rounding.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from experiments import common

ROOT = pathlib.Path(__file__).resolve().parents[1]

_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from experiments import common
    status = common.configure_xla_cpu(int(sys.argv[1]))
    import jax, jax.numpy as jnp
    from mpjax import learners, run as run_lib, streams

    K, d, n, T = 7, 55, 400, 600
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32) / np.sqrt(d)
    labels = rng.integers(0, K, n).astype(np.int32)
    y = np.eye(K, dtype=np.float32)[labels]
    keys = run_lib.seed_keys(0, 2)
    stream = jax.vmap(lambda k: streams.make_stream("iid", run_lib.purpose_key(k, run_lib.TAG_STREAM),
                                                    jnp.asarray(labels), T, num_classes=K,
                                                    is_image=False, raw_dim=d))(keys)
    out = {"status": status, "flags": __import__("os").environ.get("XLA_FLAGS", ""), "learners": {}}
    for name in ("memorypair", "sgd", "adagrad", "ons", "rls"):
        learner = learners.multi_output(learners.get(name), K)
        program = jax.vmap(lambda key, st: run_lib.run_seed(learner, d, key, jnp.asarray(x), jnp.asarray(y), st)[1].loss)
        args = (keys, stream)
        fast = common.compile_scan(program, *args, fast=common.fast_scan(d))
        plain = jax.jit(program).lower(*args).compile()
        a, b = np.asarray(fast(*args)), np.asarray(plain(*args))
        out["learners"][name] = {
            "hoisted": "xla_cpu_small_call" in fast.as_text(),
            "max_rel": float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3))),
            "finite": bool(np.isfinite(a).all()),
        }
    print(json.dumps(out))
    """
)


def _child(small_loop_bytes: int, xla_flags: str = "") -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    out = subprocess.run([sys.executable, "-c", _CHILD, str(small_loop_bytes)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_learner_scan_is_compiled_whole_and_agrees_with_the_default_compilation():
    got = _child(common.SMALL_LOOP_BYTES)
    assert got["status"] == "set"
    assert f"xla_cpu_small_while_loop_byte_threshold={common.SMALL_LOOP_BYTES}" in got["flags"]
    for name, r in got["learners"].items():
        assert r["hoisted"], f"{name}: the scan was not compiled as one call (an XLA upgrade may have renamed the option)"
        assert r["finite"], name
        # Another code generator for the same float32 arithmetic: rounding differences only.
        assert r["max_rel"] < 1e-4, (name, r["max_rel"])


def test_without_the_threshold_nothing_is_hoisted():
    got = _child(0)
    assert got["status"] == "off" and "small_while_loop" not in got["flags"]
    assert not any(r["hoisted"] for r in got["learners"].values())


def test_a_user_setting_of_the_backend_options_is_kept():
    got = _child(common.SMALL_LOOP_BYTES, xla_flags="--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1")
    assert got["status"] == "kept"
    assert "threshold=1" in got["flags"] and f"threshold={common.SMALL_LOOP_BYTES}" not in got["flags"]


def test_too_late_and_bad_values_in_process():
    import jax

    jax.devices()  # the backends run in this process
    before = os.environ.get("XLA_FLAGS")
    if before and "xla_backend_extra_options" in before:
        pytest.skip("XLA_FLAGS already sets xla_backend_extra_options")
    assert common.configure_xla_cpu(1 << 20) == "too late"
    assert os.environ.get("XLA_FLAGS") == before
    assert common.configure_xla_cpu(0) == "off"
    with pytest.raises(ValueError, match="small_loop_bytes must be >= 0"):
        common.configure_xla_cpu(-1)


def test_fast_scan_options_only_for_small_steps():
    assert common.fast_scan(55) and common.fast_scan(common.FAST_SCAN_MAX_DIM)
    assert not common.fast_scan(197)  # Memory-Pair's hoisted step is slower there (README)
    assert not common.fast_scan(55, small_loop_bytes=0)


def test_unknown_scan_options_fall_back_to_the_default_compilation_with_a_warning(monkeypatch):
    import jax.numpy as jnp
    import numpy as np

    monkeypatch.setattr(common, "SCAN_COMPILER_OPTIONS", {"xla_cpu_no_such_option_for_this_test": True})
    with pytest.warns(RuntimeWarning, match="XLA rejected the scan options"):
        compiled = common.compile_scan(lambda a: jnp.cumsum(a), jnp.arange(5.0))
    np.testing.assert_array_equal(np.asarray(compiled(jnp.arange(5.0))), [0, 1, 3, 6, 10])
