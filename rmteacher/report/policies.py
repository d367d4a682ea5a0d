"""The report of `rmteacher study --design policies` (the paper's Section 4.2), from a run directory's saved results.

``analyze`` reads ``policies.json`` (the initial policies, in the design's order), ``evaluate/<policy>/metrics.json``
(reward variance and accuracy of every reward model under every initial policy) and
``rl/<policy>/<reward model>/seed<k>/metrics.jsonl`` (evaluations along RLOO), and builds the Table 10 analogue: per
(policy, reward model) the increase of the ground-truth and of the proxy reward after training, mean ± std over
seeds, with the variance and on-policy accuracy the reward model induces under that policy. Within each policy it
correlates those properties with the increases, and says which reward model was best for which policy.
``write_report`` writes ``table10.csv``, the figures, ``report.md`` and a self-contained ``report.html``. Nothing is
rerun: ``rmteacher report RUN_DIR`` regenerates all of it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rmteacher.power import TARGET_POWER, welch_seeds_needed, with_power
from rmteacher.report.render import (
    Block,
    blocks_to_html,
    blocks_to_markdown,
    format_number,
    machine_text,
    pyplot,
    read_json,
    read_seed_curves,
    verdict_table,
)
from rmteacher.report.table10 import PAPER_TABLE10, findings, paper_table, spearman_text, summarize_policy
from rmteacher.significance import Power, finding_policy_dependent_best, increase_interval
from rmteacher.tables import TRUTH, write_json_atomic, write_png_atomic, write_text_atomic

__all__ = ["TABLE_COLUMNS", "analyze", "write_report"]

#: The Table 10 analogue's columns: one row per (policy, reward model).
TABLE_COLUMNS = [
    "policy",
    "reward_model",
    "reward_variance",
    "on_policy_accuracy",
    "off_policy_accuracy",
    "increase_ground_truth",
    "increase_ground_truth_std",
    "increase_proxy",
    "increase_proxy_std",
    "seeds",
    "step",
]

# ------------------------------------------------------------------------------------------------ reading results


def _policies(run_dir: Path) -> list[str]:
    """Policies of the run with an evaluation, in the design's order (``policies.json``), then any others by name."""
    found = sorted(p.parent.name for p in (run_dir / "evaluate").glob("*/metrics.json"))
    listed = [p["name"] for p in read_json(run_dir / "policies.json").get("policies", [])]
    known = [name for name in listed if name in found]
    return known + [p for p in found if p not in known]


def analyze(run_dir: Path) -> dict[str, Any]:
    """The Table 10 analogue, the curves, per-policy summaries and the findings, from a run's saved results.

    Raises:
        ValueError: no evaluations, or a reward model of an evaluation without RL runs.
    """
    policies = _policies(run_dir)
    if not policies:
        raise ValueError(f"{run_dir}: no evaluate/<policy>/metrics.json; is it a `--design policies` study?")
    rows, curves = [], {}
    final_gt: dict[str, dict[str, list[float]]] = {}  # policy -> reward model -> [seeds] at the end of training
    for policy in policies:
        metrics = json.loads((run_dir / "evaluate" / policy / "metrics.json").read_text())
        for rm, entry in metrics["reward_models"].items():
            if rm == TRUTH:
                continue
            seeds = sorted((run_dir / "rl" / policy / rm).glob("seed*/metrics.jsonl"))
            if not seeds:
                raise ValueError(f"{run_dir}: no RL runs for policy {policy!r} and reward model {rm!r}")
            steps, stacked = read_seed_curves(seeds, ("proxy_increase", "ground_truth_increase"))  # [seeds, evals]
            curves[f"{policy}/{rm}"] = {"steps": steps, **{k: v.mean(0).tolist() for k, v in stacked.items()}}
            final_gt.setdefault(policy, {})[rm] = stacked["ground_truth_increase"][:, -1].tolist()
            # The paper's Table 10 reports the increase at the end of training (2 epochs), mean ± std over 3 runs.
            rows.append(
                {
                    "policy": policy,
                    "reward_model": rm,
                    "reward_variance": entry["reward_variance"]["estimate"],
                    "on_policy_accuracy": entry["on_policy_accuracy"]["estimate"],
                    "off_policy_accuracy": entry.get("off_policy_accuracy", {}).get("estimate", np.nan),
                    "increase_ground_truth": float(stacked["ground_truth_increase"][:, -1].mean()),
                    "increase_ground_truth_std": float(stacked["ground_truth_increase"][:, -1].std()),
                    "increase_proxy": float(stacked["proxy_increase"][:, -1].mean()),
                    "increase_proxy_std": float(stacked["proxy_increase"][:, -1].std()),
                    "seeds": len(seeds),
                    "step": steps[-1],
                }
            )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    summaries = {p: summarize_policy(table[table["policy"] == p]) for p in policies}
    reference = paper_table()
    paper = {p: summarize_policy(reference[reference["policy"] == p]) for p in PAPER_TABLE10}
    first = json.loads((run_dir / "evaluate" / policies[0] / "metrics.json").read_text())
    # Section 4.2's claim, tested over seeds (rmteacher.significance): the sentence replaces a verdict by eye.
    test = finding_policy_dependent_best(final_gt)
    if test.verdict == "inconclusive at this budget":
        test = with_power(test, _crossing_power(test.details, final_gt))
    return {
        "table": table.replace({np.nan: None}).to_dict(orient="records"),
        "summaries": summaries,
        "paper": paper,
        "curves": curves,
        "num_prompts": first["num_prompts"],
        "samples_per_prompt": first["samples_per_prompt"],
        "variance_estimator": first["variance_estimator"],
        "per_seed": final_gt,
        "tests": [test.to_dict()],
        "findings": [*findings(table, summaries, paper), test.sentence],
    }


