"""The CIFAR-10 ResNet-9 path: a smooth ResNet-9 trained by weighted SGD, and its metagradients.

Model (Page's ResNet-9 layout; widths ``(64, 128, 256, 512) * width``):

    prep conv -> [conv, pool] + res(conv, conv) -> [conv, pool] -> [conv, pool] + res(conv, conv)
    -> global log-sum-exp pool -> linear * final_scale

every conv followed by a per-example normalisation and a smooth activation (GELU).
It is smooth in the sense MAGIC needs: no ReLU kinks, no max-pool switches (2x2 pools
and the global pool are log-sum-exp, a smooth maximum), and no BatchNorm, whose batch
statistics would let a sample with weight 0 still move the others; the normalisation
is per example (mean and variance over H, W, C, then a per-channel scale and shift).
Plain ``jax.lax`` convolutions: the model is small enough that flax would add a
dependency without removing code (README, dependency notes).

Training (:func:`train_weighted`): a fixed order of minibatches (``order: i32[steps, B]``),
loss ``sum_b omega_{i_b} CE_b / B`` (the weight multiplies each sample's loss gradient),
SGD with heavy-ball momentum and decoupled L2, a per-step learning rate passed as a scan
input, and augmentation (random flip, random translation by up to ``max_shift``
pixels, zero fill) keyed by ``fold_in(key, step)``, so a retrain sees exactly the same
augmentation. The steps run in :func:`~mpjax.influence.remat.scan_remat` with an
optional checkpoint policy inside each step.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from mpjax.influence.metagrad import vjp_rows
from mpjax.influence.remat import scan_remat

__all__ = ["ModelConfig", "TrainConfig", "CnnState", "init_params", "forward", "cross_entropy", "augment",
           "lr_schedule", "make_order", "train_weighted", "target_losses", "metagradients", "retrain_outputs",
           "POLICIES"]

BASE_WIDTHS = (64, 128, 256, 512)

# Checkpoint policies inside each training step (scan_remat's ``policy``).
POLICIES: dict[str, Callable | None] = {
    "none": None,  # store the step's residuals (fastest, most memory)
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "nothing": jax.checkpoint_policies.nothing_saveable,  # recompute the whole step
}


class ModelConfig(NamedTuple):
    width: float = 1.0  # multiplier of BASE_WIDTHS (2.5 in the original system)
    num_classes: int = 10
    channels: int = 3
    final_scale: float = 0.04  # logits = final_scale * linear(features)
    norm_eps: float = 1e-5


class TrainConfig(NamedTuple):
    peak_lr: float = 0.4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_frac: float = 0.25  # triangular schedule: linear up to peak, linear down to 0
    max_shift: int = 2  # translation augmentation, pixels (0: off)
    flip: bool = True


class CnnState(NamedTuple):
    params: Any  # dict of arrays
    momentum: Any  # same structure
    t: jax.Array  # i32[] steps taken


def _widths(cfg: ModelConfig) -> tuple[int, ...]:
    return tuple(max(1, int(round(w * cfg.width))) for w in BASE_WIDTHS)


def init_params(key: jax.Array, cfg: ModelConfig, dtype=jnp.float32) -> dict:
    """He-normal convolutions (HWIO), unit scales, zero shifts, a linear head."""
    w0, w1, w2, w3 = _widths(cfg)
    convs = {"prep": (cfg.channels, w0), "layer1": (w0, w1), "res1a": (w1, w1), "res1b": (w1, w1),
             "layer2": (w1, w2), "layer3": (w2, w3), "res3a": (w3, w3), "res3b": (w3, w3)}
    params = {}
    for i, (name, (cin, cout)) in enumerate(convs.items()):
        k = jax.random.fold_in(key, i)
        params[name] = {
            "w": jax.random.normal(k, (3, 3, cin, cout), dtype) * jnp.sqrt(2.0 / (9 * cin)).astype(dtype),
            "scale": jnp.ones((cout,), dtype),
            "shift": jnp.zeros((cout,), dtype),
        }
    params["head"] = jax.random.normal(jax.random.fold_in(key, 99), (w3, cfg.num_classes), dtype) / jnp.sqrt(
        jnp.asarray(w3, dtype))
    return params


def _norm(x, scale, shift, eps):
    """Per-example normalisation over (H, W, C): no statistic is shared across the batch."""
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(1, 2, 3), keepdims=True)
    return (x - mean) * lax.rsqrt(var + eps) * scale[None, None, None, :] + shift[None, None, None, :]


def _conv_block(p, x, eps):
    y = lax.conv_general_dilated(x, p["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.nn.gelu(_norm(y, p["scale"], p["shift"], eps))


def _lse_pool2(x):
    """Smooth 2x2 max: log of the mean of exp over each window (shift-stabilised)."""
    b, h, w, c = x.shape
    win = x[:, : h - h % 2, : w - w % 2].reshape(b, h // 2, 2, w // 2, 2, c)
    return jax.nn.logsumexp(win, axis=(2, 4)) - jnp.log(4.0).astype(x.dtype)


def forward(params: dict, x: jax.Array, cfg: ModelConfig) -> jax.Array:
    """f[B, num_classes] logits of images ``x: f[B, H, W, C]``."""
    eps = cfg.norm_eps
    h = _conv_block(params["prep"], x, eps)
    h = _lse_pool2(_conv_block(params["layer1"], h, eps))
    h = h + _conv_block(params["res1b"], _conv_block(params["res1a"], h, eps), eps)
    h = _lse_pool2(_conv_block(params["layer2"], h, eps))
    h = _lse_pool2(_conv_block(params["layer3"], h, eps))
    h = h + _conv_block(params["res3b"], _conv_block(params["res3a"], h, eps), eps)
    hw = h.shape[1] * h.shape[2]
    pooled = jax.nn.logsumexp(h, axis=(1, 2)) - jnp.log(float(hw)).astype(h.dtype)
    return cfg.final_scale * (pooled @ params["head"])


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """f[B] softmax cross-entropy of integer labels."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]


