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
    "check_prompt",
    "load_pairs",
    "load_prompts",
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


#: Roles of TRL's conversational format.
ROLES = ("system", "user", "assistant", "tool")


def check_prompt(value: Any, *, where: str) -> str | list[dict[str, str]]:
    """A prompt as TRL takes it: a non-empty string, or a conversation (list of ``{"role", "content"}`` messages
    ending with a user turn). Parquet gives conversations back as arrays of dicts; they become lists. Nothing is
    turned into its ``str()``.

    Raises:
        TableError: anything else, naming ``where`` and what was found.
    """
    if isinstance(value, str):
        if not value.strip():
            raise TableError(f"{where}: the prompt is empty")
        return value
    if isinstance(value, np.ndarray | list | tuple):
        messages = []
        for message in list(value):
            if not isinstance(message, dict) or set(message) < {"role", "content"}:
                raise TableError(
                    f"{where}: a conversational prompt must be a list of {{'role', 'content'}} messages; got "
                    f"{_plain(message)!r}"
                )
            role, content = message["role"], message["content"]
            if role not in ROLES or not isinstance(content, str):
                raise TableError(f"{where}: message {{'role': {role!r}, ...}} needs a role in {ROLES} and text content")
            messages.append({"role": role, "content": content})
        if not messages or messages[-1]["role"] != "user":
            raise TableError(f"{where}: a conversational prompt must end with a user message")
        return messages
    raise TableError(
        f"{where}: a prompt must be a string or a list of {{'role', 'content'}} messages; got {type(value).__name__} "
        f"{_plain(value)!r}"
    )


def load_prompts(path: Path | str, column: str = "prompt", *, argument: str = "--prompts") -> pd.DataFrame:
    """Reads a prompts table in TRL's formats: ``prompt_id`` (the row number when absent), ``prompt`` (from
    ``column``: plain strings or conversations) and every other column as it is (e.g. ``answer``), which reaches
    reward functions as keyword arguments, as TRL passes dataset columns.

    Raises:
        TableError: a missing column, a duplicate ``prompt_id``, an empty or malformed prompt (naming the row).
    """
    frame = read_table(path)
    require_columns(frame, [column], where=f"{argument} {path}")
    if PROMPT_ID not in frame.columns:
        frame = frame.assign(**{PROMPT_ID: np.arange(len(frame))})
    if frame[PROMPT_ID].duplicated().any():
        duplicate = frame.loc[frame[PROMPT_ID].duplicated(), PROMPT_ID].iloc[0]
        raise TableError(f"{argument} {path}: prompt_id {_plain(duplicate)!r} appears more than once")
    prompts = [
        check_prompt(value, where=f"{argument} {path}: row {row + 1}, column {column!r}")
        for row, value in enumerate(frame[column].tolist())
    ]
    extra = frame.drop(columns=[c for c in (column, "prompt") if c in frame.columns]).reset_index(drop=True)
    out = extra.assign(prompt=pd.Series(prompts, dtype=object))
    return out[[PROMPT_ID, "prompt", *[c for c in extra.columns if c != PROMPT_ID]]]


def load_pairs(path: Path | str, prompts: pd.DataFrame | None = None, *, argument: str = "--pairs") -> pd.DataFrame:
    """Reads preference pairs: ``chosen``, ``rejected`` and the prompt, either as a ``prompt`` column or through a
    ``prompt_id`` into ``prompts``. Every pair is kept: several pairs of one prompt are all used.

    Returns ``prompt_id``, ``prompt``, ``chosen``, ``rejected`` (and ``score_chosen``/``score_rejected`` when given).

    Raises:
        TableError: a missing column, a pair whose ``prompt_id`` is not among ``prompts``, an empty response.
    """
    frame = read_table(path)
    where = f"{argument} {path}"
    require_columns(frame, ["chosen", "rejected"], where=where)
    if prompts is not None and PROMPT_ID in frame.columns:
        unknown = ~frame[PROMPT_ID].isin(prompts[PROMPT_ID])
        if unknown.any():
            raise TableError(
                f"{where}: {int(unknown.sum())} pair(s) refer to prompt_ids not in the prompts, e.g. "
                f"{_plain(frame.loc[unknown, PROMPT_ID].iloc[0])!r}"
            )
        frame = frame.drop(columns=["prompt"], errors="ignore").merge(
            prompts[[PROMPT_ID, "prompt"]], on=PROMPT_ID, how="left"
        )
    else:
        require_columns(frame, ["prompt"], where=where)
        if PROMPT_ID not in frame.columns:
            frame = frame.assign(**{PROMPT_ID: np.arange(len(frame))})
        frame["prompt"] = pd.Series(
            [check_prompt(v, where=f"{where}: row {i + 1}") for i, v in enumerate(frame["prompt"].tolist())],
            index=frame.index,
            dtype=object,
        )
    for side in ("chosen", "rejected"):
        bad = frame[side].isna().to_numpy()
        if bad.any():
            raise TableError(f"{where}: row {int(np.argmax(bad)) + 1} has no {side!r}")
        if not all(isinstance(v, str) for v in frame[side]):
            raise TableError(f"{where}: column {side!r} must hold response texts (strings)")
    columns = [PROMPT_ID, "prompt", "chosen", "rejected"]
    columns += [c for c in ("score_chosen", "score_rejected") if c in frame.columns]
    return frame[columns].reset_index(drop=True)
