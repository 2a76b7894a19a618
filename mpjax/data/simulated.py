"""Deterministic, learnable simulated stand-ins with the real shapes and label sets.

Each class gets a prototype drawn from the seed; a sample is its class prototype with
random gain, a small random translation (images) and additive noise, and 5% of the
labels are then replaced by a uniformly random class (label noise). A linear model can
learn these data well but not perfectly, like the real ones.

- MNIST: u8[70000, 28, 28], labels 0..9 (prototypes: a few Gaussian strokes).
- Fashion-MNIST: u8[70000, 28, 28], labels 0..9 (prototypes: filled silhouettes, a few
  overlapping soft-edged boxes each, with a shading gradient).
- CIFAR-10: u8[60000, 32, 32, 3], labels 0..9 (prototypes: smooth colour fields).
- Covertype: f32[581012, 54] (10 continuous columns, a one-hot of 4 wilderness areas and
  a one-hot of 40 soil types, all class dependent), labels 0..6 with the real class
  frequencies.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LABEL_NOISE", "simulate_cifar10", "simulate_covtype", "simulate_fashion_mnist", "simulate_mnist"]

LABEL_NOISE = 0.05
_COVTYPE_COUNTS = np.array([211840, 283301, 35754, 2747, 9493, 17367, 20510])  # real file


def _noisy_labels(rng: np.random.Generator, labels: np.ndarray, k: int) -> np.ndarray:
    flip = rng.random(labels.shape[0]) < LABEL_NOISE
    out = labels.copy()
    out[flip] = rng.integers(0, k, int(flip.sum()))
    return out.astype(np.uint8)


def _images(rng, protos: np.ndarray, n: int, noise: float, max_shift: int, chunk: int = 8192):
    """Samples u8 images: gain * shifted prototype + Gaussian noise, clipped."""
    k = protos.shape[0]
    labels = rng.integers(0, k, n)
    out = np.empty((n, *protos.shape[1:]), np.uint8)
    for lo in range(0, n, chunk):
        lab = labels[lo:lo + chunk]
        m = lab.shape[0]
        img = protos[lab] * rng.uniform(0.7, 1.0, (m,) + (1,) * (protos.ndim - 1)).astype(np.float32)
        # Small translations, applied per group of equal shifts (cheap, vectorised).
        shifts = rng.integers(-max_shift, max_shift + 1, (m, 2))
        code = (shifts[:, 0] + max_shift) * (2 * max_shift + 1) + shifts[:, 1] + max_shift
        for c in np.unique(code):
            sel = code == c
            dy, dx = shifts[sel][0]
            img[sel] = np.roll(img[sel], (dy, dx), axis=(1, 2))
        img += noise * rng.standard_normal(img.shape, dtype=np.float32)
        out[lo:lo + m] = np.clip(img, 0.0, 255.0).astype(np.uint8)
    return out, labels


def simulate_mnist(seed: int, n: int = 70000) -> tuple[np.ndarray, np.ndarray]:
    """Simulated MNIST-shaped digits.

    Args:
      seed: data seed.
      n: number of rows.

    Returns:
      (images u8[n, 28, 28], labels u8[n] in 0..9).
    """
    rng = np.random.default_rng([seed, 0x3A11])
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    protos = np.zeros((10, 28, 28), np.float32)
    for c in range(10):
        for _ in range(6):  # six Gaussian "strokes" inside the central 20x20 box
            cy, cx = rng.uniform(6, 22, 2)
            sy, sx = rng.uniform(1.0, 3.5, 2)
            protos[c] += np.exp(-0.5 * (((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
        protos[c] *= 255.0 / protos[c].max()
    images, labels = _images(rng, protos, n, noise=40.0, max_shift=2)
    return images, _noisy_labels(rng, labels, 10)


def simulate_fashion_mnist(seed: int, n: int = 70000) -> tuple[np.ndarray, np.ndarray]:
    """Simulated Fashion-MNIST-shaped garments (filled silhouettes, not strokes).

    Args:
      seed: data seed.
      n: number of rows.

    Returns:
      (images u8[n, 28, 28], labels u8[n] in 0..9).
    """
    rng = np.random.default_rng([seed, 0xFA51])
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    protos = np.zeros((10, 28, 28), np.float32)
    for c in range(10):
        for _ in range(3):  # three overlapping soft-edged boxes make one silhouette
            y0, x0 = rng.uniform(2, 14, 2)
            h, w = rng.uniform(6, 24 - y0 + 2), rng.uniform(4, 24 - x0 + 2)
            inside = (1 / (1 + np.exp(-(yy - y0))) * 1 / (1 + np.exp(yy - y0 - h))
                      * 1 / (1 + np.exp(-(xx - x0))) * 1 / (1 + np.exp(xx - x0 - w)))
            protos[c] = np.maximum(protos[c], inside * rng.uniform(0.5, 1.0))
        protos[c] *= 1.0 - 0.4 * (yy / 27.0) * rng.uniform(0.0, 1.0)  # shading
        protos[c] *= 255.0 / protos[c].max()
    images, labels = _images(rng, protos, n, noise=40.0, max_shift=1)
    return images, _noisy_labels(rng, labels, 10)


def simulate_cifar10(seed: int, n: int = 60000) -> tuple[np.ndarray, np.ndarray]:
    """Simulated CIFAR-10-shaped colour images.

    Args:
      seed: data seed.
      n: number of rows.

    Returns:
      (images u8[n, 32, 32, 3], labels u8[n] in 0..9).
    """
    rng = np.random.default_rng([seed, 0xC1FA])
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 32.0
    protos = np.zeros((10, 32, 32, 3), np.float32)
    for c in range(10):
        for ch in range(3):  # a smooth colour field per channel: a few random sinusoids
            field = np.zeros((32, 32), np.float32)
            for _ in range(3):
                fy, fx = rng.uniform(0.5, 3.0, 2)
                py, px = rng.uniform(0, 2 * np.pi, 2)
                field += np.sin(2 * np.pi * fy * yy + py) * np.cos(2 * np.pi * fx * xx + px)
            protos[c, :, :, ch] = 128.0 + 40.0 * field + rng.uniform(-40, 40)
    images, labels = _images(rng, protos, n, noise=50.0, max_shift=3)
    return images, _noisy_labels(rng, labels, 10)


def simulate_covtype(seed: int, n: int = 581012) -> tuple[np.ndarray, np.ndarray]:
    """Simulated Covertype-shaped tabular data.

    Args:
      seed: data seed.
      n: number of rows.

    Returns:
      (features f32[n, 54], labels u8[n] in 0..6).
    """
    rng = np.random.default_rng([seed, 0xC0F7])
    k = 7
    freq = _COVTYPE_COUNTS / _COVTYPE_COUNTS.sum()
    labels = rng.choice(k, size=n, p=freq)
    x = np.zeros((n, 54), np.float32)
    means = rng.normal(0.0, 1.0, (k, 10)).astype(np.float32)
    x[:, :10] = means[labels] + rng.standard_normal((n, 10), dtype=np.float32)
    rows = np.arange(n)
    for lo, width, conc in ((10, 4, 0.5), (14, 40, 0.2)):  # wilderness, soil one-hots
        probs = rng.dirichlet(np.full(width, conc), size=k)
        cdf = np.cumsum(probs, axis=1)
        cdf[:, -1] = 1.0
        u = rng.random(n)
        cat = np.empty(n, np.int64)
        for c in range(k):  # inverse-CDF sampling per class
            sel = labels == c
            cat[sel] = np.searchsorted(cdf[c], u[sel], side="right")
        x[rows, lo + np.minimum(cat, width - 1)] = 1.0
    return x, _noisy_labels(rng, labels, k)
