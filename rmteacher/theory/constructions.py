"""The reward models and initial policies built in the proofs of Theorems 5 and 6 (App. D.8, D.9), for one prompt.

Theorem 5 (abridged: Theorem 2): for any initial policy, a perfectly accurate reward model with variance below
``1/T^2`` is slow (``t_gamma = Omega(T)``), while one that ranks a high-reward output ``y_gamma`` first and orders
everything else backwards (accuracy ``<= 2/|Y|``) is fast (``t_gamma = O(1/pi0(y_gamma))``).

Theorem 6 (abridged: Theorem 3): the indicator reward of ``y_gamma`` is fast for policies that already put mass
``c`` on ``y_gamma`` and slow for those that put at most ``1/T^2`` there, and vice versa for ``y'_gamma``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import softmax

from rmteacher.theory.validation import check_distribution, check_gamma, check_positive, check_rewards

__all__ = ["Theorem5Construction", "Theorem6Construction", "theorem5_construction", "theorem6_construction"]


@dataclass(frozen=True)
class Theorem5Construction:
    """App. D.8: ``slow`` (accuracy 1, ``Var_{pi0} < 1/T^2``) and ``fast`` (``y_gamma`` first, accuracy <= 2/|Y|)."""

    slow: np.ndarray  # [Y] r_RM(y) = b_y in (0, 1/T), ordered like r_G
    fast: np.ndarray  # [Y] r'_RM(y_gamma) = 1, r'_RM(y) = c_y in (0, pi0(y_gamma)) ordered against r_G
    y_gamma: int


def _check_t(T: float) -> float:
    value = check_positive(T, "T")
    if value < 1.0:
        raise ValueError(f"T must be a finite number >= 1; got {T!r}")
    return value


def theorem5_construction(
    truth: Any, pi0: Any, gamma: float, T: float, *, y_gamma: int | None = None
) -> Theorem5Construction:
    """Builds the two reward models of Theorem 5 for a ground truth and an initial policy.

    Args:
        truth: ``[Y]`` ground-truth rewards ``r_G(x, .)`` in ``[-1, 1]``.
        pi0: ``[Y]`` initial policy.
        gamma: the increase, ``> 0``.
        T: the slowness parameter, ``>= 1``.
        y_gamma: an output with ``r_G(y_gamma) > V_G(0) + gamma``; by default the likeliest such output under
            ``pi0`` (the fastest choice, since the fast bound is ``O(1/pi0(y_gamma))``).
    """
    p0 = check_distribution(pi0, "pi0", ndim=1)
    r_g = check_rewards(truth, "truth", p0.shape, out_of_range="error")
    gamma, t_param = check_gamma(gamma), _check_t(T)
    threshold = float(p0 @ r_g) + gamma
    eligible = np.flatnonzero(r_g > threshold)
    if y_gamma is None:
        if eligible.size == 0:
            raise ValueError(
                f"no output has r_G > V_G(0) + gamma = {threshold:.6g} (max r_G is {r_g.max():.6g}); lower gamma"
            )
        y_gamma = int(eligible[np.argmax(p0[eligible])])
    elif not (isinstance(y_gamma, int | np.integer) and 0 <= y_gamma < len(p0) and r_g[y_gamma] > threshold):
        raise ValueError(
            f"y_gamma must be an output index in [0, {len(p0)}) with r_G(y_gamma) > V_G(0) + gamma = {threshold:.6g}; "
            f"got {y_gamma!r}"
        )
    # Slow: b_y strictly inside (0, 1/T), equal for r_G ties, so every pair is ordered (or tied) like r_G.
    levels, dense_rank = np.unique(r_g, return_inverse=True)
    slow = (dense_rank + 1.0) / (len(levels) + 1.0) / t_param
    # Fast: all outputs but y_gamma get distinct c_y in (0, pi0(y_gamma)), decreasing in r_G (ties broken), so the
    # only correct pairs are (y_gamma, y) with r_G(y) < r_G(y_gamma) (Remark 2).
    others = np.array([y for y in np.argsort(r_g, kind="stable") if y != y_gamma])
    fast = np.empty_like(r_g)
    fast[others] = p0[y_gamma] * (len(others) - np.arange(len(others))) / (len(others) + 1.0)
    fast[y_gamma] = 1.0
    return Theorem5Construction(slow=slow, fast=fast, y_gamma=int(y_gamma))


@dataclass(frozen=True)
class Theorem6Construction:
    """App. D.9: indicator rewards of ``y_gamma`` and ``y'_gamma`` and a policy from each family ``Pi``, ``Pi'``."""

    reward: np.ndarray  # [Y] 1 at y_gamma, -1 elsewhere
    reward_prime: np.ndarray  # [Y] 1 at y'_gamma, -1 elsewhere
    pi: np.ndarray  # [Y] in Pi: E[r_G] = v0, pi(y'_gamma) <= 1/T^2, pi(y_gamma) >= c
    pi_prime: np.ndarray  # [Y] in Pi': E[r_G] = v0, pi(y_gamma) <= 1/T^2, pi(y'_gamma) >= c
    y_gamma: int
    y_gamma_prime: int


def _tilted(rewards: np.ndarray, mean: float) -> np.ndarray:
    """The distribution ``q ∝ exp(beta r)`` over ``rewards`` with ``E_q[r] = mean`` (all entries positive)."""
    if np.ptp(rewards) == 0.0:
        return np.full(len(rewards), 1.0 / len(rewards))
    beta = brentq(lambda b: float(softmax(b * rewards) @ rewards) - mean, -1e4, 1e4, xtol=1e-14)
    return np.asarray(softmax(beta * rewards))


def theorem6_construction(
    truth: Any,
    gamma: float,
    T: float,
    c: float,
    v0: float,
    *,
    y_gamma: int | None = None,
    y_gamma_prime: int | None = None,
) -> Theorem6Construction:
    """Builds Theorem 6's two indicator reward models and one initial policy from each family.

    The policy of ``Pi`` puts ``c`` on ``y_gamma``, ``1/(2 T^2)`` on ``y'_gamma`` and spreads the rest over the other
    outputs by exponential tilting so that ``E[r_G] = v0`` exactly; ``Pi'`` swaps the two outputs.

    Args:
        truth: ``[Y]`` ground truth in ``[-1, 1]``, ``Y >= 3``.
        gamma: the increase, ``> 0``.
        T: ``>= 1``.
        c: the mass on the favoured output, in ``(0, 1)``.
        v0: the initial expected ground truth ``V_0``, in ``(-1, 1)``.
        y_gamma, y_gamma_prime: two outputs with ``r_G > v0 + gamma``; by default the two highest ``r_G``.
    """
    r_g = np.array(truth, dtype=np.float64)
    if r_g.ndim != 1 or len(r_g) < 3:
        raise ValueError(f"truth must be a 1-D array of at least 3 outputs; got shape {r_g.shape}")
    r_g = check_rewards(r_g, "truth", r_g.shape, shape_of="truth", out_of_range="error")
    gamma, t_param = check_gamma(gamma), _check_t(T)
    if not 0.0 < float(c) < 1.0:
        raise ValueError(f"c must be in (0, 1); got {c!r}")
    if not -1.0 < float(v0) < 1.0:
        raise ValueError(f"v0 must be in (-1, 1); got {v0!r}")
    order = np.argsort(-r_g, kind="stable")
    first = int(order[0]) if y_gamma is None else int(y_gamma)
    second = int(order[1] if order[0] == first else order[0]) if y_gamma_prime is None else int(y_gamma_prime)
    for name, y in (("y_gamma", first), ("y_gamma_prime", second)):
        if not (0 <= y < len(r_g) and r_g[y] > v0 + gamma):
            raise ValueError(f"{name} must be an output index in [0, {len(r_g)}) with r_G > v0 + gamma = {v0 + gamma}")
    if first == second:
        raise ValueError(f"y_gamma and y_gamma_prime must differ; both are {first}")
    rest = np.array([y for y in range(len(r_g)) if y not in (first, second)])
    small = 0.5 / t_param**2

    def family(favoured: int, starved: int) -> np.ndarray:
        remaining = 1.0 - c - small
        if remaining <= 0:
            raise ValueError(f"c = {c} leaves no mass for the other outputs (c + 1/(2T^2) must be < 1)")
        mean = (v0 - c * r_g[favoured] - small * r_g[starved]) / remaining
        low, high = r_g[rest].min(), r_g[rest].max()
        if not (low < mean < high or (low == high == mean)):
            raise ValueError(
                f"no policy with E[r_G] = v0 = {v0}, mass c = {c} on output {favoured}: the other outputs would need "
                f"mean reward {mean:.6g}, outside ({low:.6g}, {high:.6g}); choose another v0 or c"
            )
        pi = np.empty_like(r_g)
        pi[favoured], pi[starved] = c, small
        pi[rest] = remaining * _tilted(r_g[rest], float(mean))
        return pi

    reward = np.where(np.arange(len(r_g)) == first, 1.0, -1.0)
    reward_prime = np.where(np.arange(len(r_g)) == second, 1.0, -1.0)
    return Theorem6Construction(
        reward=reward,
        reward_prime=reward_prime,
        pi=family(first, second),
        pi_prime=family(second, first),
        y_gamma=first,
        y_gamma_prime=second,
    )
