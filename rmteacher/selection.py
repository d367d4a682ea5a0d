"""Choosing RL prompts by the reward variance they induce under the policy, and how noisy that choice is.

Pure functions over arrays; no I/O. Shapes: ``rewards: [num_prompts, num_samples]`` (``K = num_samples``),
``successes: [num_prompts]`` counts of the better value of a two-valued (0/1) reward.

Why (the paper's Theorem 1, per prompt): where a reward's variance under the policy is (near) zero, the policy
gradient on that prompt is (near) flat; with RLOO or GRPO every sample of a prompt whose rewards are all equal has
advantage zero, so the rollouts spent on it teach nothing. Dropping such prompts before training is what DAPO's
"dynamic sampling" does during training.

Noise: K samples estimate a prompt's variance. A prompt with success rate ``p`` shows zero variance with probability
``p^K + (1 - p)^K`` (:func:`flat_probability`), so some dropped prompts would have shown variance on another draw.
For a two-valued reward, :func:`fit_beta_prior` fits an empirical-Bayes Beta prior on ``p`` to the per-prompt
success counts (beta-binomial maximum likelihood) and :func:`expected_wrongly_dropped` sums, over the dropped
prompts, the posterior probability that a fresh draw of K samples would have kept them. For any reward,
:func:`split_half` applies the rule to two halves of each prompt's samples and counts the decisions that differ.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import optimize, special
from scipy import stats as scipy_stats

from rmteacher.metrics import as_reward_matrix

__all__ = [
    "BetaPrior",
    "KeepRule",
    "SplitHalf",
    "expected_wrongly_dropped",
    "fit_beta_prior",
    "flat_probability",
    "keep_prompts",
    "kept_counts",
    "posterior_variance",
    "split_half",
    "successes",
    "zero_variance",
]

#: Fewest samples per prompt for a trustworthy zero: at K = 3 a prompt with p = 0.2 looks flat half the time.
MIN_RELIABLE_SAMPLES = 4


@dataclass(frozen=True)
class KeepRule:
    """Which prompts to keep: ``nonzero`` (any variance at all: not every sample has the same reward), ``min_variance``
    (normalized variance >= ``value``) or ``top_fraction`` (the ``ceil(value * num_prompts)`` largest variances)."""

    kind: Literal["nonzero", "min_variance", "top_fraction"]
    value: float | None = None

    def __post_init__(self) -> None:
        if self.kind == "nonzero" and self.value is not None:
            raise ValueError(f"KeepRule('nonzero') takes no value; got {self.value}")
        if self.kind == "min_variance" and not (
            self.value is not None and math.isfinite(self.value) and self.value > 0
        ):
            raise ValueError(f"min_variance must be a finite number > 0; got {self.value}")
        if self.kind == "top_fraction" and not (self.value is not None and 0 < self.value <= 1):
            raise ValueError(f"top_fraction must be in (0, 1]; got {self.value}")

    def describe(self) -> str:
        if self.kind == "nonzero":
            return "drop prompts with zero observed variance"
        if self.kind == "min_variance":
            return f"keep prompts with normalized variance >= {self.value:g}"
        return f"keep the top {self.value:g} of prompts by normalized variance"


def zero_variance(rewards: npt.ArrayLike) -> np.ndarray:
    """``[num_prompts]`` True where every sample of a prompt has exactly the same reward (``rewards: [P, K]``).

    Decided on the rewards as given, not on a computed variance: a float mean of K equal values can differ from them
    by an ulp and give a variance of 1e-33 instead of 0.
    """
    r = as_reward_matrix(rewards, min_samples=2)
    return np.all(r == r[:, :1], axis=1)


def keep_prompts(variance: npt.ArrayLike, flat: npt.ArrayLike, rule: KeepRule) -> np.ndarray:
    """``[num_prompts]`` True for the prompts ``rule`` keeps.

    Args:
        variance: ``[num_prompts]`` normalized per-prompt reward variance.
        flat: ``[num_prompts]`` True where the prompt's samples all have the same reward (:func:`zero_variance`).
        rule: the keep rule. ``top_fraction`` breaks ties at the cut by prompt order (a stable sort).
    """
    v = np.asarray(variance, dtype=np.float64)
    zero = np.asarray(flat, dtype=bool)
    if v.ndim != 1 or v.shape != zero.shape:
        raise ValueError(f"variance has shape {v.shape} but flat has shape {zero.shape}; both must be [num_prompts]")
    if rule.kind == "nonzero":
        return ~zero
    assert rule.value is not None
    if rule.kind == "min_variance":
        return v >= rule.value
    count = math.ceil(rule.value * v.size - 1e-9)
    keep = np.zeros(v.size, dtype=bool)
    keep[np.argsort(-v, kind="stable")[:count]] = True
    return keep


def kept_counts(
    num_samples: int, step: float, rule: KeepRule, *, cut: float | None = None, unbiased: bool = False
) -> np.ndarray:
    """``[K + 1]`` True for the success counts ``s`` of a two-valued reward that ``rule`` keeps.

    A prompt with ``s`` of K samples at the higher value has normalized variance ``step^2 (s/K) (1 - s/K)`` (times
    ``K / (K - 1)`` when ``unbiased``), ``step`` being the gap between the two values after normalization.
    ``top_fraction`` depends on the other prompts; it is read as ``min_variance`` at ``cut``, the smallest variance
    it kept (every count when ``cut`` is 0).
    """
    support = np.arange(num_samples + 1)
    rate = support / num_samples
    variance = step**2 * rate * (1 - rate) * (num_samples / (num_samples - 1) if unbiased else 1.0)
    flat = (support == 0) | (support == num_samples)
    if rule.kind == "top_fraction":
        if cut is None:
            raise ValueError("kept_counts: a top_fraction rule needs the cut (the smallest variance kept)")
        if cut <= 0:
            return np.ones(num_samples + 1, dtype=bool)
        rule = KeepRule("min_variance", cut * (1 - 1e-9))  # the prompts' own variances carry float rounding
    return keep_prompts(variance, flat, rule)


def flat_probability(p: npt.ArrayLike, num_samples: int) -> np.ndarray:
    """Probability that K draws of a 0/1 reward with success rate ``p`` are all equal: ``p^K + (1 - p)^K``."""
    q = np.asarray(p, dtype=np.float64)
    return q**num_samples + (1.0 - q) ** num_samples


def successes(rewards: npt.ArrayLike) -> tuple[np.ndarray, float, float] | None:
    """For a reward taking exactly two values over all samples: ``(successes [P], low, high)``, the count of the higher
    value per prompt; None for any other reward (continuous, or constant)."""
    r = as_reward_matrix(rewards, min_samples=2)
    values = np.unique(r)
    if values.size != 2:
        return None
    return (r == values[1]).sum(axis=1), float(values[0]), float(values[1])


@dataclass(frozen=True)
class BetaPrior:
    """Beta(``a``, ``b``) prior on the prompts' success rates, fitted by maximum likelihood of the beta-binomial.

    ``at_bound``: the fit hit the search bounds (``a`` or ``b`` at 1e-3 or 1e3), e.g. when every prompt is flat; the
    prior is then only a limit of the data's likelihood and the estimate is rough.
    """

    a: float
    b: float
    at_bound: bool

    def flat_share(self, num_samples: int) -> float:
        """Share of prompts the prior expects to be flat in K samples: ``E[p^K + (1 - p)^K]``."""
        k = num_samples
        return float(
            math.exp(special.betaln(self.a + k, self.b) - special.betaln(self.a, self.b))
            + math.exp(special.betaln(self.a, self.b + k) - special.betaln(self.a, self.b))
        )

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "at_bound": self.at_bound}


_LOG_BOUNDS = (math.log(1e-3), math.log(1e3))


def fit_beta_prior(counts: npt.ArrayLike, num_samples: int) -> BetaPrior:
    """Empirical-Bayes Beta prior on success rates from per-prompt success counts out of K.

    Maximizes ``sum_i log BetaBinomial(s_i | K, a, b)`` over ``log a, log b`` in ``[log 1e-3, log 1e3]``, started
    at the method-of-moments values.

    Args:
        counts: ``[num_prompts]`` successes, each in ``[0, K]``.
        num_samples: K.
    """
    s = np.asarray(counts)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"counts must be a non-empty [num_prompts] array; got shape {s.shape}")
    if num_samples < 2 or s.min() < 0 or s.max() > num_samples:
        raise ValueError(f"counts must lie in [0, {num_samples}] with num_samples >= 2; got {s.min()}..{s.max()}")
    histogram = np.bincount(s.astype(int), minlength=num_samples + 1)  # [K + 1]
    support = np.arange(num_samples + 1)

    def negative_log_likelihood(log_ab: np.ndarray) -> float:
        a, b = np.exp(log_ab)
        return -float(histogram @ scipy_stats.betabinom.logpmf(support, num_samples, a, b))

    start = _moments_start(s / num_samples)
    fit = optimize.minimize(negative_log_likelihood, start, method="L-BFGS-B", bounds=[_LOG_BOUNDS, _LOG_BOUNDS])
    log_a, log_b = (float(v) for v in fit.x)
    at_bound = any(min(abs(v - bound) for bound in _LOG_BOUNDS) < 1e-3 for v in (log_a, log_b))
    return BetaPrior(math.exp(log_a), math.exp(log_b), at_bound)


def _moments_start(rates: np.ndarray) -> np.ndarray:
    mean = float(np.clip(rates.mean(), 0.02, 0.98))
    spread = float(rates.var())
    concentration = mean * (1 - mean) / spread - 1 if spread > 0 else 10.0
    concentration = float(np.clip(concentration, 0.05, 100.0))
    return np.clip(np.log([mean * concentration, (1 - mean) * concentration]), *_LOG_BOUNDS)


def expected_wrongly_dropped(
    counts: npt.ArrayLike, num_samples: int, dropped: npt.ArrayLike, prior: BetaPrior, kept_counts: npt.ArrayLike
) -> float:
    """Expected number of dropped prompts that a fresh draw of K samples would have kept.

    For prompt ``i`` with ``s_i`` successes, the posterior is ``Beta(a + s_i, b + K - s_i)`` and a fresh count
    ``s'`` is beta-binomial under it; the prompt counts with ``P(keep(s'))``. Summed over the dropped prompts.
    With the default rule (``keep(s') = 0 < s' < K``) this is ``sum_i 1 - E[p^K + (1 - p)^K | s_i]``.

    Args:
        counts: ``[num_prompts]`` successes out of K.
        num_samples: K.
        dropped: ``[num_prompts]`` True for the prompts the rule dropped.
        prior: the fitted :class:`BetaPrior`.
        kept_counts: ``[K + 1]`` True for the success counts the rule keeps.
    """
    s = np.asarray(counts, dtype=np.float64)
    drop = np.asarray(dropped, dtype=bool)
    keep = np.asarray(kept_counts, dtype=bool)
    if keep.shape != (num_samples + 1,):
        raise ValueError(f"kept_counts must have shape ({num_samples + 1},); got {keep.shape}")
    if s.shape != drop.shape:
        raise ValueError(f"counts has shape {s.shape} but dropped has shape {drop.shape}; they must match")
    support = np.arange(num_samples + 1)
    a = prior.a + s[drop, None]  # [num_dropped, 1]
    b = prior.b + num_samples - s[drop, None]
    fresh = scipy_stats.betabinom.pmf(support[None, :], num_samples, a, b)  # [num_dropped, K + 1]
    return float((fresh @ keep.astype(np.float64)).sum())


def posterior_variance(counts: npt.ArrayLike, num_samples: int, prior: BetaPrior) -> np.ndarray:
    """``[num_prompts]`` posterior mean of each prompt's true 0/1 variance ``p (1 - p)``:
    ``E[p (1 - p)] = a' b' / ((a' + b') (a' + b' + 1))`` under ``Beta(a', b') = Beta(a + s, b + K - s)``."""
    s = np.asarray(counts, dtype=np.float64)
    a, b = prior.a + s, prior.b + num_samples - s
    return a * b / ((a + b) * (a + b + 1))


@dataclass(frozen=True)
class SplitHalf:
    """The keep rule applied to each half of every prompt's samples (the first ``K // 2`` and the rest)."""

    samples_per_half: int
    agreement: float  # share of prompts both halves decide alike
    dropped_by_one_kept_by_other: float  # mean over the two directions of the count dropped by one, kept by the other
    variance_correlation: float  # Spearman correlation of the halves' variances (NaN when one half is constant)

    def to_dict(self) -> dict[str, Any]:
        correlation = None if math.isnan(self.variance_correlation) else self.variance_correlation
        return {
            "samples_per_half": self.samples_per_half,
            "agreement": self.agreement,
            "dropped_by_one_kept_by_other": self.dropped_by_one_kept_by_other,
            "variance_correlation": correlation,
        }


def split_half(values: npt.ArrayLike, raw: npt.ArrayLike, rule: KeepRule) -> SplitHalf:
    """How reproducible the selection is: the rule decided on two disjoint halves of the samples.

    Each half's variance is its ``K/2 - 1``-denominator estimate times ``(K - 1) / K``, so that it estimates the same
    quantity as the full population variance (Definition 2 at K samples), and ``--min-variance`` means the same.

    Args:
        values: ``[num_prompts, K]`` normalized rewards (as selected on).
        raw: ``[num_prompts, K]`` the rewards as given (for exact zeros).
        rule: the keep rule.
    """
    v = as_reward_matrix(values, min_samples=MIN_RELIABLE_SAMPLES, name="values")
    r = as_reward_matrix(raw, min_samples=MIN_RELIABLE_SAMPLES, name="raw")
    k = v.shape[1]
    half = k // 2
    decisions, variances = [], []
    for part in (slice(0, half), slice(half, k)):
        variance = np.var(v[:, part], axis=1, ddof=1) * (k - 1) / k
        variances.append(variance)
        decisions.append(keep_prompts(variance, zero_variance(r[:, part]), rule))
    first, second = decisions
    crossed = (np.sum(~first & second) + np.sum(first & ~second)) / 2
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):  # a constant half: no correlation, NaN
        warnings.simplefilter("ignore")
        correlation = float(scipy_stats.spearmanr(variances[0], variances[1]).statistic)
    return SplitHalf(half, float(np.mean(first == second)), float(crossed), correlation)
