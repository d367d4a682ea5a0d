"""`rmteacher metrics REWARDS`: the paper's metrics on rewards a user already has.

Run: ``rmteacher metrics examples/rewards.csv --truth ground_truth --json metrics.json``

pandas, scipy and the metrics are imported inside :func:`run_metrics`, so that the CLI can build this command's
options (and ``rmteacher --help``) without them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmteacher.options import check_options, option, output_file_check, resamples_check, seed_check

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: The epsilon of the paper's normalization, ``std = sqrt(var + 1e-8)`` (``rmteacher.metrics.fit_normalization``).
NORMALIZATION_EPS = 1e-8
#: A reward's variance below ``99 * NORMALIZATION_EPS`` lets the epsilon move its normalized variance by more than 1%
#: (that variance scales as ``var / (var + eps)``): the number would describe the epsilon, not the reward model.
MIN_VARIANCE = 99 * NORMALIZATION_EPS


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
        help="reward-model columns to evaluate (default: every column but the ids, the truth and text-only columns)",
    )
    prenormalized: list[str] = option(
        default_factory=list,
        help="columns already normalized as training uses them (e.g. NAME_scaled from `rmteacher evaluate`): "
        "their variance is not normalized again",
    )
    unbiased: bool = option(False, help="K-1 variance estimator as the authors' code (default: Definition 2's K)")
    confidence: float = option(0.95, help="level of the bootstrap confidence intervals")
    num_resamples: int = option(
        1000, help="bootstrap resamples over prompts: at least 200, and 10 / (1 - confidence) (5 beyond each end)"
    )
    seed: int = option(0, help="bootstrap seed")
    json: Path | None = option(None, help="also write the numbers to this JSON file")

    def __post_init__(self) -> None:
        check_options([(0.0 < self.confidence < 1.0, f"--confidence must be in (0, 1); got {self.confidence}")])
        check_options(
            [
                resamples_check("--num-resamples", self.num_resamples, self.confidence),
                seed_check("--seed", self.seed),
                _no_repeats("--reward-column", self.reward_column),
                _no_repeats("--prenormalized", self.prenormalized),
                output_file_check("--json", self.json),
                (
                    self.json is None or self.json.resolve() != self.rewards.resolve(),
                    f"--json {self.json} is the rewards table itself; give another file",
                ),
            ]
        )


def _no_repeats(flag: str, names: list[str]) -> tuple[bool, str]:
    repeated = sorted({n for n in names if names.count(n) > 1})
    return not repeated, f"{flag} names {', '.join(map(repr, repeated))} more than once; give each column once"


def _check_column(flag: str, name: str, choices: list[str], where: str) -> None:
    if name not in choices:
        raise ValueError(f"{flag} {name!r} is not a column of {where}; valid: {', '.join(map(repr, choices))}")


def reward_columns(
    frame: pd.DataFrame, truth: str | None, chosen: list[str], *, where: str = "table"
) -> tuple[list[str], list[str]]:
    """The reward-model columns to evaluate and the text-only columns skipped, as ``(columns, skipped)``.

    The chosen columns, or every column but the ids and the truth that holds at least one number: a reward column
    with a stray text cell is kept, so that :func:`rmteacher.tables.reward_matrix` names the cell rather than the
    column silently vanishing from the table; a column with no number at all (a prompt, a completion) is skipped.
    """
    from rmteacher.tables import PROMPT_ID, SAMPLE_ID, TableError

    if chosen:
        return chosen, []
    found: list[str] = []
    skipped: list[str] = []
    for column in (str(c) for c in frame.columns if c not in (PROMPT_ID, SAMPLE_ID, truth)):
        (found if _holds_a_number(frame[column]) else skipped).append(column)
    if not found:
        raise TableError(
            f"{where}: no reward-model columns: found {', '.join(map(repr, map(str, frame.columns)))}; need a "
            f"numeric column besides {PROMPT_ID}, {SAMPLE_ID} and the truth column"
        )
    return found, skipped


def _holds_a_number(values: pd.Series) -> bool:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values):
        return True
    try:
        return bool(pd.to_numeric(values, errors="coerce").notna().any())
    except (TypeError, ValueError):  # cells pandas cannot even try (lists, mappings): not a reward column
        return False


def check_reward_scale(name: str, rewards: np.ndarray, *, where: str) -> None:
    """Refuses rewards whose normalized variance the paper's normalization cannot give (Section 3).

    The normalization divides by ``sqrt(var + 1e-8)``, as the authors' code. Every metric here is otherwise
    invariant to the reward's scale, so rewards with a variance below :data:`MIN_VARIANCE` (e.g. rewards in units of
    1e-300) would report the epsilon's variance, not theirs; rewards whose variance overflows float64 (e.g. 1e300)
    would report nothing sound either. Both are refused, naming the column and a factor that fixes them. A constant
    reward passes: its normalized variance is 0 with or without the epsilon.

    Args:
        rewards: ``[num_prompts, num_samples]`` rewards of the column ``name``.
    """
    import numpy as np

    from rmteacher.tables import TableError

    if rewards.size < 2 or np.all(rewards == rewards.flat[0]):
        return  # fewer than 2 samples: the metrics refuse them themselves
    scale = float(np.max(np.abs(rewards)))
    std = float((rewards / scale).std(ddof=1)) * scale  # rewards / scale lie in [-1, 1]: no overflow or underflow
    exponent = math.floor(math.log10(std))
    with np.errstate(over="ignore", invalid="ignore"):
        variance = float(np.var(rewards, ddof=1))  # as fit_normalization computes it
    if not math.isfinite(variance):
        raise TableError(
            f"{where}: column {name!r} has rewards up to {scale:.3g}, whose variance overflows float64; divide the "
            f"column by a constant such as 1e{exponent} (the metrics do not depend on the reward's scale)"
        )
    if std * std < MIN_VARIANCE:
        raise TableError(
            f"{where}: column {name!r} has a reward std of {std:.3g}, too small for the paper's normalization: it "
            f"divides by sqrt(var + {NORMALIZATION_EPS:g}) (as the authors' code), so its epsilon, not the rewards, "
            f"would set the normalized variance. Multiply the column by a constant such as 1e{-exponent} (the "
            "metrics do not depend on the reward's scale otherwise); if its differences are rounding noise, the "
            "reward is constant and its reward variance is 0"
        )


def run_metrics(config: MetricsConfig) -> str:
    """Computes every reward model's summary, writes ``--json`` and returns the table to print.

    Raises:
        ValueError: unknown column names, a non-numeric reward, rewards the normalization cannot take (see
            :func:`check_reward_scale`), or a ``--json`` path that cannot be written. Warns (``UserWarning``) when
            fewer than 2 prompts make every interval zero-width.
    """
    from tabulate import tabulate

    from rmteacher.analysis import summarize_reward_model
    from rmteacher.tables import PROMPT_ID, SAMPLE_ID, read_table, reward_matrix, write_json_atomic

    frame = read_table(config.rewards)
    where = str(config.rewards)
    columns = [str(c) for c in frame.columns if c not in (PROMPT_ID, SAMPLE_ID)]
    if config.truth is not None:
        _check_column("--truth", config.truth, columns, where)
    for name in config.reward_column:
        _check_column("--reward-column", name, columns, where)
    names, skipped = reward_columns(frame, config.truth, config.reward_column, where=where)
    for name in config.prenormalized:
        if name not in names:
            raise ValueError(
                f"--prenormalized {name!r} is not one of the reward-model columns evaluated; valid: "
                f"{', '.join(map(repr, names))}"
            )
    truth = reward_matrix(frame, config.truth, where=where) if config.truth else None
    proxies = {name: reward_matrix(frame, name, where=where) for name in names}  # every cell checked before any work
    for name, proxy in proxies.items():
        if name not in config.prenormalized:  # their variance is reported as is: no normalization, no epsilon
            check_reward_scale(name, proxy.values, where=where)
    num_prompts = len(next(iter(proxies.values())).prompt_ids)
    notes = []
    if num_prompts < 2:
        notes.append(
            f"{where} has {num_prompts} prompt: every bootstrap interval over prompts has zero width and says nothing "
            "about uncertainty; use 2 or more prompts (the paper: 500)"
        )
    results: dict[str, Any] = {}
    rows = []
    for name, proxy in proxies.items():
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
        data = {"rewards": str(config.rewards), "truth": config.truth, "reward_models": results, "warnings": notes}
        try:
            write_json_atomic(config.json, data)
        except OSError as error:
            raise ValueError(f"--json {config.json}: cannot write it ({error.strerror or error})") from None
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    first = next(iter(results.values()))
    level = round(config.confidence * 100)
    header = (
        f"{first['num_prompts']} prompts x {first['num_samples']} samples; "
        f"variance: {'unbiased (K-1)' if config.unbiased else 'population (Definition 2)'}; "
        f"[{level}% bootstrap CI over prompts]"
    )
    if skipped:
        header += f"\nskipped columns without numbers: {', '.join(map(repr, skipped))}"
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
