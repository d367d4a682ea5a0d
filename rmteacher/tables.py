"""Reading users' reward tables and writing results atomically.

A reward table has one row per sample: ``prompt_id``, ``sample_id`` and one column per reward model (and
optionally a ground-truth column). It may be CSV, JSONL, Parquet or a saved ``datasets`` directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "LOW_VARIANCE",
    "PROMPT_ID",
    "SAMPLE_ID",
    "TRUTH",
    "RewardMatrix",
    "TableError",
    "read_table",
    "require_columns",
    "reward_matrix",
    "write_json_atomic",
    "write_parquet_atomic",
    "write_png_atomic",
    "write_text_atomic",
]

PROMPT_ID = "prompt_id"
SAMPLE_ID = "sample_id"
#: The ground truth's column and name in every table, run and report.
TRUTH = "ground_truth"
#: The paper's perfectly accurate, low-variance reward model: the ground truth normalized, then scaled.
LOW_VARIANCE = "ground_truth_scaled"


class TableError(ValueError):
    """A table that cannot be used as given."""


def read_table(path: Path | str) -> pd.DataFrame:
    """Reads a CSV, JSONL/JSON-lines, Parquet file or a ``datasets.save_to_disk`` directory into a DataFrame.

    Raises:
        TableError: for a missing path, an unknown suffix, an unreadable or empty table (with the JSONL line number
            of the first malformed line).
    """
    path = Path(path)
    if not path.exists():
        raise TableError(f"{path}: no such file or directory")
    if path.is_dir():
        if not (path / "dataset_info.json").exists() and not (path / "dataset_dict.json").exists():
            raise TableError(f"{path}: a directory must be a saved `datasets` dataset (dataset_info.json not found)")
        import datasets  # heavy; only for this input kind

        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            raise TableError(f"{path}: holds splits {list(loaded)}; point at one split's directory")
        frame = loaded.to_pandas()
        assert isinstance(frame, pd.DataFrame)
    else:
        suffix = path.suffix.lower()
        try:
            if suffix == ".csv":
                frame = pd.read_csv(path)
            elif suffix in (".jsonl", ".json"):
                frame = _read_jsonl(path)
            elif suffix in (".parquet", ".pq"):
                frame = pd.read_parquet(path)
            else:
                raise TableError(
                    f"{path}: unknown table format {suffix!r}; use .csv, .jsonl, .parquet or a datasets dir"
                )
        except pd.errors.EmptyDataError:
            raise TableError(f"{path}: the file is empty") from None
        except (pd.errors.ParserError, OSError, ValueError) as error:
            if isinstance(error, TableError):
                raise
            raise TableError(f"{path}: cannot read it as {suffix} ({error})") from None
    if len(frame) == 0:
        raise TableError(f"{path}: the table has no rows")
    return frame


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise TableError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise TableError(f"{path}:{number}: each line must be a JSON object, got {type(row).__name__}")
            rows.append(row)
    return pd.DataFrame(rows)


def require_columns(frame: pd.DataFrame, columns: list[str], *, where: str) -> None:
    """Raises a :class:`TableError` naming the missing columns and the columns found."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TableError(
            f"{where}: missing column(s) {', '.join(map(repr, missing))}; found {', '.join(map(repr, frame.columns))}"
        )


@dataclass(frozen=True)
class RewardMatrix:
    """Rewards of one column laid out as ``values: [num_prompts, num_samples]``, rows in ``prompt_ids`` order."""

    prompt_ids: np.ndarray
    sample_ids: np.ndarray  # [num_prompts, num_samples]
    values: np.ndarray  # [num_prompts, num_samples]


def reward_matrix(frame: pd.DataFrame, column: str, *, where: str = "table") -> RewardMatrix:
    """Pivots one reward column of a one-row-per-sample table into a ``[num_prompts, num_samples]`` matrix.

    Prompts keep their order of first appearance; samples are ordered by ``sample_id`` within a prompt so that
    every column of the same table lines up sample for sample.

    Raises:
        TableError: a missing column, a duplicate ``(prompt_id, sample_id)``, prompts with different numbers of
            samples (ragged groups), or a non-numeric/NaN/infinite reward (naming prompt and sample).
    """
    require_columns(frame, [PROMPT_ID, SAMPLE_ID, column], where=where)
    duplicated = frame.duplicated([PROMPT_ID, SAMPLE_ID], keep=False).to_numpy()
    if duplicated.any():
        raise TableError(
            f"{where}: duplicate rows for {_sample_name(frame, int(np.argmax(duplicated)))}; "
            "each (prompt_id, sample_id) must appear once"
        )
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
    if bad.any():
        first = int(np.argmax(bad))
        raise TableError(
            f"{where}: column {column!r} has a non-finite or non-numeric value {_plain(frame[column].iloc[first])!r} "
            f"at {_sample_name(frame, first)}"
        )
    counts = frame.groupby(PROMPT_ID, sort=False).size()
    if counts.nunique() != 1:
        small, large = (_plain(counts.index[i]) for i in (int(np.argmin(counts)), int(np.argmax(counts))))
        raise TableError(
            f"{where}: prompts have different numbers of samples (ragged groups): prompt_id={small!r} has "
            f"{counts.min()}, prompt_id={large!r} has {counts.max()}; every prompt needs the same number"
        )
    ordered = frame.assign(_value=values.to_numpy(dtype=np.float64))
    ordered = ordered.assign(_order=pd.Categorical(ordered[PROMPT_ID], categories=counts.index, ordered=True))
    ordered = ordered.sort_values(["_order", SAMPLE_ID], kind="stable")
    num_prompts, num_samples = len(counts), int(counts.iloc[0])
    return RewardMatrix(
        prompt_ids=counts.index.to_numpy(),
        sample_ids=ordered[SAMPLE_ID].to_numpy().reshape(num_prompts, num_samples),
        values=ordered["_value"].to_numpy().reshape(num_prompts, num_samples),
    )


def _plain(value: Any) -> Any:
    """Numpy scalars as Python ones, so messages read ``0``, not ``np.int64(0)``."""
    return value.item() if isinstance(value, np.generic) else value


def _sample_name(frame: pd.DataFrame, position: int) -> str:
    prompt, sample = _plain(frame[PROMPT_ID].iloc[position]), _plain(frame[SAMPLE_ID].iloc[position])
    return f"prompt_id={prompt!r}, sample_id={sample!r}"


@contextlib.contextmanager
def _atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block succeeds, removed when it fails.

    The file gets the mode any new file would get under the user's umask (``mkstemp`` would make it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomic(path: Path | str, text: str) -> None:
    """Writes ``text`` to a temporary file beside ``path`` and renames it, so readers never see half a file."""
    with _atomic_path(path) as temporary:
        temporary.write_text(text)


def write_parquet_atomic(frame: pd.DataFrame, path: Path | str) -> None:
    """Writes ``frame`` (without its index) as Parquet, atomically."""
    with _atomic_path(path) as temporary:
        frame.to_parquet(temporary, index=False)


def write_png_atomic(figure: Any, path: Path | str, *, dpi: int = 110) -> None:
    """Saves a matplotlib ``figure`` as PNG, atomically, and closes it."""
    import matplotlib.pyplot as plt

    try:
        with _atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)


def write_json_atomic(path: Path | str, data: Any) -> None:
    """Writes ``data`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
