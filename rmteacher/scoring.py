"""Scoring rows of (prompt, completion, extra columns) with one reward, sharded across processes.

Used by evaluation, reward-model training (labelling on-policy pairs) and RL's periodic evaluation alike, so every
reward sees the same inputs everywhere: the prompt as the dataset gives it (a string or a conversation), the
completion text, and the prompts table's other columns as keyword arguments, one value per row (TRL's form).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rmteacher.rewards import Reward, RewardError

__all__ = ["extra_columns", "score_rows"]

#: Columns of a samples/prompts table that are rmteacher's own, not the user's reward kwargs.
OWN_COLUMNS = ("prompt_id", "sample_id", "prompt", "completion", "num_tokens", "finished")


def extra_columns(table: pd.DataFrame, *, exclude: Sequence[str] = ()) -> dict[str, list[Any]]:
    """The user's columns of ``table`` (e.g. ``answer``) as TRL's reward kwargs: ``{column: one value per row}``."""
    skip = set(OWN_COLUMNS) | set(exclude)
    return {c: table[c].tolist() for c in table.columns if c not in skip}


def score_rows(
    reward: Reward,
    prompts: Sequence[Any],
    completions: Sequence[str],
    ids: pd.DataFrame,
    state: Any = None,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> np.ndarray:
    """Scores ``[len(prompts)]`` rows with ``reward``, sharded across the processes of ``state`` (an accelerate
    ``PartialState``; None: one process). ``extra``: per-row keyword arguments. Non-finite scores are an error
    naming the reward and the row (``ids``: the columns that identify a row, e.g. prompt_id and sample_id)."""
    rank, world = (0, 1) if state is None else (state.process_index, state.num_processes)
    shard = np.array_split(np.arange(len(prompts)), world)[rank]
    kwargs = {k: [v[i] for i in shard] for k, v in (extra or {}).items()}
    values = reward.score([prompts[i] for i in shard], [completions[i] for i in shard], **kwargs)
    pieces = [(int(i), float(v)) for i, v in zip(shard, values, strict=True)]
    if world > 1:
        from accelerate.utils import gather_object

        pieces = list(gather_object(pieces))
    scores = np.empty(len(prompts))
    for i, v in pieces:
        scores[i] = v
    bad = ~np.isfinite(scores)
    if bad.any():
        first = int(np.argmax(bad))
        where = ", ".join(f"{k}={_plain(ids[k].iloc[first])!r}" for k in ids.columns)
        raise RewardError(f"reward {reward.name!r} returned {scores[first]} for {where}; rewards must be finite")
    return scores


def _plain(value: Any) -> Any:
    """Numpy scalars as Python ones, so messages read ``3``, not ``np.int64(3)``."""
    return value.item() if isinstance(value, np.generic) else value
