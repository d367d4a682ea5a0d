"""The report of `rmteacher study --design policies` (the paper's Section 4.2), from a run directory's saved results.

``analyze`` reads ``evaluate/<policy>/metrics.json`` (reward variance and accuracy of every reward model under
every initial policy) and ``rl/<policy>/<reward model>/seed<k>/metrics.jsonl`` (evaluations along RLOO), and builds
the Table 10 analogue: per (policy, reward model) the increase of the ground-truth and of the proxy reward after
training, mean ± std over seeds, with the variance and on-policy accuracy the reward model induces under that
policy. Within each policy it correlates those properties with the increases, and says which reward model was best
for which policy. ``write_report`` writes ``table10.csv``, the figures, ``report.md`` and a self-contained
``report.html``. Nothing is rerun: ``rmteacher report RUN_DIR`` regenerates all of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rmteacher.analysis import correlation_table
from rmteacher.report import (
    ReportConfig,
    blocks_to_html,
    blocks_to_markdown,
    format_number,
    read_evaluations,
    save_figure,
)
from rmteacher.tables import write_json_atomic, write_text_atomic

__all__ = ["PAPER_TABLE10", "analyze", "findings", "is_policies_run", "run_report", "summarize_policy", "write_report"]

TRUTH = "ground_truth"
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

#: The paper's camera-ready Table 10 (spec §"§4.2 setting"): per policy and reward model
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


def is_policies_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a `rmteacher study --design policies` run (its ``study.json`` says so)."""
    manifest = run_dir / "study.json"
    return manifest.exists() and json.loads(manifest.read_text())["design"] == "policies"


# ------------------------------------------------------------------------------------------------ pure analysis


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


def _spearman(summary: dict[str, Any], row: str, increase: str) -> str:
    return format_number(summary["correlations"][row][increase]["spearman"])


def findings(table: pd.DataFrame, summaries: dict[str, dict[str, Any]], paper: dict[str, dict[str, Any]]) -> list[str]:
    """Sentences quoting the measured numbers, whichever way they came out, and the paper's for comparison."""
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
            (row, increase): _spearman(summary, row, increase)
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
    bests = {policy: s["best_ground_truth"] for policy, s in summaries.items()}
    clear = {p: bests[p] for p, s in summaries.items() if s["clear_best_ground_truth"]}
    named = ", ".join(f"{p}: {rm}" for p, rm in bests.items())
    if len(set(clear.values())) > 1:
        lines.append(
            f"Different reward models were best for different policies ({named}), clearly beyond seed noise for "
            f"{', '.join(clear)}: the paper's Section 4.2 finding (Theorem 3) is reproduced on the sandbox."
        )
    elif len(set(bests.values())) > 1:
        noise = (
            "with one seed per pair the seed-to-seed spread is not measured (use --seeds 2 or more)"
            if all(s["clear_best_ground_truth"] is None for s in summaries.values())
            else "but the winners that differ are within the seed-to-seed spread"
        )
        lines.append(
            f"Different reward models came out best for different policies ({named}), {noise}: the paper's Section "
            "4.2 finding is suggested, not established, by this run."
        )
    else:
        lines.append(
            f"The same reward model, {next(iter(bests.values()))}, was best for every policy: the paper's Section 4.2 "
            "finding (different reward models are best for different policies) is not reproduced here."
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


# ------------------------------------------------------------------------------------------------ reading results


def _policies(run_dir: Path) -> list[str]:
    """Policies of the run in the design's order (those with an evaluation), then any others by name."""
    from rmteacher.study_policies import POLICIES

    found = sorted(p.parent.name for p in (run_dir / "evaluate").glob("*/metrics.json"))
    known = [r.name for r in POLICIES if r.name in found]
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
    for policy in policies:
        metrics = json.loads((run_dir / "evaluate" / policy / "metrics.json").read_text())
        for rm, entry in metrics["reward_models"].items():
            if rm == TRUTH:
                continue
            seeds = sorted((run_dir / "rl" / policy / rm).glob("seed*/metrics.jsonl"))
            if not seeds:
                raise ValueError(f"{run_dir}: no RL runs for policy {policy!r} and reward model {rm!r}")
            frames = [read_evaluations(path) for path in seeds]
            steps = sorted(set.intersection(*(set(f["step"]) for f in frames)))
            stacked = {
                key: np.array([f.set_index("step").loc[steps, key].to_numpy() for f in frames])
                for key in ("proxy_increase", "ground_truth_increase")
            }  # [seeds, evaluations]
            curves[f"{policy}/{rm}"] = {"steps": steps, **{k: v.mean(0).tolist() for k, v in stacked.items()}}
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
                    "seeds": len(frames),
                    "step": steps[-1],
                }
            )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    summaries = {p: summarize_policy(table[table["policy"] == p]) for p in policies}
    reference = paper_table()
    paper = {p: summarize_policy(reference[reference["policy"] == p]) for p in PAPER_TABLE10}
    first = json.loads((run_dir / "evaluate" / policies[0] / "metrics.json").read_text())
    return {
        "table": table.replace({np.nan: None}).to_dict(orient="records"),
        "summaries": summaries,
        "paper": paper,
        "curves": curves,
        "num_prompts": first["num_prompts"],
        "samples_per_prompt": first["samples_per_prompt"],
        "variance_estimator": first["variance_estimator"],
        "findings": findings(table, summaries, paper),
    }


# ----------------------------------------------------------------------------------------------------- output


def _figures(run_dir: Path, table: pd.DataFrame, curves: dict[str, Any]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    save_figure(figure, paths["bars"])

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
    save_figure(figure, paths["scatter"])

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
    save_figure(figure, paths["curves"])
    plt.close("all")
    return paths


def _blocks(run_dir: Path, analysis: dict[str, Any], figures: dict[str, Path]) -> list[tuple[str, Any]]:
    """The report as (kind, content) blocks, rendered to markdown and HTML by :mod:`rmteacher.report`."""
    table = pd.DataFrame(analysis["table"])
    study_options = json.loads((run_dir / "study.json").read_text())
    timings = json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").exists() else {}
    seeds, step = int(table["seeds"].min()), int(table["step"].max())
    blocks: list[tuple[str, Any]] = [
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
        ("h2", "Findings"),
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
                    _spearman(s, row, inc)
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


def run_report(config: ReportConfig) -> str:
    """`rmteacher report RUN_DIR` for a ``--design policies`` run: regenerates the analysis and the report."""
    analysis = analyze(config.run_dir)
    write_report(config.run_dir, analysis)
    return "\n".join(
        [*analysis["findings"], f"Report: {config.run_dir / 'report.md'}, {config.run_dir / 'report.html'}"]
    )
