"""Reward increase, per-reward-model summaries and the paper's correlation table (Table 2). Pure functions."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from rmteacher.metrics import (
    ArrayLike,
    ConfidenceInterval,
    NormalizationStats,
    accuracy,
    as_reward_matrix,
    bootstrap_ci,
    fit_normalization,
    normalize,
    reward_variance,
)

__all__ = [
    "CORRELATION_ROWS",
    "Correlation",
    "RewardModelSummary",
    "correlation_table",
    "normalized_variance",
    "reward_increase",
    "summarize_reward_model",
]

#: Rows of the paper's Table 2, in its order.
CORRELATION_ROWS = (
    "reward_variance",
    "on_policy_accuracy",
    "off_policy_accuracy",
    "on_and_off_policy_accuracy",
    "reward_variance_and_accuracy",
)


def reward_increase(
    rewards: ArrayLike, initial_rewards: ArrayLike, *, stats: NormalizationStats | None = None
) -> float:
    """Increase of the mean normalized reward from the initial policy to a checkpoint (Section 4.1, Figure 2).

    ``increase = mean(normalize(rewards)) - mean(normalize(initial_rewards))`` with the normalization fitted on the
    initial policy's rewards (``stats``; fitted here when not given), so the initial policy's level is 0 and one unit
    is one standard deviation of the reward under the initial policy.

    Args:
        rewards: ``[num_prompts, num_samples]`` rewards of the checkpoint's samples.
        initial_rewards: ``[num_prompts', num_samples']`` rewards of the initial policy's samples.
        stats: the initial policy's normalization statistics for this reward.
    """
    initial = as_reward_matrix(initial_rewards, name="initial_rewards")
    current = as_reward_matrix(rewards, name="rewards")
    stats = stats if stats is not None else fit_normalization(initial)
    return float(normalize(current, stats).mean() - normalize(initial, stats).mean())


def normalized_variance(rewards: ArrayLike, *, unbiased: bool = False) -> float:
    """Mean over prompts of the per-prompt variance of rewards normalized by their own global mean and std.

    This is the paper's "reward variance" column of Table 1 (the authors' code logged it with ``unbiased=True``).
    """
    r = as_reward_matrix(rewards, min_samples=2)
    return float(reward_variance(normalize(r, fit_normalization(r)), unbiased=unbiased).mean())


@dataclass(frozen=True)
class RewardModelSummary:
    """The paper's per-reward-model numbers with bootstrap CIs over prompts."""

    num_prompts: int
    num_samples: int
    reward_variance: ConfidenceInterval  # normalized by the model's own global mean/std (the paper's number)
    raw_reward_variance: ConfidenceInterval
    on_policy_accuracy: ConfidenceInterval | None
    normalization: NormalizationStats
    unbiased: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_prompts": self.num_prompts,
            "num_samples": self.num_samples,
            "unbiased_variance": self.unbiased,
            "reward_variance": self.reward_variance.to_dict(),
            "raw_reward_variance": self.raw_reward_variance.to_dict(),
            "on_policy_accuracy": None if self.on_policy_accuracy is None else self.on_policy_accuracy.to_dict(),
            "normalization": self.normalization.to_dict(),
        }


def summarize_reward_model(
    proxy: ArrayLike,
    truth: ArrayLike | None = None,
    *,
    unbiased: bool = False,
    confidence: float = 0.95,
    num_resamples: int = 1000,
    seed: int = 0,
) -> RewardModelSummary:
    """Reward variance (normalized and raw) and on-policy accuracy of one reward model, with bootstrap CIs.

    The normalized variance re-fits the normalization on every bootstrap resample, so its interval includes the
    uncertainty of the normalization statistics.

    Args:
        proxy: ``[num_prompts, num_samples]`` rewards of the initial policy's samples under the reward model.
        truth: optional ``[num_prompts, num_samples]`` ground-truth rewards of the same samples.
        unbiased: use the ``K - 1`` variance estimator (the authors' code) instead of Definition 2's population one.
        confidence, num_resamples, seed: passed to :func:`rmteacher.metrics.bootstrap_ci`.
    """
    r = as_reward_matrix(proxy, name="proxy", min_samples=2)
    options: dict[str, Any] = {"confidence": confidence, "num_resamples": num_resamples, "seed": seed}
    raw = reward_variance(r, unbiased=unbiased)
    acc = None
    if truth is not None:
        t = as_reward_matrix(truth, name="truth", min_samples=2)
        acc = bootstrap_ci(np.mean, accuracy(r, t), **options)
    return RewardModelSummary(
        num_prompts=r.shape[0],
        num_samples=r.shape[1],
        reward_variance=bootstrap_ci(lambda x: normalized_variance(x, unbiased=unbiased), r, **options),
        raw_reward_variance=bootstrap_ci(np.mean, raw, **options),
        on_policy_accuracy=acc,
        normalization=fit_normalization(r),
        unbiased=unbiased,
    )


