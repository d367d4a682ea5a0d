"""The paper's bounds on ``t_gamma`` as functions, with the exact constants of the camera-ready version (spec §2).

Lower bounds: Proposition 3 (tabular, exponent -1/2), Theorem 4 (autoregressive, exponent -1/3), and the slow halves
of Theorems 5 and 6. Upper bounds: the fast halves of Theorems 5 and 6 (instances of Proposition 4), which hold only
for a small enough KL coefficient; they raise when it is too large. All assume rewards in ``[-1, 1]``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rmteacher.theory.validation import (
    check_distribution,
    check_gamma,
    check_kl_coef,
    check_num_prompts,
    check_positive,
    check_rewards,
)

__all__ = [
    "prop3_lower_bound",
    "theorem4_lower_bound",
    "theorem5_fast_upper_bound",
    "theorem5_slow_lower_bound",
    "theorem6_fast_upper_bound",
    "theorem6_slow_lower_bound",
]


def prop3_lower_bound(pi0: Any, train_reward: Any, gamma: float, *, num_prompts: int = 1) -> float:
    """Proposition 3: ``t_gamma >= 2 |S| (1 - e^{-gamma/2}) / sqrt(Var_{pi0}[r_RM])`` for a tabular policy.

    Holds for the increase of any reward in ``[-1, 1]`` and any ``lambda >= 0``; the variance is that of the training
    reward at this prompt only.

    Args:
        pi0: ``[Y]`` initial policy of the prompt.
        train_reward: ``[Y]`` ``r_RM(x, .)`` in ``[-1, 1]``.
        gamma: the increase, ``> 0``.
        num_prompts: ``|S| >= 1``.

    Returns:
        the bound (``inf`` when the variance is zero: the policy never moves).
    """
    p0 = check_distribution(pi0, "pi0", ndim=1)
    r = check_rewards(train_reward, "train_reward", p0.shape, out_of_range="error")
    gamma = check_gamma(gamma)
    size = check_num_prompts(num_prompts)
    variance = float(np.sum(p0 * (r - p0 @ r) ** 2))
    if variance <= 0:
        return math.inf
    return 2.0 * size * (1.0 - math.exp(-gamma / 2.0)) / math.sqrt(variance)


def theorem4_lower_bound(
    gamma: float,
    *,
    mean_variance: float,
    length: int,
    jacobian_norm: float,
    kl_coef: float = 0.0,
) -> float:
    """Theorem 4: ``t_gamma >= min{1 - e^{-gamma/9}, 1 - e^{-7/(3 lambda)}} / (8 L^2 J^2) * E_x[Var]^{-1/3}``.

    ``e^{-7/(3 lambda)} := 0`` for ``lambda = 0``.

    Args:
        gamma: the increase, ``> 0``.
        mean_variance: ``E_{x in S} Var_{y ~ pi_0(.|x)}[r_RM(x, y)]``, in ``[0, 1]`` for rewards in ``[-1, 1]``.
        length: the output length ``L >= 1``.
        jacobian_norm: ``J_{t_gamma}``, the sup of the logits' Jacobian spectral norm up to ``t_gamma``, ``> 0``.
        kl_coef: ``lambda >= 0``.

    Returns:
        the bound (``inf`` for zero variance).
    """
    gamma = check_gamma(gamma)
    lam = check_kl_coef(kl_coef)
    variance = float(mean_variance)
    if not (math.isfinite(variance) and 0.0 <= variance <= 1.0):
        raise ValueError(f"mean_variance must be in [0, 1] (the variance of rewards in [-1, 1]); got {mean_variance!r}")
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
        raise ValueError(f"length must be an integer >= 1 (the output length L); got {length!r}")
    j = check_positive(jacobian_norm, "jacobian_norm")
    if variance == 0.0:
        return math.inf
    kl_term = 1.0 - math.exp(-7.0 / (3.0 * lam)) if lam > 0 else 1.0
    return min(1.0 - math.exp(-gamma / 9.0), kl_term) / (8.0 * length**2 * j**2) * variance ** (-1.0 / 3.0)


def theorem5_slow_lower_bound(gamma: float, T: float, *, num_prompts: int = 1) -> float:
    """Theorem 5, slow half: the low-variance reward model gives ``t_gamma >= 2 |S| (1 - e^{-gamma/2}) T``."""
    return 2.0 * check_num_prompts(num_prompts) * (1.0 - math.exp(-check_gamma(gamma) / 2.0)) * _check_t(T)


def theorem6_slow_lower_bound(gamma: float, T: float, *, num_prompts: int = 1) -> float:
    """Theorem 6, slow half: the mismatched indicator reward gives ``t_gamma >= (|S|/sqrt 2)(1 - e^{-gamma/2}) T``."""
    return check_num_prompts(num_prompts) / math.sqrt(2.0) * (1.0 - math.exp(-check_gamma(gamma) / 2.0)) * _check_t(T)


def _check_t(T: float) -> float:
    value = float(T)
    if not (math.isfinite(value) and value >= 1.0):
        raise ValueError(f"T must be a finite number >= 1; got {T!r}")
    return value


def _rho(p0: np.ndarray, truth: np.ndarray, y_gamma: int, gamma: float) -> float:
    if isinstance(y_gamma, bool) or not isinstance(y_gamma, int | np.integer) or not 0 <= y_gamma < len(p0):
        raise ValueError(f"y_gamma must be an output index in [0, {len(p0)}); got {y_gamma!r}")
    v0 = float(p0 @ truth)
    if not truth[y_gamma] > v0 + gamma:
        raise ValueError(
            f"y_gamma = {y_gamma} has r_G = {truth[y_gamma]:.6g}, but needs r_G(y_gamma) > V_G(0) + gamma = "
            f"{v0 + gamma:.6g}"
        )
    return (v0 + gamma + 1.0) / (float(truth[y_gamma]) + 1.0)


def _kl_scale(p0: np.ndarray) -> float:
    return 2.0 * math.log(1.0 / float(p0.min())) + 1.0 / (2.0 * math.e)


def theorem5_fast_upper_bound(
    pi0: Any,
    truth: Any,
    y_gamma: int,
    gamma: float,
    *,
    kl_coef: float = 0.0,
    num_prompts: int = 1,
) -> float:
    """Theorem 5, fast half: ``t_gamma <= 4 |S| / (1 - rho)^4 (1/pi0(y_gamma) - 1/rho)`` for the D.8 reward ``r'``.

    ``rho = (V_G(0) + gamma + 1) / (r_G(y_gamma) + 1)``; requires
    ``lambda <= pi0(y_gamma) (1 - rho)^4 / (8 (2 ln(1/min pi0) + 1/(2e)))``.
    """
    p0 = check_distribution(pi0, "pi0", ndim=1)
    r_g = check_rewards(truth, "truth", p0.shape, out_of_range="error")
    gamma, lam, size = check_gamma(gamma), check_kl_coef(kl_coef), check_num_prompts(num_prompts)
    rho = _rho(p0, r_g, y_gamma, gamma)
    p = float(p0[y_gamma])
    limit = p * (1.0 - rho) ** 4 / (8.0 * _kl_scale(p0))
    if lam > limit:
        raise ValueError(f"kl_coef = {lam} exceeds Theorem 5's condition lambda <= {limit:.3g}; the bound needs it")
    return 4.0 * size / (1.0 - rho) ** 4 * (1.0 / p - 1.0 / rho)


def theorem6_fast_upper_bound(
    pi0: Any,
    truth: Any,
    y_gamma: int,
    gamma: float,
    c: float,
    *,
    kl_coef: float = 0.0,
    num_prompts: int = 1,
) -> float:
    """Theorem 6, fast half: ``t_gamma <= 2 |S| / (1 - rho)^3 (1/c - 1/rho)`` for the matching indicator reward.

    ``pi0`` must put at least ``c`` on ``y_gamma``; ``rho = (V_0 + gamma + 1) / (r_G(y_gamma) + 1)`` with
    ``V_0 = E_{pi0}[r_G]``; requires ``lambda <= c (1 - rho)^3 / (16 (2 ln(1/min pi0) + 1/(2e)))``.
    """
    p0 = check_distribution(pi0, "pi0", ndim=1)
    r_g = check_rewards(truth, "truth", p0.shape, out_of_range="error")
    gamma, lam, size = check_gamma(gamma), check_kl_coef(kl_coef), check_num_prompts(num_prompts)
    if not 0.0 < float(c) < 1.0:
        raise ValueError(f"c must be in (0, 1); got {c!r}")
    rho = _rho(p0, r_g, y_gamma, gamma)
    if p0[y_gamma] < c:
        raise ValueError(f"pi0[{y_gamma}] = {p0[y_gamma]:.6g} is below c = {c}; Theorem 6 needs pi0(y_gamma) >= c")
    limit = c * (1.0 - rho) ** 3 / (16.0 * _kl_scale(p0))
    if lam > limit:
        raise ValueError(f"kl_coef = {lam} exceeds Theorem 6's condition lambda <= {limit:.3g}; the bound needs it")
    return 2.0 * size / (1.0 - rho) ** 3 * (1.0 / c - 1.0 / rho)