def _crossing_power(details: dict[str, Any], final_gt: dict[str, dict[str, list[float]]]) -> Power:
    """Seeds for the crossing of :func:`finding_policy_dependent_best` to reach 80% power: under each policy of the
    closest crossing, the other policy's winner against this one's (one-sided Welch at ``alpha`` over the
    Bonferroni factor of the test); the more demanding side decides."""
    if "crossing" not in details and "common_winner" not in details:  # one seed: no test, no power
        return Power("too few seeds", math.nan, "one seed", None, None, TARGET_POWER, 0.05, "")
    if "crossing" not in details:
        common = details["common_winner"]
        return Power("other way", math.nan, f"{common} best under every policy", None, None, TARGET_POWER, 0.05, "")
    p, q = details["crossing"]
    winners = details["winners"]
    factor = (len(final_gt[p]) - 1) * details["policy_pairs"]
    sides = [
        welch_seeds_needed(
            increase_interval(final_gt[policy][winners[other]]),
            increase_interval(final_gt[policy][winners[policy]]),
            alpha=0.05 / factor,
            effect_name=f"under {policy}, {winners[policy]} minus {winners[other]}",
            note=f", x{factor} Bonferroni, the more demanding of the crossing's two sides",
        )
        for policy, other in ((p, q), (q, p))
    ]
    order = ("too few seeds", "other way", "beyond", "reached")
    return min(sides, key=lambda side: (order.index(side.status), -(side.seeds_needed or 0)))


# ----------------------------------------------------------------------------------------------------- output


