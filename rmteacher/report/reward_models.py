"""The report of `rmteacher study` (the paper's Section 4.1), from a run directory's saved results; nothing is rerun.

``analyze`` reads ``evaluate/metrics.json`` (Table 1) and every ``rl/<model>/seed<k>/metrics.jsonl`` (the
evaluations along training), averages the reward increases over seeds and correlates reward-model properties with
them (Table 2). ``write_report`` draws the figures and writes ``report.md`` and a self-contained ``report.html``
from the same blocks (:mod:`rmteacher.report.render`). Run: ``rmteacher report RUN_DIR``.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rmteacher.analysis import CORRELATION_ROWS, correlation_table, with_combined_rows
from rmteacher.metrics import ConfidenceInterval
from rmteacher.power import (
    TARGET_POWER,
    difference_seeds_needed,
    not_over_seeds,
    spearman_seeds_needed,
    welch_seeds_needed,
    with_power,
)
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
from rmteacher.significance import (
    Finding,
    Power,
    correlation_with_uncertainty,
    finding_accuracy_not_better,
    finding_low_variance_vs_best_trained,
    finding_low_variance_vs_ground_truth,
    finding_on_policy_variance_gap,
    finding_variance_predicts_increase,
    increase_interval,
)
from rmteacher.tables import LOW_VARIANCE, TRUTH, write_json_atomic, write_png_atomic, write_text_atomic

__all__ = ["SGD_ARM", "analyze", "best_trained", "findings", "low_variance_findings", "sgd_findings", "write_report"]

#: The run directory's folder of the plain-SGD arm's runs (``<SGD_ARM>/<model>/seed<k>``), beside ``rl/``.
SGD_ARM = "rl-sgd"

LABELS = {TRUTH: "Ground truth", LOW_VARIANCE: "Perfectly acc. low var."}
INCONCLUSIVE = "inconclusive at this budget"


def analyze(run_dir: Path, *, table_eval: int = 1) -> dict[str, Any]:
    """Table 1 and 2 analogues, the curves and the findings, from a study's saved results."""
    metrics_path = run_dir / "evaluate" / "metrics.json"
    if not metrics_path.exists():
        raise ValueError(f"{run_dir}: no evaluate/metrics.json; is it a `rmteacher study` run directory?")
    metrics = json.loads(metrics_path.read_text())
    models = metrics["reward_models"]
    names = [n for n in models if n not in (TRUTH, LOW_VARIANCE)] + [LOW_VARIANCE, TRUTH]
    curves: dict[str, dict[str, Any]] = {}
    stacked_by_name: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        seeds = sorted((run_dir / "rl" / name).glob("seed*/metrics.jsonl"))
        if not seeds:
            raise ValueError(f"{run_dir}: no RL runs for {name!r} under rl/{name}/")
        steps, stacked = read_seed_curves(seeds, ("proxy_increase", "ground_truth_increase", "kl"))
        stacked_by_name[name] = stacked
        curves[name] = {
            "steps": steps,
            "seeds": len(seeds),
            **{k: {"mean": v.mean(0).tolist(), "std": v.std(0).tolist()} for k, v in stacked.items()},
        }
    steps = curves[names[0]]["steps"]
    if not 1 <= table_eval < len(steps):
        raise ValueError(f"--table-eval {table_eval}: the runs have evaluations 1..{len(steps) - 1} after step 0")
    rows = []
    for name in names:
        entry = models[name]
        rows.append(
            {
                "reward_model": name,
                "reward_variance": entry["reward_variance"]["estimate"],
                "on_policy_accuracy": entry["on_policy_accuracy"]["estimate"],
                "off_policy_accuracy": entry.get("off_policy_accuracy", {}).get("estimate", np.nan),
                "on_policy_accuracy_without_ties": (entry.get("on_policy_accuracy_without_ties") or {}).get(
                    "estimate", np.nan
                ),
                "increase_proxy": curves[name]["proxy_increase"]["mean"][table_eval],
                "increase_ground_truth": curves[name]["ground_truth_increase"]["mean"][table_eval],
                "increase_proxy_std": curves[name]["proxy_increase"]["std"][table_eval],
                "increase_ground_truth_std": curves[name]["ground_truth_increase"]["std"][table_eval],
            }
        )
    table = pd.DataFrame(rows)
    # Every seed's increase at the step of Table 2: what the tests of the findings resample.
    per_seed = {
        name: {
            f"increase_{key.removesuffix('_increase')}": stacked[key][:, table_eval].tolist()
            for key in ("proxy_increase", "ground_truth_increase")
        }
        for name, stacked in stacked_by_name.items()
    }
    tested = findings(table, per_seed, models, steps[table_eval])
    sgd = _sgd_arm(run_dir, steps[table_eval])
    if sgd is not None:
        tested += sgd_findings(sgd["per_seed"], step=steps[table_eval], learning_rate=sgd["learning_rate"])
    # The paper correlates over its six proxy reward models; the ground-truth run is left out (Section 4.1).
    proxies = table[table["reward_model"] != TRUTH]
    column = {k: proxies[k].to_numpy(dtype=float) for k in proxies.columns if k != "reward_model"}
    correlations = correlation_table(
        column["reward_variance"],
        column["on_policy_accuracy"],
        np.nan_to_num(column["off_policy_accuracy"]),  # no --pairs: off-policy rows are uninformative zeros
        {"increase_proxy": column["increase_proxy"], "increase_ground_truth": column["increase_ground_truth"]},
    )
    return {
        "table": table.to_dict(orient="records"),
        "correlations": {row: {k: c.to_dict() for k, c in cells.items()} for row, cells in correlations.items()},
        "curves": curves,
        "table_step": steps[table_eval],
        "num_prompts": metrics["num_prompts"],
        "samples_per_prompt": metrics["samples_per_prompt"],
        "variance_estimator": metrics["variance_estimator"],
        "per_seed": per_seed,
        "correlation_tests": correlation_cells(table, per_seed),
        "sgd": sgd,
        "tests": [f.to_dict() for f in tested],
        "findings": [f.sentence for f in tested],
    }


