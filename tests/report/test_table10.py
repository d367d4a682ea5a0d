"""The Table 10 analogue's analysis (`rmteacher study --design policies`): per-policy summaries by hand, and the
paper's own Table 10 summarized the same way."""

import pandas as pd
import pytest

from rmteacher.report.table10 import PAPER_TABLE10, paper_table, summarize_policy


def _table(increases: list[float], stds: list[float], seeds: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "reward_model": ["a", "b", "c", "d"],
            "reward_variance": [0.1, 0.4, 0.3, 0.2],
            "on_policy_accuracy": [1.0, 0.6, 0.7, 0.8],
            "off_policy_accuracy": [0.9, 0.5, 0.6, 0.7],
            "increase_ground_truth": increases,
            "increase_ground_truth_std": stds,
            "increase_proxy": [0.0, 0.3, 0.2, 0.1],
            "seeds": seeds,
        }
    )


def test_summarize_policy_by_hand() -> None:
    summary = summarize_policy(_table([0.05, 0.30, 0.20, 0.10], [0.01] * 4, seeds=3))
    assert (summary["best_ground_truth"], summary["best_proxy"]) == ("b", "b")
    assert (summary["highest_variance"], summary["most_accurate"]) == ("b", "a")
    assert summary["clear_best_ground_truth"] is True  # 0.30 - 0.20 > 0.01 + 0.01
    correlations = summary["correlations"]
    assert correlations["reward_variance"]["increase_ground_truth"]["spearman"] == pytest.approx(1.0)
    assert correlations["on_policy_accuracy"]["increase_proxy"]["spearman"] == pytest.approx(-1.0)
    assert correlations["reward_variance"]["increase_proxy"]["n"] == 4
    noisy = summarize_policy(_table([0.05, 0.30, 0.20, 0.10], [0.1] * 4, seeds=3))
    assert noisy["clear_best_ground_truth"] is False
    assert summarize_policy(_table([0.05, 0.30, 0.20, 0.10], [0.0] * 4, seeds=1))["clear_best_ground_truth"] is None


def test_the_papers_table10_summaries() -> None:
    """From the paper's Table 10: RM-Gemma-2B has the highest variance under every policy and the largest proxy
    increase, yet the best ground-truth teacher differs by policy and is never it (paper, Section 4.2.2)."""
    table = paper_table()
    assert len(table) == 12
    summaries = {p: summarize_policy(table[table["policy"] == p]) for p in PAPER_TABLE10}
    assert {s["highest_variance"] for s in summaries.values()} == {"RM-Gemma-2B"}
    assert {s["best_proxy"] for s in summaries.values()} == {"RM-Gemma-2B"}
    assert [s["best_ground_truth"] for s in summaries.values()] == ["GRM-Gemma-2-2B", "RM-Tulu-V2-8B",
                                                                     "GRM-Llama-3.2-3B"]  # fmt: skip
    assert all(s["clear_best_ground_truth"] is None for s in summaries.values())