def _figures(run_dir: Path, table: pd.DataFrame, curves: dict[str, Any]) -> dict[str, Path]:
    plt = pyplot()
    paths = {
        "bars": run_dir / "fig_table10.png",
        "scatter": run_dir / "fig_variance_vs_increase.png",
        "curves": run_dir / "fig_ground_truth_curves.png",
    }
    policies = list(dict.fromkeys(table["policy"]))
    models = list(dict.fromkeys(table["reward_model"]))
    colors = {rm: f"C{i}" for i, rm in enumerate(models)}

    # Per policy, the increase with each reward model, its variance under that policy written on the bar.
    figure, axes = plt.subplots(2, len(policies), figsize=(4 * len(policies), 6.5), squeeze=False, sharey="row")
    for column, policy in enumerate(policies):
        rows = table[table["policy"] == policy].set_index("reward_model")
        for row, (key, title) in enumerate((("increase_ground_truth", "ground truth"), ("increase_proxy", "proxy"))):
            axis = axes[row][column]
            axis.bar(
                range(len(rows)),
                rows[key],
                yerr=rows[f"{key}_std"],
                color=[colors[rm] for rm in rows.index],
                capsize=3,
            )
            best = int(np.argmax(rows[key].to_numpy()))
            axis.patches[best].set_edgecolor("black")
            axis.patches[best].set_linewidth(2)
            for i, r in enumerate(rows.itertuples()):
                axis.annotate(f"Var {r.reward_variance:.2f}", (i, 0), ha="center", va="bottom", fontsize=7,
                              xytext=(0, 2), textcoords="offset points")  # fmt: skip
            axis.set_xticks(range(len(rows)), list(rows.index), rotation=30, ha="right", fontsize=8)
            axis.set_title(f"{policy}: {title} increase", fontsize=9)
            axis.axhline(0, color="grey", lw=0.6)
            axis.grid(axis="y", alpha=0.3)
        axes[0][column].set_ylabel("increase (initial std units)" if column == 0 else "")
    figure.suptitle("Which reward model is best for which policy (bold edge: best); Var = reward variance", fontsize=10)
    figure.tight_layout()
    write_png_atomic(figure, paths["bars"], dpi=110)

    # Within each policy, increase against variance: the paper's claim is a rising line per policy.
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = "osD^vP*X"
    for p_index, policy in enumerate(policies):
        rows = table[table["policy"] == policy].sort_values("reward_variance")
        for axis, key in zip(axes, ("increase_proxy", "increase_ground_truth"), strict=True):
            axis.plot(rows["reward_variance"], rows[key], color=f"C{p_index}", lw=0.8, alpha=0.6)
            for _, r in rows.iterrows():
                axis.scatter(r.reward_variance, r[key], color=f"C{p_index}",
                             marker=markers[models.index(r.reward_model) % len(markers)])  # fmt: skip
    for axis, title in zip(axes, ("proxy (reward used for training)", "ground truth"), strict=True):
        axis.set_xlabel("reward variance under the initial policy")
        axis.set_ylabel("increase after RLOO")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=f"C{i}", label=p) for i, p in enumerate(policies)] + [
        plt.Line2D([], [], color="grey", ls="", marker=markers[i % len(markers)], label=rm)
        for i, rm in enumerate(models)
    ]
    axes[1].legend(handles=handles, fontsize="small")
    figure.tight_layout()
    write_png_atomic(figure, paths["scatter"], dpi=110)

    figure, axes = plt.subplots(1, len(policies), figsize=(4 * len(policies), 3.6), squeeze=False, sharey=True)
    for column, policy in enumerate(policies):
        axis = axes[0][column]
        for rm in models:
            curve = curves.get(f"{policy}/{rm}")
            if curve:
                axis.plot(curve["steps"], curve["ground_truth_increase"], marker="o", ms=3, color=colors[rm], label=rm)
        axis.set_title(policy, fontsize=9)
        axis.set_xlabel("RLOO step")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("ground-truth increase")
    axes[0][-1].legend(fontsize="small")
    figure.tight_layout()
    write_png_atomic(figure, paths["curves"], dpi=110)
    return paths


