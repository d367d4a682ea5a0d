"""`rmteacher correlate TABLE`: the paper's Table 2 on a table of reward models.

Run: ``rmteacher correlate examples/table10_pythia1b.csv --increase increase_ground_truth --increase increase_proxy``

pandas, scipy and the analysis are imported inside :func:`run_correlate`, so that the CLI can build this command's
options (and ``rmteacher --help``) without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rmteacher.options import check_options, option, output_file_check

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PROPERTY_COLUMNS = ["reward_variance", "on_policy_accuracy", "off_policy_accuracy"]
#: The column naming each row's reward model, when the table has one (as the examples and a study's
#: ``table2_input.csv``): messages name a row by it.
NAME_COLUMN = "reward_model"


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

    def __post_init__(self) -> None:
        repeated = sorted({n for n in self.increase if self.increase.count(n) > 1})
        check_options(
            [
                (not repeated, f"--increase names {', '.join(map(repr, repeated))} more than once; give each once"),
                output_file_check("--json", self.json),
                (
                    self.json is None or self.json.resolve() != self.table.resolve(),
                    f"--json {self.json} is the input table itself; give another file",
                ),
            ]
        )


def numeric_column(frame: pd.DataFrame, column: str, *, where: str) -> np.ndarray:
    """One column as ``[num_rows]`` float64, or a :class:`~rmteacher.tables.TableError` naming the column and the
    first row (1-based, and its ``reward_model`` when the table has one) whose cell is not a finite number."""
    import numpy as np
    import pandas as pd

    from rmteacher.tables import TableError

    try:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    except (TypeError, ValueError):  # cells pandas cannot even try (lists, mappings)
        values = np.full(len(frame), np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        cell, label = (_plain(frame[c].iloc[row]) if c in frame.columns else None for c in (column, NAME_COLUMN))
        name = f" ({NAME_COLUMN}={label!r})" if NAME_COLUMN in frame.columns else ""
        raise TableError(
            f"{where}: column {column!r} has a non-numeric or non-finite value {cell!r} at row {row + 1}{name}; "
            "every cell of a property or increase column must be a finite number"
        )
    return values


def _plain(value: object) -> object:
    """Numpy scalars as Python ones, so messages read ``nan``, not ``np.float64(nan)``."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, str | bytes) else value


def run_correlate(config: CorrelateConfig) -> str:
    """Computes the correlation table, writes ``--json`` and returns the table to print.

    Raises:
        ValueError: an unknown ``--increase`` column, a missing property column, a cell that is not a finite number
            (naming its column and row), fewer than 3 reward models, or a ``--json`` path that cannot be written.
    """
    from tabulate import tabulate

    from rmteacher.analysis import CORRELATION_ROWS, correlation_table
    from rmteacher.tables import TableError, read_table, require_columns, write_json_atomic

    frame = read_table(config.table)
    where = str(config.table)
    columns = [str(c) for c in frame.columns]
    for name in config.increase:
        if name not in columns:
            raise TableError(f"--increase {name!r} is not a column of {where}; valid: {', '.join(map(repr, columns))}")
    increases = config.increase or [c for c in columns if c.startswith("increase")]
    if not increases:
        raise TableError(
            f"{where}: no increase columns; pass --increase COLUMN (found {', '.join(map(repr, columns))})"
        )
    require_columns(frame, PROPERTY_COLUMNS, where=where)
    properties = {name: numeric_column(frame, name, where=where) for name in PROPERTY_COLUMNS}
    increase_values = {name: numeric_column(frame, name, where=where) for name in increases}
    try:
        table = correlation_table(
            properties["reward_variance"],
            properties["on_policy_accuracy"],
            properties["off_policy_accuracy"],
            increase_values,
        )
    except ValueError as error:
        raise TableError(f"{where}: {error}") from None
    if config.json is not None:
        data = {row: {inc: c.to_dict() for inc, c in cells.items()} for row, cells in table.items()}
        try:
            write_json_atomic(config.json, data)
        except OSError as error:
            raise ValueError(f"--json {config.json}: cannot write it ({error.strerror or error})") from None
    headers = ["property"] + [f"{inc} {kind}" for inc in increases for kind in ("Pearson", "Spearman")]
    rows = [
        [row] + [f"{getattr(table[row][inc], kind):.3f}" for inc in increases for kind in ("pearson", "spearman")]
        for row in CORRELATION_ROWS
    ]
    n = next(iter(table["reward_variance"].values())).n
    return f"correlations over n = {n} reward models\n\n" + tabulate(rows, headers=headers, tablefmt="github")
