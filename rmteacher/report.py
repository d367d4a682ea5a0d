"""The study's analysis and report: computed from the saved results of a run directory, nothing is rerun.

``analyze`` reads ``evaluate/metrics.json`` (Table 1) and every ``rl/<model>/seed<k>/metrics.jsonl`` (the
evaluations along training), averages the reward increases over seeds and correlates reward-model properties with
them (Table 2). ``write_report`` draws the figures and writes ``report.md`` and a self-contained ``report.html``
from the same blocks. Run: ``rmteacher report RUN_DIR``.
"""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rmteacher.analysis import CORRELATION_ROWS, correlation_table
from rmteacher.options import option
from rmteacher.tables import write_json_atomic, write_text_atomic

__all__ = [
    "ReportConfig",
    "analyze",
    "blocks_to_html",
    "blocks_to_markdown",
    "format_number",
    "read_evaluations",
    "run_report",
    "save_figure",
    "write_report",
]

TRUTH, LOW_VARIANCE = "ground_truth", "ground_truth_scaled"
LABELS = {TRUTH: "Ground truth", LOW_VARIANCE: "Perfectly acc. low var."}


@dataclass
class ReportConfig:
    """Options of `rmteacher report`."""

    run_dir: Path = option(help="a `rmteacher study` run directory", positional=True)
    table_eval: int = option(1, help="which evaluation along training the correlation table uses")


def read_evaluations(path: Path) -> pd.DataFrame:
    """The evaluation records of one RL run (``metrics.jsonl``); the last record of a step wins (resumed runs)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    evals = pd.DataFrame([r for r in rows if r.get("event") == "eval"])
    if evals.empty:
        raise ValueError(f"{path}: no evaluation records")
    return evals.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def analyze(run_dir: Path, *, table_eval: int = 1) -> dict[str, Any]:
    """Table 1 and 2 analogues, the curves and the findings, from a study's saved results."""
    metrics_path = run_dir / "evaluate" / "metrics.json"
    if not metrics_path.exists():
        raise ValueError(f"{run_dir}: no evaluate/metrics.json; is it a `rmteacher study` run directory?")
    metrics = json.loads(metrics_path.read_text())
    models = metrics["reward_models"]
    names = [n for n in models if n not in (TRUTH, LOW_VARIANCE)] + [LOW_VARIANCE, TRUTH]
    curves: dict[str, dict[str, Any]] = {}
    for name in names:
        seeds = sorted((run_dir / "rl" / name).glob("seed*/metrics.jsonl"))
        if not seeds:
            raise ValueError(f"{run_dir}: no RL runs for {name!r} under rl/{name}/")
        frames = [read_evaluations(path) for path in seeds]
        steps = sorted(set.intersection(*(set(f["step"]) for f in frames)))
        stacked = {
            key: np.array([f.set_index("step").loc[steps, key].to_numpy() for f in frames])
            for key in ("proxy_increase", "ground_truth_increase", "kl")
        }  # [seeds, evaluations]
        curves[name] = {
            "steps": steps,
            "seeds": len(frames),
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
                "increase_proxy": curves[name]["proxy_increase"]["mean"][table_eval],
                "increase_ground_truth": curves[name]["ground_truth_increase"]["mean"][table_eval],
                "increase_proxy_std": curves[name]["proxy_increase"]["std"][table_eval],
                "increase_ground_truth_std": curves[name]["ground_truth_increase"]["std"][table_eval],
            }
        )
    table = pd.DataFrame(rows)
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
        "findings": findings(table, correlations, steps[table_eval]),
    }


def findings(table: pd.DataFrame, correlations: dict[str, Any], step: int) -> list[str]:
    """A few sentences that quote the measured numbers, whichever way they came out."""
    var = correlations["reward_variance"]
    on = correlations["on_policy_accuracy"]
    n = var["increase_proxy"].n
    lines = [
        f"Over the {n} proxy reward models (ground truth excluded, as the paper), reward variance under the initial "
        f"policy correlates with the increase of the reward used for training after {step} steps with Pearson "
        f"{var['increase_proxy'].pearson:.3f} and Spearman {var['increase_proxy'].spearman:.3f}, and with the "
        f"ground-truth increase with Pearson {var['increase_ground_truth'].pearson:.3f} and Spearman "
        f"{var['increase_ground_truth'].spearman:.3f} (the paper, Table 2: 0.982 / 1.000 and 0.834 / 0.714).",
        f"On-policy accuracy correlates with the proxy increase with Pearson {on['increase_proxy'].pearson:.3f} and "
        f"Spearman {on['increase_proxy'].spearman:.3f}, and with the ground-truth increase with Pearson "
        f"{on['increase_ground_truth'].pearson:.3f} and Spearman {on['increase_ground_truth'].spearman:.3f}.",
    ]
    low = table.set_index("reward_model")
    if LOW_VARIANCE in low.index:
        trained = low.drop(index=[LOW_VARIANCE, TRUTH], errors="ignore")
        scaled = {
            k: float(low.at[LOW_VARIANCE, k])  # type: ignore[arg-type]
            for k in ("reward_variance", "on_policy_accuracy", "increase_ground_truth")
        }
        variance, acc, gt = scaled["reward_variance"], scaled["on_policy_accuracy"], scaled["increase_ground_truth"]
        faster = trained[trained["increase_ground_truth"] > gt]
        others = ", ".join(f"{n} {float(v):+.3f}" for n, v in trained["increase_ground_truth"].items())
        lines.append(
            f"The perfectly accurate, low-variance reward model (variance {variance:.3f}, on-policy accuracy "
            f"{acc:.3f}) raised the ground truth by {gt:+.3f} after {step} steps; {len(faster)} of the "
            f"{len(trained)} less accurate reward models raised it more ({others})."
            + (" This is the paper's finding." if len(faster) > 0 else " Here the paper's finding is not reproduced.")
        )
    return lines


