"""`rmteacher select-prompts`: the command line of :mod:`rmteacher.prompt_selection` (the summary on stderr).

Run: ``rmteacher select-prompts runs/eval --reward exact --out selected.jsonl`` (from an `rmteacher evaluate` run), or
``rmteacher select-prompts --policy ./sft --reward exact=pkg.mod:fn --prompts prompts.jsonl --out selected.jsonl``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rmteacher.prompt_selection import SelectPromptsConfig, select_prompts, summary_path

__all__ = ["SelectPromptsConfig", "run_select_prompts", "summary_lines"]


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as a few lines for a person."""
    k, total = summary["samples_per_prompt"], summary["num_prompts"]
    lines = [
        f"select-prompts: reward {summary['reward']!r}, K = {k} samples per prompt, {total} prompts; "
        f"{summary['rule']['description']}",
        f"kept {summary['kept']} ({summary['kept'] / total:.1%}), dropped {summary['dropped']}; "
        f"{summary['zero_variance_prompts']} prompts had zero variance; mean normalized variance "
        f"{summary['mean_variance']['all']:.4g} over all, {summary['mean_variance']['kept']:.4g} over the kept",
    ]
    beta = summary["noise"]["beta_binomial"]
    if beta is not None:
        prior = beta["prior"]
        lines.append(
            f"noise (0/1 reward, Beta({prior['a']:.3g}, {prior['b']:.3g}) prior on the success rate): "
            f"{beta['expected_wrongly_dropped']:.1f} of the {summary['dropped']} dropped prompts would be kept by a "
            f"fresh draw of {k} samples; they hold {beta['dropped_true_variance_share']:.1%} of the expected true "
            "variance"
        )
    half = summary["noise"]["split_half"]
    if half is not None:
        lines.append(
            f"split-half check ({half['samples_per_half']} samples each): the halves decide alike on "
            f"{half['agreement']:.1%} of the prompts; {half['dropped_by_one_kept_by_other']:.1f} dropped by one half "
            "are kept by the other"
        )
    lines += [f"rmteacher select-prompts: warning: {note}" for note in summary["notes"]]
    lines.append(f"wrote {summary['out']} and {summary_path(Path(summary['out']))}")
    return lines


def run_select_prompts(config: SelectPromptsConfig) -> str:
    """Selects; prints the summary on stderr (stdout stays empty); returns nothing to print."""
    summary = select_prompts(config)
    print("\n".join(summary_lines(summary)), file=sys.stderr)
    return ""
