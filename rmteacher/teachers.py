"""Every reward model's teacher metrics under the policy (the paper's Table 1) and the teacher ranking.

Pure: scored samples in, a JSON-able dict out. The paper's protocol (Section 3, "RM evaluation"): each reward is
normalized by its own mean and std over all of the initial policy's samples, as training will normalize it; reward
variance (Definition 2) is computed on the normalized rewards, accuracy (Definition 1) on the raw ones, as the
authors' code does (normalizing can turn rewards one float ulp apart into exact ties).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from rmteacher.analysis import TeacherRanking, normalized_variance_ci, rank_teachers
from rmteacher.metrics import (
    NormalizationStats,
    accuracy,
    bootstrap_ci,
    bootstrap_mean_ci,
    bootstrap_ratio_ci,
    fit_normalization,
    normalize,
    off_policy_accuracy,
    ordered_pairs,
    reward_variance,
    scale_prompts,
    truth_tie_share,
)
from rmteacher.tables import TRUTH

__all__ = ["PairScores", "RewardColumn", "teacher_metrics", "teacher_ranking", "training_rewards"]


@dataclass(frozen=True)
class RewardColumn:
    """One reward as training will see it: ``values`` already normalized, and how they were made."""

    base: str
    raw: np.ndarray  # [num_prompts, num_samples], as the reward gives it
    values: np.ndarray  # [num_prompts, num_samples], normalized (and scaled for a _scaled column)
    stats: NormalizationStats
    scaled: bool


@dataclass(frozen=True)
class PairScores:
    """Scores of off-policy pairs, one entry per pair: ``prompt_ids: [num_pairs]``, per reward ``(chosen, rejected)``
    arrays ``[num_pairs]``."""

    prompt_ids: np.ndarray
    scores: dict[str, tuple[np.ndarray, np.ndarray]]


def training_rewards(
    scores: dict[str, np.ndarray],
    prompt_ids: np.ndarray,
    *,
    scaled_ids: np.ndarray,
    scale_reward: list[str],
    scale_factor: float,
    construction: Literal["rmteacher", "authors_code"] = "rmteacher",
) -> dict[str, RewardColumn]:
    """Normalizes every reward by its own initial-policy statistics (Section 3) and adds the ``_scaled`` columns.

    Args:
        scores: per reward, ``[num_prompts, num_samples]`` raw rewards.
        prompt_ids: ``[num_prompts]``, the rows' prompts.
        scaled_ids: the prompts whose rewards ``--scale-reward`` scales.

    The paper's perfectly accurate, low-variance reward model multiplies the *normalized* reward of a seeded half of
    the prompts by 0.001, so its reward variance here is that of the reward used in training; normalizing it again
    would undo the construction. ``construction="authors_code"`` builds it as the authors' code does instead
    (:func:`rmteacher.metrics.perfectly_accurate_low_variance`: statistics fitted after scaling the raw rewards, the
    normalized reward scaled again), and its column keeps those statistics.
    """
    columns: dict[str, RewardColumn] = {}
    for name, raw in scores.items():
        stats = fit_normalization(raw)
        columns[name] = RewardColumn(name, raw, normalize(raw, stats), stats, scaled=False)
    for name in scale_reward:
        base = columns[name]
        rows = np.flatnonzero(np.isin(prompt_ids, scaled_ids))
        stats = base.stats
        if construction == "authors_code":
            stats = fit_normalization(scale_prompts(base.raw, rows, scale_factor))
            values = scale_prompts(normalize(base.raw, stats), rows, scale_factor)  # s_x (r - mu') / sigma'

        else:
            values = scale_prompts(base.values, rows, scale_factor)
        # Its "raw" reward is the scaled, normalized one: that is the reward as it exists (and is stored).
        columns[f"{name}_scaled"] = RewardColumn(name, values, values, stats, scaled=True)
    if TRUTH in columns:  # the ground truth last, as the paper's tables
        columns[TRUTH] = columns.pop(TRUTH)
    return columns


def _off_policy_per_prompt(pairs: PairScores, base: str, prompt_ids: np.ndarray) -> np.ndarray | None:
    """``[num_prompts]`` share of each prompt's off-policy pairs the reward orders like the ground truth (NaN: no
    pair). Every pair of a prompt counts; a positive scaling of a prompt keeps its pairs' order."""
    if base not in pairs.scores or TRUTH not in pairs.scores:
        return None
    proxy_chosen, proxy_rejected = pairs.scores[base]
    gold_chosen, gold_rejected = pairs.scores[TRUTH]
    correct = off_policy_accuracy(proxy_chosen, proxy_rejected, gold_chosen, gold_rejected)  # [num_pairs]
    per_prompt = pd.Series(correct).groupby(pairs.prompt_ids).mean()
    values = per_prompt.reindex(prompt_ids).to_numpy(dtype=np.float64)
    return None if np.isnan(values).all() else values