# ----------------------------------------------------------------------------------------------------- output


def _figures(run_dir: Path, analysis: dict[str, Any]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    save_figure(figure, paths["increase"])
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
    save_figure(figure, paths["kl"])
    plt.close("all")
    return paths


def save_figure(figure: Any, path: Path) -> None:
    temporary = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(temporary, dpi=110)
    os.replace(temporary, path)


def _blocks(run_dir: Path, analysis: dict[str, Any], figures: dict[str, Path]) -> list[tuple[str, Any]]:
    """The report as a list of (kind, content) blocks, rendered to markdown and to HTML alike."""
    table = pd.DataFrame(analysis["table"])
    study_options = json.loads((run_dir / "study.json").read_text()) if (run_dir / "study.json").exists() else {}
    timings = json.loads((run_dir / "timings.json").read_text()) if (run_dir / "timings.json").exists() else {}
    evaluation = json.loads((run_dir / "evaluate" / "metrics.json").read_text())["reward_models"]

    def ci(name: str, key: str) -> str:
        entry = evaluation[name].get(key)
        return "-" if not entry else f"{entry['estimate']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"

    names = list(table["reward_model"])
    table1 = [
        ["", *(LABELS.get(n, n) for n in names)],
        ["Reward variance", *(ci(n, "reward_variance") for n in names)],
        ["On-policy accuracy", *(ci(n, "on_policy_accuracy") for n in names)],
        ["Off-policy accuracy", *(ci(n, "off_policy_accuracy") for n in names)],
        [
            f"Increase, reward used for training (step {analysis['table_step']})",
            *(f"{r.increase_proxy:+.3f} ± {r.increase_proxy_std:.3f}" for r in table.itertuples()),
        ],
        [
            f"Increase, ground truth (step {analysis['table_step']})",
            *(f"{r.increase_ground_truth:+.3f} ± {r.increase_ground_truth_std:.3f}" for r in table.itertuples()),
        ],
    ]
    corr = analysis["correlations"]
    table2 = [["", "Proxy Pearson", "Proxy Spearman", "GT Pearson", "GT Spearman"]] + [
        [
            row,
            *(
                format_number(corr[row][inc][kind])
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
        ("h2", "Findings"),
        *[("p", line) for line in analysis["findings"]],
        ("h2", "Table 1 analogue: reward models under the initial policy"),
        (
            "p",
            f"{analysis['num_prompts']} prompts x {analysis['samples_per_prompt']} samples of the initial policy; "
            f"variance {analysis['variance_estimator']}, of rewards normalized by each model's own mean and std "
            "(the perfectly accurate low-variance model: the ground truth normalized, then x0.001 on a seeded half "
            f"of the prompts). [95% bootstrap CIs]. Increases: mean ± std over {seeds} RLOO seed(s).",
        ),
        ("table", table1),
        ("h2", f"Table 2 analogue: correlation with the reward increase after {analysis['table_step']} steps"),
        (
            "p",
            f"Over the {len(table) - 1} proxy reward models (ground truth excluded). The same numbers come from "
            "`rmteacher correlate table2_input.csv`.",
        ),
        ("table", table2),
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


def format_number(value: float | None) -> str:
    return "nan" if value is None else f"{value:.3f}"


def blocks_to_markdown(blocks: list[tuple[str, Any]], run_dir: Path) -> str:
    from tabulate import tabulate

    out = []
    for kind, content in blocks:
        if kind == "h1":
            out.append(f"# {content}")
        elif kind == "h2":
            out.append(f"## {content}")
        elif kind == "p":
            out.append(str(content))
        elif kind == "table":
            out.append(tabulate(content[1:], headers=content[0], tablefmt="github"))
        elif kind == "img":
            path, caption = content
            out.append(f"![{caption}]({Path(path).relative_to(run_dir)})\n\n*{caption}*")
        out.append("")
    return "\n".join(out)


def blocks_to_html(blocks: list[tuple[str, Any]]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>rmteacher study</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "font-size:0.9em}img{max-width:100%}</style></head><body>"
    ]
    for kind, content in blocks:
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{html.escape(str(content))}</{kind}>")
        elif kind == "table":
            header = "".join(f"<th>{html.escape(str(c))}</th>" for c in content[0])
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in content[1:]
            )
            parts.append(f"<table><tr>{header}</tr>{body}</table>")
        elif kind == "img":
            path, caption = content
            data = base64.b64encode(Path(path).read_bytes()).decode()
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}'><figcaption>{html.escape(caption)}"
                "</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


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


def run_report(config: ReportConfig) -> str:
    """`rmteacher report RUN_DIR`: regenerates the analysis and the report from the saved results."""
    from rmteacher import report_policies  # a `--design policies` run has its own report (Section 4.2)

    if report_policies.is_policies_run(config.run_dir):
        return report_policies.run_report(config)
    analysis = analyze(config.run_dir, table_eval=config.table_eval)
    write_report(config.run_dir, analysis)
    return "\n".join(
        [*analysis["findings"], f"Report: {config.run_dir / 'report.md'}, {config.run_dir / 'report.html'}"]
    )
