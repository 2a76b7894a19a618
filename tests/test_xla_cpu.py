"""XLA CPU settings for the learners' scans (experiments.common: configure_xla_cpu, compile_scan, ...).

The small-loop threshold must be in ``XLA_FLAGS`` before JAX starts its backends, so what
it does is checked in fresh interpreters: with it, every learner's scan is compiled whole
(one hoisted call, no ``while`` left in the entry computation), without it none is, and
the losses of the two agree to float32 rounding.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from experiments import common

ROOT = pathlib.Path(__file__).resolve().parents[1]

_CHILD = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from experiments import common
    effective, status = common.setup_xla_cpu(int(sys.argv[1]))
    out = {"status": status, "effective": effective, "flags": os.environ.get("XLA_FLAGS", ""), "learners": {}}
    if sys.argv[2] == "learners":
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
        def shared_seed(learner, dim):
            return lambda key, st, xs, ys: run_lib.run_seed(learner, dim, key, xs, ys, st)[1].loss

        def widths(name, dim, x, y, labels):
            # Four seeds, as the experiments batch them: in pairs and one at a time (map_seeds, data shared).
            learner = learners.multi_output(learners.get(name), K)
            keys4 = run_lib.seed_keys(1, 4)
            st4 = jax.vmap(lambda k: streams.make_stream("iid", run_lib.purpose_key(k, run_lib.TAG_STREAM),
                                                         jnp.asarray(labels), T, num_classes=K, is_image=False,
                                                         raw_dim=dim))(keys4)
            got = {}
            for width in (1, 2):
                fn = common.map_seeds(shared_seed(learner, dim), None, width, num_shared=2)
                got[width] = np.asarray(common.compile_scan(fn, keys4, st4, x, y, fast=True)(keys4, st4, x, y)).tolist()
            return got

        for name in ("memorypair", "sgd", "adagrad", "ons", "rls"):
            learner = learners.multi_output(learners.get(name), K)
            program = jax.vmap(lambda key, st: run_lib.run_seed(learner, d, key, jnp.asarray(x), jnp.asarray(y),
                                                                st)[1].loss)
            whole = common.whole_scan(name, d, effective)
            compiled = common.compile_scan(program, keys, stream, fast=whole)
            text = compiled.as_text()
            entry = text[text.index("ENTRY"):]
            entry = entry[:entry.index("\\n}")]
            out["learners"][name] = {"whole": whole, "hoisted": "xla_cpu_small_call" in entry and " while(" not in entry,
                                     "losses": np.asarray(compiled(keys, stream)).tolist()}
            if whole:
                out["learners"][name]["widths"] = widths(name, d, jnp.asarray(x), jnp.asarray(y), labels)
        if effective:  # SGD's pairs also run at d = 197 (the MNIST cells)
            d2 = 197
            x2 = (rng.normal(size=(n, d2)) / np.sqrt(d2)).astype(np.float32)
            out["sgd_197_widths"] = widths("sgd", d2, jnp.asarray(x2), jnp.asarray(y), labels)
    print(json.dumps(out))
    """
)