def _off_policy_ordered(pairs: PairScores, base: str, prompt_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(correct, ordered)``, ``[num_prompts]`` each: per prompt, its off-policy pairs the ground truth orders
    (labels that differ) and how many of those the reward orders the same way; None without pairs or ground truth."""
    if base not in pairs.scores or TRUTH not in pairs.scores:
        return None
    proxy_chosen, proxy_rejected = pairs.scores[base]
    gold_chosen, gold_rejected = pairs.scores[TRUTH]
    correct, ordered = ordered_pairs(
        np.stack([proxy_chosen, proxy_rejected], axis=1), np.stack([gold_chosen, gold_rejected], axis=1)
    )  # [num_pairs] each: one pair per row
    frame = pd.DataFrame({"correct": correct, "ordered": ordered}).groupby(pairs.prompt_ids).sum()
    frame = frame.reindex(prompt_ids).fillna(0.0)
    return frame["correct"].to_numpy(np.float64), frame["ordered"].to_numpy(np.float64)


def teacher_ranking(
    columns: dict[str, RewardColumn],
    prompt_ids: np.ndarray,
    pairs: PairScores | None,
    *,
    unbiased: bool,
    confidence: float,
    num_resamples: int,
) -> TeacherRanking:
    """The teacher ranking alone (what ``--budget auto`` checks after each round), as :func:`teacher_metrics` ranks:
    every reward model but the ground truth, scored on its training reward with bootstrap CIs over prompts."""
    off_correct = {}
    for name, column in columns.items():
        correct = None if pairs is None else _off_policy_per_prompt(pairs, column.base, prompt_ids)
        if correct is not None:
            off_correct[name] = correct
    return rank_teachers(
        {n: c.values for n, c in columns.items() if n != TRUTH},
        columns[TRUTH].raw if TRUTH in columns else None,
        off_correct or None,
        unbiased=unbiased,
        confidence=confidence,
        num_resamples=num_resamples,
    )


def teacher_metrics(
    columns: dict[str, RewardColumn],
    prompt_ids: np.ndarray,
    pairs: PairScores | None,
    *,
    unbiased: bool,
    confidence: float,
    num_resamples: int,
    ranking: TeacherRanking | None = None,
) -> dict[str, Any]:
    """Every reward model's metrics (the paper's Table 1 analogue) and the teacher ranking, with bootstrap CIs over
    prompts. ``columns`` from :func:`training_rewards`; ``prompt_ids: [num_prompts]``; ``ranking``: the
    :func:`teacher_ranking` of the same arguments when the caller has it already (it is computed otherwise)."""
    truth = columns[TRUTH].raw if TRUTH in columns else None
    ci: dict[str, Any] = {"confidence": confidence, "num_resamples": num_resamples}
    entries: dict[str, dict[str, Any]] = {}
    for name, column in columns.items():
        # Normalized variance re-fits the normalization on every bootstrap resample; a scaled column is already the
        # training reward, so its variance is a mean of per-prompt variances.
        variance_ci = (
            bootstrap_mean_ci(reward_variance(column.values, unbiased=unbiased), **ci)
            if column.scaled
            else normalized_variance_ci(column.raw, unbiased=unbiased, **ci)
        )
        entry: dict[str, Any] = {
            "reward_variance": variance_ci.to_dict(),
            "raw_reward_variance": bootstrap_ci(
                np.mean, reward_variance(column.raw, unbiased=unbiased), **ci
            ).to_dict(),
            "zero_variance_prompts": float(np.mean(reward_variance(column.raw) < 1e-12)),
            "normalization": column.stats.to_dict(),
            "normalization_per_prompt_std": fit_normalization(column.raw, method="per_prompt_std").to_dict(),
            "scaled": column.scaled,
        }
        if truth is not None:
            entry["on_policy_accuracy"] = bootstrap_ci(np.mean, accuracy(column.raw, truth), **ci).to_dict()
            # Next to the paper's accuracy, the accuracy over the pairs the ground truth orders (RewardBench's count).
            without_ties = bootstrap_ratio_ci(*ordered_pairs(column.raw, truth), **ci)
            entry["on_policy_accuracy_without_ties"] = None if without_ties is None else without_ties.to_dict()
        correct = None if pairs is None else _off_policy_per_prompt(pairs, column.base, prompt_ids)
        if pairs is not None and correct is not None:
            present = correct[~np.isnan(correct)]
            entry["off_policy_accuracy"] = bootstrap_ci(np.mean, present, **ci).to_dict()
            entry["off_policy_pairs"] = int(np.isin(pairs.prompt_ids, prompt_ids).sum())
            counts = _off_policy_ordered(pairs, column.base, prompt_ids)
            assert counts is not None  # the same condition as _off_policy_per_prompt's
            off_without_ties = bootstrap_ratio_ci(*counts, **ci)
            entry["off_policy_accuracy_without_ties"] = None if off_without_ties is None else off_without_ties.to_dict()
        if "on_policy_accuracy" in entry and "off_policy_accuracy" in entry:
            both = (entry["on_policy_accuracy"]["estimate"] + entry["off_policy_accuracy"]["estimate"]) / 2
            entry["on_and_off_policy_accuracy"] = both
            entry["reward_variance_and_accuracy"] = (entry["reward_variance"]["estimate"] + both) / 2
        entries[name] = entry
    if ranking is None:
        ranking = teacher_ranking(columns, prompt_ids, pairs, unbiased=unbiased, **ci)
    return {
        "num_prompts": len(prompt_ids),
        "variance_estimator": "unbiased (K-1)" if unbiased else "population (Definition 2)",
        "reward_models": entries,
        "ranking": ranking.to_dict(),
        "ground_truth_ties": _ground_truth_ties(truth, pairs, prompt_ids),
    }


def _ground_truth_ties(truth: np.ndarray | None, pairs: PairScores | None, prompt_ids: np.ndarray) -> dict[str, Any]:
    """The share of pairs the ground truth ties, on-policy (all pairs of each prompt's samples) and off-policy (the
    pairs of the evaluated prompts), None where not measured: every such pair is an error of the paper's accuracy
    unless the reward ties it too."""
    ties: dict[str, Any] = {"on_policy": None, "off_policy": None}
    if truth is not None:
        ties["on_policy"] = float(truth_tie_share(truth).mean())
    if pairs is not None and TRUTH in pairs.scores:
        mine = np.isin(pairs.prompt_ids, prompt_ids)
        gold_chosen, gold_rejected = pairs.scores[TRUTH]
        if mine.any():
            ties["off_policy"] = float(np.mean(gold_chosen[mine] == gold_rejected[mine]))
    return ties