def findings(
    table: pd.DataFrame, per_seed: dict[str, dict[str, list[float]]], evaluation: dict[str, Any], step: int
) -> list[Finding]:
    """The paper's Section 4.1 claims, each tested on this study (:mod:`rmteacher.significance`); a claim whose
    models the study lacks (e.g. no ``rm_100``/``rm_0`` with ``--reward-model``) is left out.

    Args:
        table: one row per reward model (Table 1 analogue), the ground truth last.
        per_seed: ``per_seed[model][increase]``: ``[num_seeds]`` increases after ``step`` steps.
        evaluation: ``evaluate/metrics.json``'s ``reward_models`` (the variance CIs over prompts).
        step: the RL step of Table 2.
    """
    under_initial: list[Finding] = []  # measured under the initial policy, before any RL step
    if {"rm_100", "rm_0"} <= set(evaluation):

        def interval(name: str) -> ConfidenceInterval:
            entry = evaluation[name]["reward_variance"]
            return ConfidenceInterval(entry["estimate"], entry["low"], entry["high"], entry.get("confidence", 0.95))

        gap = finding_on_policy_variance_gap(interval("rm_100"), interval("rm_0"))
        under_initial.append(gap if gap.verdict != INCONCLUSIVE else with_power(gap, _variance_gap_power(gap)))
    gt = {name: np.asarray(v["increase_ground_truth"]) for name, v in per_seed.items()}
    out = low_variance_findings(gt, picked_from_these_runs=True)
    proxies = table[table["reward_model"] != TRUTH]
    names = list(proxies["reward_model"])
    if len(names) >= 3:
        variance = proxies["reward_variance"].to_numpy(dtype=float)
        accuracy = proxies["on_policy_accuracy"].to_numpy(dtype=float)
        for key, label in (("increase_proxy", "proxy increase"), ("increase_ground_truth", "ground-truth increase")):
            increase = np.array([per_seed[n][key] for n in names])  # [models, seeds]
            finding = finding_variance_predicts_increase(variance, increase, increase_name=label)
            if finding.verdict == INCONCLUSIVE:
                finding = with_power(finding, spearman_seeds_needed(variance, increase))
            out.append(finding)
            finding = finding_accuracy_not_better(variance, accuracy, increase, increase_name=label)
            if finding.verdict == INCONCLUSIVE:
                finding = with_power(finding, difference_seeds_needed(variance, accuracy, increase))
            out.append(finding)
    after = [replace(f, sentence=f"After {step} RL steps, {f.sentence[0].lower()}{f.sentence[1:]}") for f in out]
    return under_initial + after