def _blocks(run_dir: Path, analysis: dict[str, Any], figures: dict[str, Path]) -> list[Block]:
    """The report as (kind, content) blocks, rendered to markdown and HTML by :mod:`rmteacher.report.render`."""
    table = pd.DataFrame(analysis["table"])
    study_options = read_json(run_dir / "study.json")
    timings = read_json(run_dir / "timings.json")
    seeds, step = int(table["seeds"].min()), int(table["step"].max())
    blocks: list[Block] = [
        ("h1", "rmteacher study --design policies: which reward model teaches which policy?"),
        (
            "p",
            "Reproduction of Razin et al. (2025), Section 4.2 (Table 10, Theorem 3) on the sandbox task: several "
            "initial policies x several reward models, RLOO from each policy with each. Options: "
            + ", ".join(
                f"{k}={v}"
                for k, v in study_options.items()
                if v not in (None, [], False) and k not in ("rl_evals", "table_eval")  # unused by this design
            )
            + ".",
        ),
        ("p", machine_text(run_dir)),
        ("h2", "Findings"),
        ("verdicts", verdict_table(analysis["tests"])),
        *[("p", line) for line in analysis["findings"]],
        ("h2", "Table 10 analogue: how it was measured"),
        (
            "p",
            f"Var and on-policy accuracy: {analysis['num_prompts']} prompts x {analysis['samples_per_prompt']} "
            f"samples of each initial policy, variance {analysis['variance_estimator']} of rewards normalized by the "
            f"reward model's own mean and std under that policy. Increases: after {step} RLOO steps, in units of the "
            f"reward's std under the initial policy, mean ± std over {seeds} seed(s). Off-policy accuracy (the "
            "sandbox's preference pairs) does not depend on the policy.",
        ),
    ]
    for policy in dict.fromkeys(table["policy"]):
        rows = table[table["policy"] == policy]
        blocks += [
            ("h2", f"Table 10 analogue, policy {policy}"),
            (
                "table",
                [
                    ["", *rows["reward_model"]],
                    [
                        "Increase (G)",
                        *(
                            f"{r.increase_ground_truth:+.3f} ± {r.increase_ground_truth_std:.3f}"
                            for r in rows.itertuples()
                        ),
                    ],
                    [
                        "Increase (RM)",
                        *(f"{r.increase_proxy:+.3f} ± {r.increase_proxy_std:.3f}" for r in rows.itertuples()),
                    ],
                    ["Var", *(f"{v:.3f}" for v in rows["reward_variance"])],
                    ["On-policy acc.", *(f"{v:.3f}" for v in rows["on_policy_accuracy"])],
                    ["Off-policy acc.", *(format_number(v) for v in rows["off_policy_accuracy"])],
                ],
            ),
        ]
    header = ["policy", "best (GT)", "best (proxy)", "highest Var", "most accurate", "Spearman Var-GT",
              "Spearman Var-proxy", "Spearman acc-GT", "Spearman acc-proxy"]  # fmt: skip

    def summary_rows(summaries: dict[str, Any], suffix: str) -> list[list[str]]:
        return [
            [
                f"{policy}{suffix}",
                s["best_ground_truth"],
                s["best_proxy"],
                s["highest_variance"],
                s["most_accurate"],
                *(
                    spearman_text(s, row, inc)
                    for row in ("reward_variance", "on_policy_accuracy")
                    for inc in ("increase_ground_truth", "increase_proxy")
                ),
            ]
            for policy, s in summaries.items()
        ]

    blocks += [
        ("h2", "Which reward model was best for which policy"),
        (
            "p",
            "Within each policy, over its reward models (n = "
            f"{len(table) // max(1, table['policy'].nunique())}); the rows marked (paper) are computed the same way "
            "from the paper's Table 10.",
        ),
        ("table", [header, *summary_rows(analysis["summaries"], ""), *summary_rows(analysis["paper"], " (paper)")]),
        ("h2", "Where the sandbox differs from the paper"),
        (
            "p",
            "The paper's reward models are public ones of different RewardBench quality and its policies 1B-parameter "
            "language models trained for 2 epochs; here the policies are 190k-parameter models of the sorting task, "
            "fine-tuned on demonstrations whose mistakes differ, and trained for a few dozen RLOO steps. The default "
            "reward models are built from the ground truth so that the mechanism is known: strict and lenient are "
            "increasing functions of it (perfectly accurate; an on-policy accuracy just below 1 comes from "
            "ground-truth values equal up to float rounding), letters_only and order_only each see one of its terms. "
            "Each carries a per-prompt offset, as a Bradley-Terry reward model is free to, without which the "
            "normalized variance of any reward that varies only within prompts would be near 1 under every policy. "
            "That the variance depends on the policy is thus by construction; whether RLOO's increases follow it "
            "is what this run measures. Increases are in units of each reward's std under each policy, so they "
            "compare reward models within a policy, not policies.",
        ),
        ("h2", "Figures"),
        (
            "img",
            (
                figures["bars"],
                "Ground-truth (top) and proxy (bottom) increase after RLOO per policy and reward model, mean ± std "
                "over seeds, with the reward variance each induces under that policy; bold edge: the best.",
            ),
        ),
        ("img", (figures["scatter"], "Increase against reward variance, one line per policy.")),
        ("img", (figures["curves"], "Ground-truth increase along RLOO training, mean over seeds.")),
        ("h2", "Stage times"),
        ("table", [["stage", "seconds"], *([k, f"{v}"] for k, v in timings.items())]),
    ]
    return blocks


def write_report(run_dir: Path, analysis: dict[str, Any]) -> None:
    """Writes analysis.json, table10.csv, the figures, report.md and report.html (each atomically)."""
    write_json_atomic(run_dir / "analysis.json", analysis)
    table = pd.DataFrame(analysis["table"], columns=TABLE_COLUMNS)
    write_text_atomic(run_dir / "table10.csv", table.to_csv(index=False))
    figures = _figures(run_dir, table, analysis["curves"])
    blocks = _blocks(run_dir, analysis, figures)
    write_text_atomic(run_dir / "report.md", blocks_to_markdown(blocks, run_dir))
    write_text_atomic(run_dir / "report.html", blocks_to_html(blocks))