def _child(small_loop_bytes: int, xla_flags: str = "", what: str = "learners") -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    out = subprocess.run([sys.executable, "-W", "ignore::RuntimeWarning", "-c", _CHILD, str(small_loop_bytes), what],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_learner_scan_is_compiled_whole_and_agrees_with_the_kernel_by_kernel_scan():
    whole, plain = _child(common.SMALL_LOOP_BYTES), _child(0)
    assert whole["status"] == "set" and whole["effective"] == common.SMALL_LOOP_BYTES
    assert plain["status"] == "off" and plain["effective"] == 0 and "small_while_loop" not in plain["flags"]
    for name in whole["learners"]:
        w, p = whole["learners"][name], plain["learners"][name]
        assert w["whole"] and w["hoisted"], f"{name}: the scan was not compiled as one call (an XLA upgrade may have renamed the option)"
        assert not p["whole"] and not p["hoisted"], name
        a, b = np.asarray(w["losses"]), np.asarray(p["losses"])
        assert a.shape == b.shape == (2, 600) and np.isfinite(a).all(), name
        # Another code generator for the same float32 arithmetic: rounding differences only.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=name)
        # Four seeds in pairs (common.AUTO_WHOLE) and one at a time, batched as the experiments batch
        # them (common.map_seeds, the data shared): the same bits in a whole-compiled scan, so the
        # width is a speed choice there; kernel by kernel, batches may round differently.
        pairs, singly = np.asarray(w["widths"]["2"]), np.asarray(w["widths"]["1"])
        assert pairs.shape == (4, 600) and np.isfinite(pairs).all(), name
        np.testing.assert_array_equal(pairs, singly, err_msg=name)
    pairs, singly = np.asarray(whole["sgd_197_widths"]["2"]), np.asarray(whole["sgd_197_widths"]["1"])
    assert pairs.shape == (4, 600)
    np.testing.assert_array_equal(pairs, singly, err_msg="sgd at d = 197")


def test_a_user_threshold_is_kept_and_other_backend_options_are_merged():
    kept = _child(common.SMALL_LOOP_BYTES, xla_flags="--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1",
                  what="none")
    assert kept["status"] == "kept" and kept["effective"] == 1
    merged = _child(common.SMALL_LOOP_BYTES, xla_flags="--xla_cpu_enable_fast_math=false --xla_backend_extra_options=foo=1",
                    what="none")
    assert merged["status"] == "set" and merged["effective"] == common.SMALL_LOOP_BYTES
    assert "--xla_cpu_enable_fast_math=false" in merged["flags"]
    assert f"--xla_backend_extra_options=foo=1,xla_cpu_small_while_loop_byte_threshold={common.SMALL_LOOP_BYTES}" in merged["flags"]


def test_too_late_and_bad_values_in_process():
    import jax

    jax.devices()  # the backends run in this process (conftest starts them)
    before = os.environ.get("XLA_FLAGS")
    if before and "small_while_loop" in before:
        pytest.skip("XLA_FLAGS already sets the threshold")
    assert common.configure_xla_cpu(1 << 20) == "too late"
    assert os.environ.get("XLA_FLAGS") == before
    with pytest.warns(RuntimeWarning, match="0 in effect"):
        assert common.setup_xla_cpu(1 << 20) == (0, "too late")
    assert common.configure_xla_cpu(0) == "off"
    with pytest.raises(ValueError, match="small_loop_bytes must be >= 0"):
        common.configure_xla_cpu(-1)


def _cpu_only():
    import jax

    if jax.default_backend() != "cpu":
        pytest.skip("scans are compiled whole on the CPU backend only")


def test_whole_scans_for_every_learner_but_memorypair_above_128_features():
    _cpu_only()
    assert all(common.whole_scan(a, 55, common.SMALL_LOOP_BYTES) for a in ("memorypair", "sgd", "adagrad", "ons", "rls"))
    assert common.whole_scan("memorypair", common.FAST_SCAN_MAX_DIM, common.SMALL_LOOP_BYTES)
    assert not common.whole_scan("memorypair", 197, common.SMALL_LOOP_BYTES)  # slower there (README)
    assert common.whole_scan("sgd", 785, common.SMALL_LOOP_BYTES)
    assert not common.whole_scan("sgd", 55, 0)


def test_auto_batch_width_is_pairs_or_one_for_a_whole_scan_else_sixteen():
    _cpu_only()
    assert common.batch_width(common.AUTO_WIDTH, True) == 1
    assert common.batch_width(common.AUTO_WIDTH, True, "ons") == common.batch_width(common.AUTO_WIDTH, True, "rls") == 1
    assert common.batch_width(common.AUTO_WIDTH, True, "memorypair") == common.batch_width(common.AUTO_WIDTH, True, "sgd") == 2
    assert common.batch_width(common.AUTO_WIDTH, False, "memorypair") == common.AUTO_WIDE == 16
    assert common.scan_plan("sgd", 55, common.AUTO_WIDTH, common.SMALL_LOOP_BYTES) == (True, 2)
    assert common.scan_plan("sgd", 197, common.AUTO_WIDTH, common.SMALL_LOOP_BYTES) == (True, 2)
    assert common.scan_plan("sgd", 785, common.AUTO_WIDTH, common.SMALL_LOOP_BYTES) == (True, 1)  # pairs were slower
    # Pairs only on an even seed count per device: an odd one would be padded with a copy.
    for local, width in ((16, 2), (2, 2), (1, 1), (3, 1), (0, 2)):  # 0: unknown
        assert common.scan_plan("memorypair", 55, common.AUTO_WIDTH, common.SMALL_LOOP_BYTES, local) == (True, width)
    assert common.batch_width(4, True, "sgd", 55, 3) == 4  # an explicit width is kept
    assert common.local_seed_count(7, None) == 7
    assert common.scan_plan("memorypair", 197, common.AUTO_WIDTH, common.SMALL_LOOP_BYTES) == (False, 16)
    assert common.batch_width(common.AUTO_WIDTH, False) == common.AUTO_WIDE == 16
    assert common.batch_width(4, False) == 4 and common.batch_width(0, True) == 0
    with pytest.raises(ValueError, match="seeds_per_batch must be >= 0 or -1"):
        common.batch_width(-2, True)


def test_unknown_scan_options_fall_back_to_the_default_compilation_with_a_warning(monkeypatch):
    import jax.numpy as jnp

    monkeypatch.setattr(common, "SCAN_COMPILER_OPTIONS", {"xla_cpu_no_such_option_for_this_test": True})
    with pytest.warns(RuntimeWarning, match="XLA rejected the scan options"):
        compiled = common.compile_scan(lambda a: jnp.cumsum(a), jnp.arange(5.0))
    np.testing.assert_array_equal(np.asarray(compiled(jnp.arange(5.0))), [0, 1, 3, 6, 10])