def best_trained(run_dir: Path, names: list[str], table_eval: int) -> str:
    """Of the reward models ``names``, the one whose ``rl/`` runs raised the ground truth most at evaluation
    ``table_eval`` (mean over seeds): the plain-SGD arm's trained reward model."""
    means = {}
    for name in names:
        _, stacked = read_seed_curves(
            sorted((run_dir / "rl" / name).glob("seed*/metrics.jsonl")), ["ground_truth_increase"]
        )
        means[name] = float(stacked["ground_truth_increase"][:, table_eval].mean())
    return max(means, key=lambda n: means[n])


def _sgd_arm(run_dir: Path, step: int) -> dict[str, Any] | None:
    """The plain-SGD arm's ground-truth increases at ``step`` per model and seed, its learning rate and its table;
    None when the study has no such arm (``--sgd-learning-rate 0``, or your --policy without one)."""
    directory = run_dir / SGD_ARM
    if not directory.is_dir():
        return None
    per_seed: dict[str, list[float]] = {}
    rows = []
    learning_rate = None
    for model in sorted(p for p in directory.iterdir() if p.is_dir()):
        paths = sorted(model.glob("seed*/metrics.jsonl"))
        steps, stacked = read_seed_curves(paths, ["ground_truth_increase"])
        if step not in steps:
            raise ValueError(f"{model}: the SGD arm's runs have evaluations at steps {steps}, not at step {step}")
        values = stacked["ground_truth_increase"][:, steps.index(step)]
        per_seed[model.name] = values.tolist()
        rows.append({"reward_model": model.name, "increase_ground_truth": float(values.mean()),
                     "increase_ground_truth_std": float(values.std()), "seeds": len(paths)})  # fmt: skip
        learning_rate = json.loads((paths[0].parent / "config.json").read_text())["learning_rate"]
    return {"learning_rate": learning_rate, "step": step, "table": rows, "per_seed": per_seed}


def low_variance_findings(gt: dict[str, np.ndarray], *, picked_from_these_runs: bool) -> list[Finding]:
    """The two low-variance claims on ``gt`` (``[num_seeds]`` ground-truth increases per model), each with its power
    when inconclusive: against the ground truth, and against the best of the trained models in ``gt`` (x k
    Bonferroni when ``picked_from_these_runs``, over the k trained models it was picked from). A claim whose models
    ``gt`` lacks is left out."""
    out: list[Finding] = []
    trained = {n: v for n, v in gt.items() if n not in (LOW_VARIANCE, TRUTH)}
    if LOW_VARIANCE in gt and TRUTH in gt:
        finding = finding_low_variance_vs_ground_truth(gt[LOW_VARIANCE], gt[TRUTH])
        if finding.verdict == INCONCLUSIVE:
            low, truth = increase_interval(gt[LOW_VARIANCE]), increase_interval(gt[TRUTH])
            finding = with_power(finding, welch_seeds_needed(low, truth, effect_name="ground truth minus low-variance"))
        out.append(finding)
    if LOW_VARIANCE in gt and trained:
        finding = finding_low_variance_vs_best_trained(
            gt[LOW_VARIANCE], trained, picked_from_these_runs=picked_from_these_runs
        )
        if finding.verdict == INCONCLUSIVE:
            k = finding.details["bonferroni"]
            low, best = increase_interval(gt[LOW_VARIANCE]), increase_interval(trained[finding.details["best"]])
            power = welch_seeds_needed(
                low, best, alpha=0.05 / k, effect_name="best trained minus low-variance",
                note=f", x{k} Bonferroni" if k > 1 else "",
            )  # fmt: skip
            finding = with_power(finding, power)
        out.append(finding)
    return out


