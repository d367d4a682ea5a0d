"""Checks at the boundary of the theory lab: every error names the argument, the value and what would be valid.

Rewards outside ``[-1, 1]`` are an error where a bound assumes them (the proofs use ``|r - V| <= 2``, spec §1) and a
warning in a simulation, which is well defined for any finite reward.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np

__all__ = [
    "check_distribution",
    "check_gamma",
    "check_kl_coef",
    "check_num_prompts",
    "check_positive",
    "check_rewards",
]

PROB_TOLERANCE = 1e-6


def _where(name: str, index: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(str(i) for i in index)}]"


def check_distribution(probs: Any, name: str = "pi0", *, ndim: int | None = None) -> np.ndarray:
    """Validates probabilities over outputs (last axis): finite, strictly positive, each row summing to one.

    The softmax policies of Eq. 2/3 give every output positive probability, so a zero entry has no logits.

    Args:
        probs: ``[..., num_outputs]`` probabilities.
        name: the argument's name, used in messages.
        ndim: the number of dimensions required, if any.

    Returns:
        a float64 copy of ``probs``.
    """
    array = np.array(probs, dtype=np.float64)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s); got shape {array.shape}")
    if array.ndim == 0 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty array of probabilities over outputs; got shape {array.shape}")
    if array.shape[-1] < 2:
        raise ValueError(f"{name} needs at least 2 outputs on its last axis; got shape {array.shape}")
    nan = np.isnan(array)
    if nan.any():
        raise ValueError(
            f"{_where(name, tuple(int(i) for i in np.argwhere(nan)[0]))} is NaN; probabilities must be numbers"
        )
    bad = ~np.isfinite(array) | (array <= 0)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{_where(name, index)} = {array[index]}; every probability must be in (0, 1] (a softmax policy gives "
            "each output positive probability)"
        )
    sums = array.sum(axis=-1)
    off = np.abs(sums - 1.0) > PROB_TOLERANCE
    if off.any():
        row = tuple(int(i) for i in np.argwhere(np.atleast_1d(off))[0]) if array.ndim > 1 else ()
        total = float(np.atleast_1d(sums)[row] if row else sums)
        where = f"{name}[{', '.join(str(i) for i in row)}, :]" if row else name
        raise ValueError(f"{where} sums to {total:.10g}; probabilities must sum to 1 (tolerance {PROB_TOLERANCE})")
    return array


def check_rewards(
    rewards: Any,
    name: str,
    shape: tuple[int, ...],
    *,
    shape_of: str = "pi0",
    out_of_range: Literal["error", "warn"] = "warn",
) -> np.ndarray:
    """Validates rewards over outputs: the shape of the policy, no NaN, and inside ``[-1, 1]``.

    Args:
        rewards: ``shape`` rewards.
        name: the argument's name.
        shape: the required shape (that of ``shape_of``).
        shape_of: the name of the argument that fixes the shape.
        out_of_range: ``"error"`` where a bound assumes ``[-1, 1]``, ``"warn"`` in a simulation.

    Returns:
        a float64 copy of ``rewards``.
    """
    array = np.array(rewards, dtype=np.float64)
    if array.shape != tuple(shape):
        if array.ndim == 1 and len(shape) == 1:
            raise ValueError(
                f"{name} has length {array.shape[0]} but {shape_of} has length {shape[0]}; they must match"
            )
        raise ValueError(f"{name} has shape {array.shape} but {shape_of} has shape {tuple(shape)}; they must match")
    nan = np.isnan(array)
    if nan.any():
        raise ValueError(f"{_where(name, tuple(int(i) for i in np.argwhere(nan)[0]))} is NaN; rewards must be numbers")
    outside = ~(np.abs(array) <= 1.0)
    if outside.any():
        index = tuple(int(i) for i in np.argwhere(outside)[0])
        message = f"{_where(name, index)} = {array[index]} lies outside [-1, 1]"
        if out_of_range == "error" or not np.isfinite(array[index]):
            raise ValueError(message + "; the paper's bounds assume rewards in [-1, 1] (rescale them)")
        warnings.warn(message + "; the simulation runs, but the paper's bounds assume rewards in [-1, 1]", stacklevel=3)
    return array


def check_positive(value: float, name: str) -> float:
    """A finite number ``> 0``."""
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return number


def check_gamma(gamma: float) -> float:
    """The reward increase ``gamma`` of ``t_gamma``: a finite number ``> 0``."""
    return check_positive(gamma, "gamma")


def check_kl_coef(kl_coef: float) -> float:
    """The KL coefficient ``lambda >= 0`` of Eq. 1."""
    number = float(kl_coef)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"kl_coef must be a finite number >= 0 (lambda in Eq. 1); got {kl_coef!r}")
    return number


def check_num_prompts(num_prompts: int, *, at_least: int = 1) -> int:
    """``|S|``, the number of policy-gradient prompts: an integer ``>= at_least``."""
    if isinstance(num_prompts, bool) or not isinstance(num_prompts, int | np.integer) or num_prompts < at_least:
        raise ValueError(f"num_prompts must be an integer >= {at_least}; got {num_prompts!r}")
    return int(num_prompts)