def augment(key: jax.Array, x: jax.Array, max_shift: int, flip: bool) -> jax.Array:
    """Random horizontal flip and translation (zero fill) per image, from ``key`` alone."""
    b, h, w, _ = x.shape
    kf, ks = jax.random.split(key)
    if flip:
        do = jax.random.bernoulli(kf, 0.5, (b,))
        x = jnp.where(do[:, None, None, None], x[:, :, ::-1], x)
    if max_shift:
        shifts = jax.random.randint(ks, (b, 2), -max_shift, max_shift + 1)
        padded = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))

        def crop(img, s):
            return lax.dynamic_slice(img, (max_shift + s[0], max_shift + s[1], 0), (h, w, img.shape[-1]))

        x = jax.vmap(crop)(padded, shifts)
    return x


def lr_schedule(steps: int, tcfg: TrainConfig, dtype=jnp.float32) -> jax.Array:
    """f[steps]: triangular learning rate (a scan input, not computed in the body)."""
    t = jnp.arange(steps, dtype=dtype) + 1
    up = max(1.0, tcfg.warmup_frac * steps)
    return tcfg.peak_lr * jnp.minimum(t / up, jnp.maximum(0.0, (steps - t + 1) / max(1.0, steps - up + 1)))


def make_order(key: jax.Array, n: int, batch_size: int, epochs: int) -> jax.Array:
    """i32[epochs * (n // B), B]: one fixed permutation per epoch, split into batches (remainder dropped)."""
    if batch_size < 1 or batch_size > n:
        raise ValueError(f"batch_size must be in [1, n = {n}], got {batch_size}")
    per = n // batch_size
    perms = [jax.random.permutation(jax.random.fold_in(key, e), n)[: per * batch_size] for e in range(epochs)]
    return jnp.concatenate(perms).reshape(epochs * per, batch_size).astype(jnp.int32)


def train_weighted(
    params: dict,
    images: jax.Array,
    labels: jax.Array,
    order: jax.Array,
    weights: jax.Array,
    key: jax.Array,
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    *,
    levels: Sequence[int] | None = None,
    policy: Callable | None = None,
) -> CnnState:
    """The final state of weighted SGD with momentum over ``order`` (see the module docstring).

    Args:
      params: initial parameters (:func:`init_params`).
      images: f[n, H, W, C] training images (normalised); labels: i32[n].
      order: i32[steps, B] rows of each minibatch.
      weights: f[n] per-row weights omega.
      key: augmentation key; step t uses ``fold_in(key, t)``.
      levels, policy: :func:`~mpjax.influence.remat.scan_remat` settings.
    """
    dtype = images.dtype
    lrs = lr_schedule(order.shape[0], tcfg, dtype)
    state = CnnState(params, jax.tree_util.tree_map(jnp.zeros_like, params), jnp.zeros((), jnp.int32))

    def loss_fn(p, x, y, omega):
        return jnp.sum(omega * cross_entropy(forward(p, x, mcfg), y)) / x.shape[0]

    def body(s, inp):
        rows, omega, lr = inp
        x = augment(jax.random.fold_in(key, s.t), images[rows], tcfg.max_shift, tcfg.flip)
        g = jax.grad(loss_fn)(s.params, x, labels[rows], omega)
        mom = jax.tree_util.tree_map(lambda m, gi, p: tcfg.momentum * m + gi + tcfg.weight_decay * p,
                                     s.momentum, g, s.params)
        new = jax.tree_util.tree_map(lambda p, m: p - lr * m, s.params, mom)
        return CnnState(new, mom, s.t + 1), None

    final, _ = scan_remat(body, state, (order, weights[order].astype(dtype), lrs), levels, policy=policy)
    return final


def target_losses(params: dict, test_x: jax.Array, test_y: jax.Array, mcfg: ModelConfig) -> jax.Array:
    """f[J]: cross-entropy of each target under ``params`` (no augmentation)."""
    return cross_entropy(forward(params, test_x, mcfg), test_y)


def metagradients(params, images, labels, order, key, test_x, test_y, mcfg: ModelConfig, tcfg: TrainConfig, *,
                  levels=None, policy=None, target_chunk: int | None = None) -> tuple[jax.Array, jax.Array]:
    """``(phi f[J], tau f[J, n])``: exact d phi_j / d omega_i through the whole training run."""

    def phi(weights):
        final = train_weighted(params, images, labels, order, weights, key, mcfg, tcfg, levels=levels, policy=policy)
        return target_losses(final.params, test_x, test_y, mcfg)

    return vjp_rows(phi, jnp.ones((images.shape[0],), images.dtype), test_x.shape[0], target_chunk)


def retrain_outputs(params, images, labels, order, key, masks, test_x, test_y, mcfg: ModelConfig,
                    tcfg: TrainConfig) -> jax.Array:
    """f[S, J]: target losses after retraining with each 0/1 mask (one vmap, same order and augmentation)."""

    def one(mask):
        final = train_weighted(params, images, labels, order, mask.astype(images.dtype), key, mcfg, tcfg)
        return target_losses(final.params, test_x, test_y, mcfg)

    return jax.vmap(one)(masks)