def sgd_findings(per_seed: dict[str, list[float]], *, step: int, learning_rate: float) -> list[Finding]:
    """The two low-variance claims of Section 4.1 in the theory's setting (plain SGD, no clipping): the low-variance
    construction against the ground truth, and against the trained reward model the Adam runs ranked best (picked
    from other runs, so no Bonferroni factor). Their claims and labels name the arm."""
    gt = {name: np.asarray(values) for name, values in per_seed.items()}
    out = low_variance_findings(gt, picked_from_these_runs=False)
    arm = f"under plain SGD at learning rate {learning_rate:g} without clipping (the theory's setting)"

    def named(text: str) -> str:
        return text.replace("picked beforehand", "ranked best by the AdamW runs")

    return [
        replace(
            f,
            claim=f"{named(f.claim)}, {arm}",
            label=f"{f.label} (SGD)",
            sentence=f"After {step} RL steps {arm}, {named(f.sentence[0].lower() + f.sentence[1:])}",
        )
        for f in out
    ]


def _variance_gap_power(finding: Finding) -> Power:
    gap = finding.details["gap"]
    if gap <= 0:
        return Power("other way", gap, f"gap {gap:+.3f}", None, None, TARGET_POWER, math.nan, "")
    note = (
        "its test is over the prompts of the evaluation under the initial policy, not over RL seeds: more "
        "--eval-num-prompts narrows its CIs"
    )
    return not_over_seeds(gap, f"gap {gap:+.3f}", note)


