"""Assembling a reward model's preference set from off-policy pairs and on-policy samples (pure, no models).

The paper trains five reward models on 100/75/50/25/0% on-policy preferences (spec §3, "Reward models (§4.1)").
The authors' mixing (spec §4): one permutation of the N preference rows with seed 182; the first ⌊F·N⌋ rows of the
permutation take the on-policy pair of their prompt (2 samples of the SFT policy, labelled by the ground truth), the
other rows keep their off-policy pair. Rows stay aligned, so each prompt appears once, and the on-policy prompts of
a smaller F are a subset of those of a larger F.

Ties (both samples with the same ground-truth reward) carry no preference. ``ties="drop"`` (the default) leaves
such a prompt out of the set; ``ties="keep"`` keeps the pair in sampling order, as the authors' relabeling keeps
tied pairs in their original order (spec §3, "Data", step 3). On a task with a discrete ground truth, ties are common
(two perfect answers), so keeping them would train the model to separate equally good answers at random.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from rmteacher.metrics import select_prompts

__all__ = [
    "MIX_SEED",
    "OFF_POLICY",
    "ON_POLICY",
    "PREFERENCE_COLUMNS",
    "label_pairs",
    "mix_preferences",
    "on_policy_rows",
]

MIX_SEED = 182  # the authors' permutation seed for mixing on- and off-policy rows
ON_POLICY, OFF_POLICY = "on_policy", "off_policy"
#: Columns of an assembled preference set, in order.
PREFERENCE_COLUMNS = ["prompt_id", "prompt", "chosen", "rejected", "score_chosen", "score_rejected", "source", "tie"]
Ties = Literal["drop", "keep"]


def on_policy_rows(num_rows: int, fraction: float, *, seed: int = MIX_SEED) -> np.ndarray:
    """Rows whose pair is replaced by an on-policy one: ``RandomState(seed).permutation(num_rows)[:⌊F·N⌋]``, sorted.

    Raises:
        ValueError: ``fraction`` outside [0, 1] or a negative ``num_rows``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"--on-policy-fraction must be in [0, 1]; got {fraction}")
    return select_prompts(num_rows, fraction, seed=seed)


def label_pairs(
    first: list[str], second: list[str], first_scores: np.ndarray, second_scores: np.ndarray
) -> pd.DataFrame:
    """Orders each pair of samples by ground truth: ``chosen`` has the higher score; a tie keeps sample order.

    Args:
        first, second: ``[num_pairs]`` the two samples of each prompt.
        first_scores, second_scores: ``[num_pairs]`` their ground-truth rewards.

    Returns:
        ``[num_pairs]`` rows of ``chosen, rejected, score_chosen, score_rejected, tie``.
    """
    a, b = np.asarray(first_scores, dtype=np.float64), np.asarray(second_scores, dtype=np.float64)
    if not len(first) == len(second) == a.shape[0] == b.shape[0]:
        raise ValueError(f"pairs need equal lengths; got {len(first)}, {len(second)}, {a.shape[0]}, {b.shape[0]}")
    swap = b > a  # [num_pairs]
    return pd.DataFrame(
        {
            "chosen": np.where(swap, np.asarray(second, dtype=object), np.asarray(first, dtype=object)),
            "rejected": np.where(swap, np.asarray(first, dtype=object), np.asarray(second, dtype=object)),
            "score_chosen": np.where(swap, b, a),
            "score_rejected": np.where(swap, a, b),
            "tie": a == b,
        }
    )


def mix_preferences(
    off_policy: pd.DataFrame, rows: np.ndarray, on_policy: pd.DataFrame, *, ties: Ties = "drop"
) -> pd.DataFrame:
    """Replaces the pairs of ``off_policy``'s rows ``rows`` by their labelled on-policy pairs.

    Rows, not prompt ids, are replaced, as the authors align the two datasets row by row.

    Args:
        off_policy: ``[N]`` rows of ``prompt_id, prompt, chosen, rejected`` (``score_chosen``/``score_rejected``
            kept when present, else NaN).
        rows: ``[M]`` distinct row positions in ``off_policy`` (:func:`on_policy_rows`).
        on_policy: ``[M]`` :func:`label_pairs` rows for the prompts of ``rows``, in the same order.
        ties: ``"drop"`` leaves tied on-policy pairs out, ``"keep"`` keeps them (``tie`` marks them).

    Returns:
        The preference set in ``off_policy``'s row order, columns :data:`PREFERENCE_COLUMNS`; ``source`` says
        ``on_policy`` or ``off_policy``.
    """
    if ties not in ("drop", "keep"):
        raise ValueError(f"--ties must be drop or keep; got {ties!r}")
    positions = np.asarray(rows, dtype=np.int64)
    if positions.shape != (len(on_policy),):
        raise ValueError(f"rows has shape {positions.shape} but on_policy has {len(on_policy)} rows; they must match")
    if positions.size and (positions.min() < 0 or positions.max() >= len(off_policy)):
        raise ValueError(f"rows must lie in [0, {len(off_policy)}); got {positions.min()}..{positions.max()}")
    mixed = off_policy.reindex(columns=PREFERENCE_COLUMNS[:6]).reset_index(drop=True)
    mixed["source"] = OFF_POLICY
    mixed["tie"] = False
    for column in ("chosen", "rejected", "score_chosen", "score_rejected", "tie"):
        mixed.loc[positions, column] = on_policy[column].to_numpy()
    mixed.loc[positions, "source"] = ON_POLICY
    mixed["tie"] = mixed["tie"].astype(bool)
    if ties == "drop":
        mixed = mixed[~mixed["tie"]]
    return mixed.reset_index(drop=True)
