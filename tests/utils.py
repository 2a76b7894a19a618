"""Test helpers. chex use goes through here so it stays swappable (STYLE.md)."""

import chex
import jax

__all__ = ["assert_same_struct", "assert_finite", "variants", "TestCase"]

variants = chex.variants
TestCase = chex.TestCase


def assert_same_struct(a, b):
    """The two pytrees share structure, shapes and dtypes (a scan carry contract)."""
    chex.assert_trees_all_equal_structs(a, b)
    chex.assert_trees_all_equal_shapes(a, b)
    chex.assert_trees_all_equal_dtypes(a, b)


def tree_max_abs(tree):
    return max(float(abs(leaf).max()) for leaf in jax.tree_util.tree_leaves(tree))


def _numeric_leaves(tree):
    """Leaves that hold numbers (typed PRNG keys are skipped)."""
    return [
        leaf
        for leaf in jax.tree_util.tree_leaves(tree)
        if not jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)
    ]


def assert_finite(tree):
    """Every numeric leaf is finite (typed PRNG keys are skipped)."""
    chex.assert_tree_all_finite(_numeric_leaves(tree))
