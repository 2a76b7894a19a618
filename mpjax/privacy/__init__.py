"""Pure privacy layer: accountants, calibrator and odometer (DESIGN.md section 2).

Everything here is a pure JAX function over fixed-shape ``NamedTuple`` states,
jittable and vmappable; static choices (accountant name, bound, window) are
Python values validated eagerly.

References:
  C. Dwork, A. Roth. The Algorithmic Foundations of Differential Privacy. 2014.
  M. Bun, T. Steinke. Concentrated differential privacy. TCC 2016.
  I. Mironov. Renyi differential privacy. CSF 2017.
  B. Balle, Y.-X. Wang. Improving the Gaussian mechanism for differential
  privacy. ICML 2018.
"""

from mpjax.privacy import accountants, calibrator, odometer
from mpjax.privacy.accountants import (
    ACCOUNTANTS,
    RDP_ORDERS,
    epsilon,
    gaussian_delta,
    gaussian_epsilon,
    gaussian_noise_multiplier,
    noise_multiplier,
)
from mpjax.privacy.calibrator import Calibration, CalibratorStats
from mpjax.privacy.odometer import OdometerState, spend

__all__ = [
    "accountants",
    "calibrator",
    "odometer",
    "ACCOUNTANTS",
    "RDP_ORDERS",
    "epsilon",
    "noise_multiplier",
    "gaussian_delta",
    "gaussian_epsilon",
    "gaussian_noise_multiplier",
    "Calibration",
    "CalibratorStats",
    "OdometerState",
    "spend",
]