def correlation_cells(
    table: pd.DataFrame, per_seed: dict[str, dict[str, list[float]]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Table 2 with uncertainty: per property row and (increase, method) column, the correlation over the proxies,
    its two-level bootstrap CI and its permutation p-values (:func:`correlation_with_uncertainty`)."""
    proxies = table[table["reward_model"] != TRUTH]
    names = list(proxies["reward_model"])
    columns = with_combined_rows({k: np.nan_to_num(proxies[k].to_numpy(dtype=float)) for k in CORRELATION_ROWS[:3]})
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for row in CORRELATION_ROWS:
        x = columns[row]
        cells[row] = {}
        for key in ("increase_proxy", "increase_ground_truth"):
            y = np.array([per_seed[n][key] for n in names])
            for method in ("pearson", "spearman"):
                test = correlation_with_uncertainty(x, y, method=method)
                cells[row][f"{key}/{method}"] = test.to_dict()
    return cells


# ----------------------------------------------------------------------------------------------------- output


def _figures(run_dir: Path, analysis: dict[str, Any]) -> dict[str, Path]:
    plt = pyplot()
    paths = {"increase": run_dir / "fig_reward_increase.png", "kl": run_dir / "fig_ground_truth_vs_kl.png"}
    curves = analysis["curves"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for name, curve in curves.items():
        label = LABELS.get(name, name)
        for axis, key in zip(axes, ("proxy_increase", "ground_truth_increase"), strict=True):
            mean, std = np.array(curve[key]["mean"]), np.array(curve[key]["std"])
            axis.plot(curve["steps"], mean, marker="o", ms=3, label=label)
            axis.fill_between(curve["steps"], mean - std, mean + std, alpha=0.15)
    axes[0].set_title("Reward used for training")
    axes[1].set_title("Ground-truth reward")
    for axis in axes:
        axis.set_xlabel("RLOO step")
        axis.set_ylabel("reward increase (initial std units)")
        axis.axvline(analysis["table_step"], color="grey", lw=0.8, ls=":")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize="small")
    figure.tight_layout()
    write_png_atomic(figure, paths["increase"], dpi=110)
    figure, axis = plt.subplots(figsize=(6, 4.2))
    for name, curve in curves.items():
        axis.plot(
            curve["kl"]["mean"], curve["ground_truth_increase"]["mean"], marker="o", ms=3, label=LABELS.get(name, name)
        )
    axis.set_xlabel("KL(policy || initial policy)")
    axis.set_ylabel("ground-truth reward increase")
    axis.set_title("Ground-truth reward vs KL")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    write_png_atomic(figure, paths["kl"], dpi=110)
    return paths


def _blocks(run_dir: Path, analysis: dict[str, Any], figures: dict[str, Path]) -> list[Block]:
    """The report as a list of (kind, content) blocks, rendered to markdown and to HTML alike."""
    table = pd.DataFrame(analysis["table"])
    study_options = read_json(run_dir / "study.json")
    timings = read_json(run_dir / "timings.json")
    evaluated = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    evaluation = evaluated["reward_models"]
    ties = evaluated.get("ground_truth_ties") or {}

    def ci(name: str, key: str) -> str:
        entry = evaluation[name].get(key)
        return "-" if not entry else f"{entry['estimate']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"

    names = list(table["reward_model"])
    table1 = [
        ["", *(LABELS.get(n, n) for n in names)],
        ["Reward variance", *(ci(n, "reward_variance") for n in names)],
        ["On-policy accuracy", *(ci(n, "on_policy_accuracy") for n in names)],
        ["Off-policy accuracy", *(ci(n, "off_policy_accuracy") for n in names)],
        ["On-policy accuracy, ground-truth ties excluded", *(ci(n, "on_policy_accuracy_without_ties") for n in names)],
        [
            "Off-policy accuracy, ground-truth ties excluded",
            *(ci(n, "off_policy_accuracy_without_ties") for n in names),
        ],
        [
            f"Increase, reward used for training (step {analysis['table_step']})",
            *(f"{r.increase_proxy:+.3f} ± {r.increase_proxy_std:.3f}" for r in table.itertuples()),
        ],
        [
            f"Increase, ground truth (step {analysis['table_step']})",
            *(f"{r.increase_ground_truth:+.3f} ± {r.increase_ground_truth_std:.3f}" for r in table.itertuples()),
        ],
    ]
    tests = analysis["correlation_tests"]

    def cell(row: str, key: str) -> str:
        test = tests[row][key]

        def finite(value: float | None) -> bool:  # an undefined correlation is saved as null (e.g. equal increases)
            return value is not None and bool(np.isfinite(value))

        if not finite(test["estimate"]):
            return format_number(None)
        interval = f" [{test['low']:.2f}, {test['high']:.2f}]" if finite(test["low"]) else ""
        return f"{test['estimate']:.3f}{interval} p={test['p_positive']:.3g}"

    table2 = [["", "Proxy Pearson", "Proxy Spearman", "GT Pearson", "GT Spearman"]] + [
        [
            row,
            *(
                cell(row, f"{inc}/{kind}")
                for inc in ("increase_proxy", "increase_ground_truth")
                for kind in ("pearson", "spearman")
            ),
        ]
        for row in CORRELATION_ROWS
    ]
    seeds = analysis["curves"][names[0]]["seeds"]
    return [
        ("h1", "rmteacher study: what makes a reward model a good teacher?"),
        (
            "p",
            "Reproduction of Razin et al. (2025), Section 4.1, with rmteacher. Options: "
            + ", ".join(f"{k}={v}" for k, v in study_options.items() if v not in (None, [], False))
            + ".",
        ),
        ("p", machine_text(run_dir)),
        ("h2", "Findings"),
        ("verdicts", verdict_table(analysis["tests"])),
        (
            "p",
            'Each of the paper\'s Section 4.1 claims, tested on this study: "reproduces" only when its test passes '
            'at 0.05 in the paper\'s direction, "does not reproduce" when it passes in the opposite one, '
            '"inconclusive at this budget" otherwise. Tests over RL seeds are one-sided Welch t-tests. For an '
            "inconclusive claim, the last column is the number of seeds per reward model at which its test would "
            "pass with 80% probability if the observed effect were the true one (Welch: noncentral t from the "
            "observed means and stds; correlations over reward models: resampling each model's seeds).",
        ),
        *[("p", line) for line in analysis["findings"]],
        ("h2", "Table 1 analogue: reward models under the initial policy"),
        (
            "p",
            f"{analysis['num_prompts']} prompts x {analysis['samples_per_prompt']} samples of the initial policy; "
            f"variance {analysis['variance_estimator']}, of rewards normalized by each model's own mean and std "
            "(the perfectly accurate low-variance model: the ground truth normalized, then x0.001 on a seeded half "
            f"of the prompts). [95% bootstrap CIs]. Increases: mean ± std over {seeds} RLOO seed(s). "
            "Accuracy counts a pair the ground truth ties as correct only when the reward ties it too (the paper); "
            "'ties excluded' counts only the pairs the ground truth orders (RewardBench's count). Pairs the ground "
            f"truth ties: {_share(ties.get('on_policy'))} on-policy, {_share(ties.get('off_policy'))} off-policy.",
        ),
        ("table", table1),
        ("h2", f"Table 2 analogue: correlation with the reward increase after {analysis['table_step']} steps"),
        (
            "p",
            f"Over the {len(table) - 1} proxy reward models (ground truth excluded), the increase averaged over "
            f"{seeds} seed(s). [95% two-level bootstrap interval: reward models, then each model's seeds] and the "
            "one-sided permutation p-value over reward models for a positive association (exact over all orderings). "
            "The estimates come from `rmteacher correlate table2_input.csv` too.",
        ),
        ("table", table2),
        *_sgd_blocks(analysis),
        ("h2", "Figures"),
        (
            "img",
            (
                figures["increase"],
                "Reward increase along RLOO training, mean ± std over seeds (Figure 2 analogue); "
                "the dotted line marks the step of Table 2.",
            ),
        ),
        ("img", (figures["kl"], "Ground-truth reward increase against KL to the initial policy (Figure 4 analogue).")),
        ("img", (run_dir / "evaluate" / "variance_vs_accuracy.png", "Reward variance against on-policy accuracy.")),
        ("h2", "Stage times"),
        ("table", [["stage", "seconds"], *([k, f"{v}"] for k, v in timings.items())]),
    ]


def _sgd_blocks(analysis: dict[str, Any]) -> list[Block]:
    """The plain-SGD arm's section: what it is and its ground-truth increases (its tests are in the findings)."""
    sgd = analysis.get("sgd")
    if sgd is None:
        return [
            ("h2", "The theory's setting: plain SGD"),
            ("p", "Not run: this study has no plain-SGD arm (--sgd-learning-rate 0, or a --policy of yours without "
                  "--sgd-learning-rate, whose stable value only a sweep on that policy can tell)."),
        ]  # fmt: skip
    rows = [["", *(LABELS.get(r["reward_model"], r["reward_model"]) for r in sgd["table"])]]
    rows.append(
        [
            f"Increase, ground truth (step {sgd['step']})",
            *(f"{r['increase_ground_truth']:+.3f} ± {r['increase_ground_truth_std']:.3f}" for r in sgd["table"]),
        ]
    )
    seeds = sgd["table"][0]["seeds"]
    return [
        ("h2", "The theory's setting: plain SGD"),
        (
            "p",
            "The paper's theory (Theorem 1) is about gradient flow, where scaling a reward scales the step; the runs "
            "above use AdamW with gradient clipping, the paper's practice, which undoes most of a reward's scale. "
            f"Here the ground truth, its low-variance construction and the trained reward model the AdamW runs "
            f"ranked best are trained again with plain SGD at learning rate {sgd['learning_rate']:g} and no "
            f"clipping, to step {sgd['step']}, over {seeds} seed(s); the learning rate is the sandbox's sweep's "
            "(examples/sgd_sweep.py). Their two tests are in the findings above, marked (SGD). Mean ± std over seeds:",
        ),
        ("table", rows),
    ]


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def write_report(run_dir: Path, analysis: dict[str, Any]) -> None:
    """Writes analysis.json, table2_input.csv, the figures, report.md and report.html (each atomically)."""
    write_json_atomic(run_dir / "analysis.json", analysis)
    table = pd.DataFrame(analysis["table"])
    columns = [
        "reward_model",
        "reward_variance",
        "on_policy_accuracy",
        "off_policy_accuracy",
        "increase_proxy",
        "increase_ground_truth",
    ]
    write_text_atomic(run_dir / "table2_input.csv", table[table["reward_model"] != TRUTH][columns].to_csv(index=False))
    write_text_atomic(run_dir / "table1.csv", table.to_csv(index=False))
    figures = _figures(run_dir, analysis)
    blocks = _blocks(run_dir, analysis, figures)
    write_text_atomic(run_dir / "report.md", blocks_to_markdown(blocks, run_dir))
    write_text_atomic(run_dir / "report.html", blocks_to_html(blocks))
