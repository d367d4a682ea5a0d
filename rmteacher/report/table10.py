"""The Table 10 analogue of `rmteacher study --design policies`, analysed: pure functions over tables, no files.

:func:`summarize_policy` says, within one initial policy, which reward model taught best and how the reward
increases follow reward variance and accuracy (the paper's Section 4.2, Theorem 3: the same reward model can be a
good teacher for one policy and a poor one for another); :func:`findings` turns the summaries into sentences;
:data:`PAPER_TABLE10` holds the paper's numbers, summarized the same way for comparison. Used by
:mod:`rmteacher.report.policies` (``rmteacher report RUN_DIR``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from rmteacher.analysis import correlation_table
from rmteacher.report.render import format_number

__all__ = ["PAPER_TABLE10", "findings", "paper_table", "spearman_text", "summarize_policy"]

#: The paper's camera-ready Table 10 (Section 4.2; Appendix, Table 10): per policy and reward model
#: (reward variance, on-policy accuracy, ground-truth increase, proxy increase), after 2 epochs of RLOO.
PAPER_TABLE10: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "Pythia-1B SFT": {
        "GRM-Gemma-2-2B": (0.405, 0.700, 0.176, 0.322),
        "GRM-Llama-3.2-3B": (0.528, 0.700, 0.148, 0.272),
        "RM-Tulu-V2-8B": (0.544, 0.705, 0.173, 0.457),
        "RM-Gemma-2B": (0.549, 0.639, 0.108, 0.474),
    },
    "Llama-3.2-1B SFT": {
        "GRM-Gemma-2-2B": (0.500, 0.716, 0.280, 0.487),
        "GRM-Llama-3.2-3B": (0.562, 0.737, 0.278, 0.484),
        "RM-Tulu-V2-8B": (0.600, 0.737, 0.320, 0.743),
        "RM-Gemma-2B": (0.644, 0.676, 0.274, 0.898),
    },
    "Llama-3.2-1B-Instruct": {
        "GRM-Gemma-2-2B": (0.261, 0.731, 0.105, 0.194),
        "GRM-Llama-3.2-3B": (0.323, 0.758, 0.124, 0.232),
        "RM-Tulu-V2-8B": (0.299, 0.751, 0.097, 0.213),
        "RM-Gemma-2B": (0.336, 0.647, 0.101, 0.339),
    },
}


def summarize_policy(table: pd.DataFrame) -> dict[str, Any]:
    """Which reward model was best for one policy, and how the increases follow variance and accuracy.

    Args:
        table: one row per reward model with ``reward_model``, ``reward_variance``, ``on_policy_accuracy``,
            ``increase_ground_truth``, ``increase_proxy`` (and ``off_policy_accuracy``; NaN where unknown).

    Returns:
        ``best_ground_truth``, ``best_proxy``, ``highest_variance``, ``most_accurate`` (names; ties go to the first
        row); ``clear_best_ground_truth``: whether the best ground-truth increase beats the runner-up's by more than
        the sum of their stds over seeds (None without ``increase_ground_truth_std`` or with fewer than 2 seeds);
        and ``correlations``: the paper's Table 2 rows within this policy, ``{row: {increase: Correlation}}`` as
        dicts (n = the number of reward models).
    """
    by_name = table.set_index("reward_model")
    off = by_name["off_policy_accuracy"] if "off_policy_accuracy" in by_name else pd.Series(np.nan, by_name.index)
    correlations = correlation_table(
        by_name["reward_variance"].to_numpy(dtype=float),
        by_name["on_policy_accuracy"].to_numpy(dtype=float),
        np.nan_to_num(off.to_numpy(dtype=float)),  # no pairs: the off-policy rows are uninformative zeros
        {
            "increase_proxy": by_name["increase_proxy"].to_numpy(dtype=float),
            "increase_ground_truth": by_name["increase_ground_truth"].to_numpy(dtype=float),
        },
    )
    ranked = by_name.sort_values("increase_ground_truth", ascending=False)
    clear = None
    if {"increase_ground_truth_std", "seeds"} <= set(ranked.columns) and ranked["seeds"].min() >= 2:
        first, second = ranked.iloc[0], ranked.iloc[1]
        clear = bool(
            first["increase_ground_truth"] - second["increase_ground_truth"]
            > first["increase_ground_truth_std"] + second["increase_ground_truth_std"]
        )
    return {
        "clear_best_ground_truth": clear,
        "best_ground_truth": str(by_name["increase_ground_truth"].idxmax()),
        "best_proxy": str(by_name["increase_proxy"].idxmax()),
        "highest_variance": str(by_name["reward_variance"].idxmax()),
        "most_accurate": str(by_name["on_policy_accuracy"].idxmax()),
        "correlations": {row: {k: c.to_dict() for k, c in cells.items()} for row, cells in correlations.items()},
    }


def paper_table() -> pd.DataFrame:
    """:data:`PAPER_TABLE10` as rows of ``policy, reward_model, reward_variance, on_policy_accuracy, increase_*``."""
    return pd.DataFrame(
        [
            {
                "policy": policy,
                "reward_model": rm,
                "reward_variance": var,
                "on_policy_accuracy": acc,
                "increase_ground_truth": gt,
                "increase_proxy": proxy,
            }
            for policy, block in PAPER_TABLE10.items()
            for rm, (var, acc, gt, proxy) in block.items()
        ]
    )


def spearman_text(summary: dict[str, Any], row: str, increase: str) -> str:
    return format_number(summary["correlations"][row][increase]["spearman"])


def findings(table: pd.DataFrame, summaries: dict[str, dict[str, Any]], paper: dict[str, dict[str, Any]]) -> list[str]:
    """Sentences quoting the measured numbers, whichever way they came out, and the paper's for comparison.

    Whether the best reward model differs between policies is not judged here but by its test over seeds
    (:func:`rmteacher.significance.finding_policy_dependent_best`), whose sentence the report adds.
    """
    lines = []
    for policy, summary in summaries.items():
        rows = table[table["policy"] == policy].set_index("reward_model")
        best, top = summary["best_ground_truth"], summary["highest_variance"]
        ranked = rows.sort_values("reward_variance", ascending=False)
        order = ", ".join(
            f"{rm} (Var {r.reward_variance:.3f}, acc {r.on_policy_accuracy:.3f}, GT {r.increase_ground_truth:+.3f} ± "
            f"{r.increase_ground_truth_std:.3f}, proxy {r.increase_proxy:+.3f})"
            for rm, r in ranked.iterrows()
        )
        verdict = (
            "the highest-variance reward model was also the best teacher for the ground truth"
            if best == top
            else f"the best teacher for the ground truth was {best}, not the highest-variance {top}"
        ) + {
            True: " (ahead of the runner-up by more than their seed stds)",
            False: " (but within the seed-to-seed spread of the runner-up)",
            None: "",
        }[summary["clear_best_ground_truth"]]
        proxy_verdict = (
            f"and {top} raised its own reward the most"
            if summary["best_proxy"] == top
            else f"and the largest proxy increase came from {summary['best_proxy']}"
        )
        spearman = {
            (row, increase): spearman_text(summary, row, increase)
            for row in ("reward_variance", "on_policy_accuracy")
            for increase in ("increase_ground_truth", "increase_proxy")
        }
        lines.append(
            f"Policy {policy}, reward models by variance: {order}. Here {verdict}, {proxy_verdict}. Within this "
            f"policy, Spearman of variance with the ground-truth increase "
            f"{spearman['reward_variance', 'increase_ground_truth']} and with the proxy increase "
            f"{spearman['reward_variance', 'increase_proxy']}; of on-policy accuracy with the ground-truth increase "
            f"{spearman['on_policy_accuracy', 'increase_ground_truth']}."
        )
    follows = [p for p, s in summaries.items() if s["best_ground_truth"] == s["highest_variance"]]
    proxy_follows = [p for p, s in summaries.items() if s["best_proxy"] == s["highest_variance"]]
    lines.append(
        f"The highest-variance reward model gave the largest ground-truth increase for {len(follows)} of "
        f"{len(summaries)} policies and the largest proxy increase for {len(proxy_follows)} of {len(summaries)}. "
        "In the paper's Table 10 (computed here from its numbers) the highest-variance reward model gave the largest "
        f"proxy increase for {sum(s['best_proxy'] == s['highest_variance'] for s in paper.values())} of {len(paper)} "
        f"policies and the largest ground-truth increase for "
        f"{sum(s['best_ground_truth'] == s['highest_variance'] for s in paper.values())} of {len(paper)}: it was the "
        "least accurate (RM-Gemma-2B), so its variance raised the proxy, not the ground truth."
    )
    return lines
