"""Reward increase, per-reward-model summaries and the paper's correlation table (Table 2). Pure functions."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rmteacher.metrics import (
    ArrayLike,
    ConfidenceInterval,
    NormalizationStats,
    accuracy,
    as_reward_matrix,
    bootstrap_indices,
    bootstrap_mean_ci,
    fit_normalization,
    normalize,
    percentile_interval,
    reward_variance,
)

__all__ = [
    "CORRELATION_ROWS",
    "Correlation",
    "RewardModelSummary",
    "TeacherRanking",
    "correlation_table",
    "normalized_variance",
    "normalized_variance_ci",
    "rank_teachers",
    "resampled_normalized_variance",
    "reward_increase",
    "summarize_reward_model",
    "teacher_score",
    "with_combined_rows",
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


def resampled_normalized_variance(
    rewards: ArrayLike, indices: np.ndarray, *, unbiased: bool = False, eps: float = 1e-8
) -> np.ndarray:
    """:func:`normalized_variance` of every bootstrap resample of prompts, re-fitting the normalization on each.

    Section 3 normalizes by the global mean ``m`` and std ``s`` of all rewards, so on a resample ``I`` of ``n``
    prompts with ``K`` samples each: ``normalized_variance(I) = mean_{p in I} v_p / s_I^2`` with ``v_p`` the
    per-prompt variance (Definition 2) and ``s_I^2 = SS_I / (n K - 1) + eps`` (:func:`fit_normalization`), where the
    total sum of squares splits into within- and between-prompt parts, ``SS_I = sum_{p in I} K (w_p + (mu_p -
    m_I)^2)``, from each prompt's mean ``mu_p`` and population variance ``w_p``; ``m_I = mean_{p in I} mu_p``. The
    per-prompt values are computed once, so a resample costs three gathers of ``[num_prompts]`` values.

    Args:
        rewards: ``[num_prompts, num_samples]`` raw rewards.
        indices: ``[num_resamples, num_prompts']`` prompt indices of each resample (:func:`bootstrap_indices`).
        unbiased: the ``K - 1`` per-prompt estimator, as :func:`normalized_variance`.
        eps: the normalization's ``eps``, as :func:`fit_normalization`.

    Returns:
        ``[num_resamples]`` normalized variances.
    """
    r = as_reward_matrix(rewards, min_samples=2)
    rows = np.asarray(indices)
    if rows.ndim != 2 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(
            f"indices must be an integer [num_resamples, num_prompts] array; got {rows.dtype} {rows.shape}"
        )
    if rows.size and (rows.min() < 0 or rows.max() >= r.shape[0]):
        raise ValueError(f"indices must lie in [0, {r.shape[0]}); got {rows.min()}..{rows.max()}")
    num_samples = r.shape[1]
    # Centre the prompt means on the full data's grand mean first, so that the between-prompt sum of squares,
    # sum (mu_p - m_I)^2 = sum c_p^2 - n d_I^2 with c_p = mu_p - mean(mu) and d_I = mean_{p in I} c_p, subtracts
    # numbers of the spread's size, not of the rewards' offset.
    centred_mean = r.mean(axis=1) - r.mean()  # [num_prompts]
    squares = np.var(r, axis=1) + centred_mean**2  # [num_prompts], population within-prompt variance + c_p^2
    per_prompt = reward_variance(r, unbiased=unbiased)  # [num_prompts]
    shift = centred_mean[rows].mean(axis=1)  # [num_resamples], d_I
    num_prompts = rows.shape[1]
    total_squares = num_samples * (squares[rows].sum(axis=1) - num_prompts * shift**2)
    global_variance = total_squares / (num_prompts * num_samples - 1) + eps
    return per_prompt[rows].mean(axis=1) / global_variance


def normalized_variance_ci(
    rewards: ArrayLike,
    *,
    unbiased: bool = False,
    confidence: float = 0.95,
    num_resamples: int = 1000,
    seed: int = 0,
) -> ConfidenceInterval:
    """:func:`normalized_variance` with its bootstrap CI over prompts, the normalization re-fitted per resample.

    The same numbers as ``bootstrap_ci(lambda r: normalized_variance(r, unbiased=unbiased), rewards)`` (same draws,
    same percentile rule; equal to rounding), vectorized by :func:`resampled_normalized_variance`.

    Args:
        rewards: ``[num_prompts, num_samples]`` raw rewards.
        unbiased, confidence, num_resamples, seed: as :func:`normalized_variance` and
            :func:`rmteacher.metrics.bootstrap_ci`.
    """
    r = as_reward_matrix(rewards, min_samples=2)
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    estimate = normalized_variance(r, unbiased=unbiased)
    if r.shape[0] == 1:
        return ConfidenceInterval(estimate, estimate, estimate, confidence)
    indices = bootstrap_indices(r.shape[0], num_resamples, seed=seed)
    replicates = resampled_normalized_variance(r, indices, unbiased=unbiased)
    return percentile_interval(estimate, replicates, confidence=confidence)


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
    prenormalized: bool = False,
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
        prenormalized: the rewards are already normalized as training uses them (e.g. the paper's scaled reward
            model, normalized then scaled); their variance is reported as is instead of normalizing again.
        confidence, num_resamples, seed: the bootstrap's settings (:func:`rmteacher.metrics.bootstrap_ci`).
    """
    r = as_reward_matrix(proxy, name="proxy", min_samples=2)
    options: dict[str, Any] = {"confidence": confidence, "num_resamples": num_resamples, "seed": seed}
    raw = bootstrap_mean_ci(reward_variance(r, unbiased=unbiased), **options)
    acc = None
    if truth is not None:
        t = as_reward_matrix(truth, name="truth", min_samples=2)
        acc = bootstrap_mean_ci(accuracy(r, t), **options)
    return RewardModelSummary(
        num_prompts=r.shape[0],
        num_samples=r.shape[1],
        reward_variance=raw if prenormalized else normalized_variance_ci(r, unbiased=unbiased, **options),
        raw_reward_variance=raw,
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
    from scipy import stats as scipy_stats  # here, not at the top: importing scipy.stats takes ~0.5 s

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


def with_combined_rows(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``columns`` (``reward_variance``, ``on_policy_accuracy``, ``off_policy_accuracy``, one value per reward model)
    plus the paper's two combined Table 2 rows, as simple averages (see :func:`correlation_table`)."""
    out = dict(columns)
    out["on_and_off_policy_accuracy"] = (out["on_policy_accuracy"] + out["off_policy_accuracy"]) / 2
    out["reward_variance_and_accuracy"] = (out["reward_variance"] + out["on_and_off_policy_accuracy"]) / 2
    return out


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
    columns = with_combined_rows(columns)
    return {
        row: {name: _correlate(columns[row], values) for name, values in increase_columns.items()}
        for row in CORRELATION_ROWS
    }


@dataclass(frozen=True)
class TeacherRanking:
    """Reward models ordered from best to worst teacher, with how sure each adjacent step of the order is.

    ``score`` is the ranking criterion per model with its bootstrap CI; ``confidence[i]`` is the share of bootstrap
    resamples (over prompts) in which ``order[i]`` scored above ``order[i + 1]``; ``separated[i]`` says whether the
    CI of their score difference excludes zero.
    """

    criterion: str
    order: list[str]
    score: dict[str, ConfidenceInterval]
    confidence: list[float]
    separated: list[bool]

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "order": self.order,
            "score": {name: ci.to_dict() for name, ci in self.score.items()},
            "adjacent_confidence": self.confidence,
            "adjacent_separated": self.separated,
        }


def teacher_score(
    variance: float, on_policy_accuracy: float | None, off_policy_accuracy: float | None
) -> tuple[float, str]:
    """The paper's combination of reward variance and accuracy, with what it was computed from.

    ``(variance + (on + off) / 2) / 2`` (Table 2's "Reward variance & Acc."); with only one accuracy, the average of
    the variance and that accuracy (Table 8's variant); with none, the variance alone.
    """
    accuracies = [a for a in (on_policy_accuracy, off_policy_accuracy) if a is not None]
    if not accuracies:
        return variance, "reward_variance"
    name = "reward_variance_and_accuracy" if len(accuracies) == 2 else "reward_variance_and_on_policy_accuracy"
    if off_policy_accuracy is not None and on_policy_accuracy is None:
        name = "reward_variance_and_off_policy_accuracy"
    return (variance + float(np.mean(accuracies))) / 2, name


def rank_teachers(
    normalized_rewards: Mapping[str, np.ndarray],
    truth: np.ndarray | None = None,
    off_policy_correct: Mapping[str, np.ndarray] | None = None,
    *,
    unbiased: bool = False,
    confidence: float = 0.95,
    num_resamples: int = 1000,
    seed: int = 0,
) -> TeacherRanking:
    """Ranks reward models as teachers for the policy that produced the samples (higher score: better teacher).

    Args:
        normalized_rewards: per model, ``[num_prompts, num_samples]`` rewards *after* the normalization that training
            will use (so reward variance is comparable across models).
        truth: ``[num_prompts, num_samples]`` ground truth of the same samples, for on-policy accuracy.
        off_policy_correct: per model, ``[num_prompts]`` off-policy correctness of each prompt's preference pair
            (NaN where a prompt has no pair); resampled together with the prompts.
        unbiased, confidence, num_resamples, seed: variance estimator and bootstrap settings.
    """
    names = list(normalized_rewards)
    if len(names) < 1:
        raise ValueError("rank_teachers needs at least one reward model")
    first = next(iter(normalized_rewards.values()))
    num_prompts = first.shape[0]
    # Every score is a mean of per-prompt values (or a ratio of sums, for off-policy pairs with gaps), so compute
    # the per-prompt values once and resample them by indexing one [num_resamples, num_prompts] index matrix,
    # shared by all models so that score differences are paired.
    indices = bootstrap_indices(num_prompts, num_resamples, seed=seed)
    full, resampled_columns, criterion = [], [], ""
    for name in names:
        rewards = normalized_rewards[name]
        per_prompt_variance = reward_variance(rewards, unbiased=unbiased)  # [num_prompts]
        variance = per_prompt_variance[indices].mean(axis=1)  # [num_resamples]
        accuracy_sum, accuracy_count = np.zeros(num_resamples), np.zeros(num_resamples)
        on = off = None
        if truth is not None:
            per_prompt_accuracy = accuracy(rewards, truth)
            on = float(per_prompt_accuracy.mean())
            accuracy_sum += per_prompt_accuracy[indices].mean(axis=1)
            accuracy_count += 1
        if off_policy_correct is not None and name in off_policy_correct:
            correct = off_policy_correct[name]  # [num_prompts], NaN where a prompt has no pair
            present = np.isfinite(correct)
            off = float(np.nanmean(correct)) if present.any() else None
            # np.nanmean per resample: the sum with NaN as 0 over the count of pairs.
            pairs = present.astype(np.float64)[indices].sum(axis=1)  # [num_resamples]
            with np.errstate(invalid="ignore", divide="ignore"):  # a resample without pairs leaves it out
                off_resampled = np.where(present, correct, 0.0)[indices].sum(axis=1) / pairs
            accuracy_sum += np.where(pairs > 0, off_resampled, 0.0)
            accuracy_count += pairs > 0
        value, criterion = teacher_score(float(per_prompt_variance.mean()), on, off)
        full.append(value)
        with np.errstate(invalid="ignore", divide="ignore"):  # teacher_score: the variance alone without accuracy
            combined = (variance + accuracy_sum / accuracy_count) / 2
        resampled_columns.append(np.where(accuracy_count > 0, combined, variance))
    scores, resampled = np.array(full), np.stack(resampled_columns, axis=1)  # [num_models], [num_resamples, models]
    alpha = (1 - confidence) / 2
    order_index = np.argsort(-scores, kind="stable")
    ranked = [names[i] for i in order_index]
    adjacent_confidence, separated = [], []
    for upper, lower in itertools.pairwise(order_index):
        difference = resampled[:, upper] - resampled[:, lower]
        adjacent_confidence.append(float(np.mean(difference > 0)))
        separated.append(bool(np.quantile(difference, alpha) > 0))
    score = {
        names[i]: ConfidenceInterval(
            float(scores[i]),
            float(np.quantile(resampled[:, i], alpha)),
            float(np.quantile(resampled[:, i], 1 - alpha)),
            confidence,
        )
        for i in range(len(names))
    }
    return TeacherRanking(criterion, ranked, score, adjacent_confidence, separated)
