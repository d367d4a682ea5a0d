"""`rmteacher metrics REWARDS`: the paper's metrics on rewards a user already has.

Run: ``rmteacher metrics examples/rewards.csv --truth ground_truth --json metrics.json``
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from rmteacher.analysis import summarize_reward_model
from rmteacher.options import option
from rmteacher.tables import PROMPT_ID, SAMPLE_ID, TableError, read_table, reward_matrix, write_json_atomic


@dataclass
class MetricsConfig:
    """Options of `rmteacher metrics`."""

    rewards: Path = option(
        help="CSV, JSONL or Parquet table with one row per sample: prompt_id, sample_id, one column per reward model",
        positional=True,
    )
    truth: str | None = option(None, help="ground-truth reward column; enables on-policy accuracy")
    reward_column: list[str] = option(
        default_factory=list,
        help="reward-model columns to evaluate (default: every numeric column but the ids and the truth)",
    )
    prenormalized: list[str] = option(
        default_factory=list,
        help="columns already normalized as training uses them (e.g. NAME_scaled from `rmteacher evaluate`): "
        "their variance is not normalized again",
    )
    unbiased: bool = option(False, help="K-1 variance estimator as the authors' code (default: Definition 2's K)")
    confidence: float = option(0.95, help="level of the bootstrap confidence intervals")
    num_resamples: int = option(1000, help="bootstrap resamples over prompts")
    seed: int = option(0, help="bootstrap seed")
    json: Path | None = option(None, help="also write the numbers to this JSON file")

    def __post_init__(self) -> None:
        if not (0.0 < self.confidence < 1.0):
            raise ValueError(f"--confidence must be in (0, 1); got {self.confidence}")
        if self.num_resamples < 1:
            raise ValueError(f"--num-resamples must be >= 1; got {self.num_resamples}")


def reward_columns(columns: list[str], numeric: list[str], truth: str | None, chosen: list[str]) -> list[str]:
    """The reward-model columns to evaluate: the chosen ones, or every numeric column but ids and truth."""
    if chosen:
        return chosen
    found = [c for c in numeric if c not in (PROMPT_ID, SAMPLE_ID, truth)]
    if not found:
        raise TableError(
            f"no reward-model columns: found {', '.join(map(repr, columns))}; need a numeric column besides "
            f"{PROMPT_ID}, {SAMPLE_ID} and the truth column"
        )
    return found


def run_metrics(config: MetricsConfig) -> str:
    """Computes every reward model's summary, writes ``--json`` and returns the table to print."""
    frame = read_table(config.rewards)
    where = str(config.rewards)
    numeric = [str(c) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    names = reward_columns([str(c) for c in frame.columns], numeric, config.truth, config.reward_column)
    truth = reward_matrix(frame, config.truth, where=where) if config.truth else None
    results: dict[str, Any] = {}
    rows = []
    for name in names:
        proxy = reward_matrix(frame, name, where=where)
        summary = summarize_reward_model(
            proxy.values,
            None if truth is None else truth.values,
            unbiased=config.unbiased,
            prenormalized=name in config.prenormalized,
            confidence=config.confidence,
            num_resamples=config.num_resamples,
            seed=config.seed,
        )
        results[name] = summary.to_dict()
        acc = summary.on_policy_accuracy
        rows.append(
            [
                name,
                _with_ci(
                    summary.reward_variance.estimate,
                    summary.reward_variance.low,
                    summary.reward_variance.high,
                ),
                _with_ci(
                    summary.raw_reward_variance.estimate,
                    summary.raw_reward_variance.low,
                    summary.raw_reward_variance.high,
                ),
                "-" if acc is None else _with_ci(acc.estimate, acc.low, acc.high),
                f"{summary.normalization.mean:.4g}",
                f"{summary.normalization.std:.4g}",
            ]
        )
    if config.json is not None:
        write_json_atomic(
            config.json,
            {"rewards": str(config.rewards), "truth": config.truth, "reward_models": results},
        )
    first = next(iter(results.values()))
    level = round(config.confidence * 100)
    header = (
        f"{first['num_prompts']} prompts x {first['num_samples']} samples; "
        f"variance: {'unbiased (K-1)' if config.unbiased else 'population (Definition 2)'}; "
        f"[{level}% bootstrap CI over prompts]"
    )
    table = tabulate(
        rows,
        headers=[
            "reward model",
            "reward variance (normalized)",
            "reward variance (raw)",
            "on-policy accuracy",
            "norm. mean",
            "norm. std",
        ],
        tablefmt="github",
    )
    return header + "\n\n" + table


def _with_ci(estimate: float, low: float, high: float) -> str:
    return f"{estimate:.3f} [{low:.3f}, {high:.3f}]"
