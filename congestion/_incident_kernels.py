"""Numba kernels of the incident lane test (plain-numpy references in the tests)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def beta_binomial_lower_tail(
    k: np.ndarray, n: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray
) -> None:
    """P(X <= k[i]) for X ~ BetaBinomial(n[i], a[i], b[i]): the count of n vehicles in a lane
    whose probability of being chosen is itself only known as Beta(a, b), i.e. learned from
    a − 1 of a + b − 2 vehicles seen before (with one pseudo-vehicle each way). Summed term by
    term in log space (n is a few minutes of vehicles: hundreds at most). NaN for invalid
    inputs."""
    for i in range(k.shape[0]):
        ki = k[i]
        ni = n[i]
        ai = a[i]
        bi = b[i]
        if not (ni >= 0.0 and ki >= 0.0 and ai > 0.0 and bi > 0.0):
            out[i] = np.nan
            continue
        kk = int(ki)
        nn = int(ni)
        if kk >= nn:
            out[i] = 1.0
            continue
        # log C(n, j) + log B(j + a, n − j + b) − log B(a, b)
        lbeta_ab = math.lgamma(ai) + math.lgamma(bi) - math.lgamma(ai + bi)
        base = math.lgamma(nn + 1.0) - math.lgamma(nn + ai + bi) - lbeta_ab
        total = 0.0
        for j in range(kk + 1):
            total += math.exp(
                base
                - math.lgamma(j + 1.0)
                - math.lgamma(nn - j + 1.0)
                + math.lgamma(j + ai)
                + math.lgamma(nn - j + bi)
            )
        out[i] = min(total, 1.0)