@dataclass(frozen=True)
class Correlation:
    """Pearson and Spearman correlation between a reward-model property and a reward increase, over n models."""

    pearson: float
    pearson_p: float
    spearman: float
    spearman_p: float
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "pearson": clean(self.pearson),
            "pearson_p": clean(self.pearson_p),
            "spearman": clean(self.spearman),
            "spearman_p": clean(self.spearman_p),
            "n": self.n,
        }


def _correlate(x: np.ndarray, y: np.ndarray) -> Correlation:
    with warnings.catch_warnings():
        # A constant property or increase has no defined correlation; report NaN rather than warn.
        warnings.simplefilter("ignore", scipy_stats.ConstantInputWarning)
        pearson = scipy_stats.pearsonr(x, y)
        spearman = scipy_stats.spearmanr(x, y)
    return Correlation(
        pearson=float(pearson.statistic),
        pearson_p=float(pearson.pvalue),
        spearman=float(spearman.statistic),
        spearman_p=float(spearman.pvalue),
        n=len(x),
    )


def correlation_table(
    reward_variance: Sequence[float] | np.ndarray,
    on_policy_accuracy: Sequence[float] | np.ndarray,
    off_policy_accuracy: Sequence[float] | np.ndarray,
    increases: Mapping[str, Sequence[float] | np.ndarray],
) -> dict[str, dict[str, Correlation]]:
    """The paper's Table 2: correlation of each reward-model property with each reward increase.

    One entry per reward model in every sequence. Rows (Section 4.1, Table 2 caption):
    ``reward_variance``, ``on_policy_accuracy``, ``off_policy_accuracy``,
    ``on_and_off_policy_accuracy = (on + off) / 2`` and
    ``reward_variance_and_accuracy = (reward_variance + on_and_off_policy_accuracy) / 2``; simple averages, which
    reproduce the paper's reported Spearman values exactly. The paper correlates over its six proxy reward models
    and leaves the ground-truth run out.

    Returns:
        ``{row: {increase_name: Correlation}}``.
    """
    columns = {
        "reward_variance": np.asarray(reward_variance, dtype=np.float64),
        "on_policy_accuracy": np.asarray(on_policy_accuracy, dtype=np.float64),
        "off_policy_accuracy": np.asarray(off_policy_accuracy, dtype=np.float64),
    }
    increase_columns = {name: np.asarray(v, dtype=np.float64) for name, v in increases.items()}
    if not increase_columns:
        raise ValueError("increases is empty; give at least one reward-increase column")
    n = len(columns["reward_variance"])
    for name, values in {**columns, **increase_columns}.items():
        if values.ndim != 1 or len(values) != n:
            raise ValueError(f"{name} has shape {values.shape}; every column needs one value per reward model ({n})")
        if not np.isfinite(values).all():
            raise ValueError(f"{name} has a non-finite value at reward model {int(np.argmax(~np.isfinite(values)))}")
    if n < 3:
        raise ValueError(f"a correlation needs at least 3 reward models; got {n}")
    columns["on_and_off_policy_accuracy"] = (columns["on_policy_accuracy"] + columns["off_policy_accuracy"]) / 2
    columns["reward_variance_and_accuracy"] = (columns["reward_variance"] + columns["on_and_off_policy_accuracy"]) / 2
    return {
        row: {name: _correlate(columns[row], values) for name, values in increase_columns.items()}
        for row in CORRELATION_ROWS
    }
