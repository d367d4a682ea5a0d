"""`rmteacher correlate TABLE`: the paper's Table 2 on a table of reward models.

Run: ``rmteacher correlate examples/table10_pythia1b.csv --increase increase_ground_truth --increase increase_proxy``
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from rmteacher.analysis import CORRELATION_ROWS, correlation_table
from rmteacher.options import option
from rmteacher.tables import TableError, read_table, require_columns, write_json_atomic

PROPERTY_COLUMNS = ["reward_variance", "on_policy_accuracy", "off_policy_accuracy"]


@dataclass
class CorrelateConfig:
    """Options of `rmteacher correlate`."""

    table: Path = option(
        help="CSV, JSONL or Parquet table with one row per reward model: reward_variance, on_policy_accuracy, "
        "off_policy_accuracy and the increase columns",
        positional=True,
    )
    increase: list[str] = option(
        default_factory=list,
        help="reward-increase column to correlate with (default: every column named increase*)",
    )
    json: Path | None = option(None, help="also write {row: {increase: {pearson, spearman, n, ...}}} to this file")


def run_correlate(config: CorrelateConfig) -> str:
    """Computes the correlation table, writes ``--json`` and returns the table to print."""
    frame = read_table(config.table)
    where = str(config.table)
    increases = config.increase or [str(c) for c in frame.columns if str(c).startswith("increase")]
    if not increases:
        raise TableError(
            f"{where}: no increase columns; pass --increase COLUMN (found {', '.join(map(repr, frame.columns))})"
        )
    require_columns(frame, PROPERTY_COLUMNS + increases, where=where)
    try:
        table = correlation_table(
            frame["reward_variance"].to_numpy(dtype=float),
            frame["on_policy_accuracy"].to_numpy(dtype=float),
            frame["off_policy_accuracy"].to_numpy(dtype=float),
            {name: frame[name].to_numpy(dtype=float) for name in increases},
        )
    except ValueError as error:
        raise TableError(f"{where}: {error}") from None
    if config.json is not None:
        write_json_atomic(
            config.json, {row: {inc: c.to_dict() for inc, c in cells.items()} for row, cells in table.items()}
        )
    headers = ["property"] + [f"{inc} {kind}" for inc in increases for kind in ("Pearson", "Spearman")]
    rows = [
        [row] + [f"{getattr(table[row][inc], kind):.3f}" for inc in increases for kind in ("pearson", "spearman")]
        for row in CORRELATION_ROWS
    ]
    n = next(iter(table["reward_variance"].values())).n
    return f"correlations over n = {n} reward models\n\n" + tabulate(rows, headers=headers, tablefmt="github")
