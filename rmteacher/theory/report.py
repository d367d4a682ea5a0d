"""Figures, CSV tables and markdown sections for the experiments of ``rmteacher theory``.

Reads the results of :mod:`rmteacher.theory.experiments` and computes nothing new. Every file is written atomically
(to a temporary file beside it, then renamed); each ``write_*`` function returns its section of ``summary.md``.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rmteacher.tables import write_png_atomic, write_text_atomic
from rmteacher.theory.experiments import (
    AccuracyResult,
    BestOfNResult,
    ConstructionsResult,
    PracticeResult,
    VarianceResult,
)

__all__ = ["write_accuracy", "write_best_of_n", "write_constructions", "write_practice", "write_variance"]


def _write_csv(table: dict[str, np.ndarray], path: Path) -> pd.DataFrame:
    frame = pd.DataFrame(table)
    write_text_atomic(path, frame.to_csv(index=False, float_format="%.8g"))
    return frame


def _fmt(value: float | str) -> str:
    if isinstance(value, str):
        return value.replace("|", "\\|")  # a literal pipe (as in |Y|) would split the markdown cell
    if not math.isfinite(value):
        return "inf" if value > 0 else "nan"
    return f"{value:.4g}"


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def write_variance(result: VarianceResult, out: Path) -> str:
    """``variance.png``, ``variance_tabular.csv``, ``variance_autoregressive.csv``; returns the summary section."""
    tab, ar, n = result.tabular, result.autoregressive, result.numbers
    _write_csv(tab, out / "variance_tabular.csv")
    _write_csv(ar, out / "variance_autoregressive.csv")
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    finite = np.isfinite(tab["t_gamma"])
    points = left.scatter(
        tab["variance"][finite],
        tab["t_gamma"][finite],
        c=np.log10(tab["scale"][finite]),
        s=8,
        cmap="viridis",
        label=f"simulated t_gamma ({int(finite.sum())} of {len(finite)} reached)",
    )
    figure.colorbar(points, ax=left, label="log10 reward scale s")
    grid = np.logspace(np.log10(tab["variance"].min()), np.log10(tab["variance"].max()), 50)
    left.plot(
        grid,
        10 ** n["tabular_intercept"] * grid ** n["tabular_slope"],
        "k--",
        label=f"fit: slope {n['tabular_slope']:.3f}",
    )
    left.plot(
        grid,
        2 * (1 - math.exp(-result.gamma / 2)) / np.sqrt(grid),
        "r-",
        label="Prop. 3 bound 2(1-e^{-γ/2}) Var^{-1/2}",
    )
    left.set(
        xscale="log",
        yscale="log",
        xlabel="reward variance Var_{π0}[r_RM]",
        ylabel="t_γ (ground truth +γ)",
        title="Tabular policies",
    )
    left.legend(fontsize=8)
    ar_finite = np.isfinite(ar["t_gamma"])
    right.scatter(ar["variance"][ar_finite], ar["t_gamma"][ar_finite], s=18, label="simulated t_γ")
    right.scatter(ar["variance"], ar["bound"], s=18, marker="v", color="r", label="Theorem 4 bound (own J)")
    ar_grid = np.logspace(np.log10(ar["variance"].min()), np.log10(ar["variance"].max()), 50)
    constant = float(np.min(ar["bound"] * ar["variance"] ** (1 / 3)))
    right.plot(ar_grid, constant * ar_grid ** (-1 / 3), "r-", label="Theorem 4 with max J: ∝ Var^{-1/3}")
    right.plot(
        ar_grid,
        10
        ** np.polyval(
            np.polyfit(np.log10(ar["variance"][ar_finite]), np.log10(ar["t_gamma"][ar_finite]), 1), np.log10(ar_grid)
        ),
        "k--",
        label=f"fit: slope {n['ar_slope']:.3f}",
    )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="mean reward variance E_x Var_{π0}[r_RM]",
        ylabel="t_γ",
        title="Autoregressive policies (|V|^L outputs, exact)",
    )
    right.legend(fontsize=8)
    write_png_atomic(figure, out / "variance.png", dpi=110)
    return "\n".join(
        [
            "## t_gamma vs reward variance",
            "",
            f"Tabular: {int(n['tabular_instances'])} random instances (reward scalings s in [0.01, 1]), "
            f"{int(n['tabular_reached'])} reached the +{result.gamma} ground-truth increase. Fitted log-log slope "
            f"{n['tabular_slope']:.3f} over all instances ({n['tabular_slope_scale1']:.3f} across the unscaled "
            f"instances alone); every reached instance is above the Prop. 3 bound "
            f"(fraction {n['tabular_fraction_above_bound']:.3f}, smallest t_gamma/bound "
            f"{n['tabular_min_ratio_to_bound']:.3g}). Across instances at one scale the slope is steeper than "
            "-1/2 because the initial rate of a tabular flow is sum_y pi0(y)^2 (r(y) - V)^2 (Lemma 9), not Var.",
            "",
            f"Autoregressive: {int(n['ar_instances'])} instances, {int(n['ar_reached'])} reached; fitted slope "
            f"{n['ar_slope']:.3f}; fraction above the Theorem 4 bound {n['ar_fraction_above_bound']:.3f} "
            f"(smallest t_gamma/bound {n['ar_min_ratio_to_bound']:.3g}: the bound holds but is loose).",
            "Scaling a reward by s rescales time by 1/s exactly (lambda = 0), so within one instance t_gamma ∝ "
            "Var^{-1/2}; the exponents -1/2 and -1/3 are lower-bound rates, respected by both.",
            "",
            "![variance](variance.png)",
            "",
            "*Figure: time to raise the ground-truth reward by γ against the training reward's variance under π0; "
            "lines are the fitted slope and the proved lower bounds.*",
            "",
        ]
    )


def write_accuracy(result: AccuracyResult, out: Path) -> str:
    """``accuracy.png`` and ``accuracy.csv``; returns the summary section."""
    table, n = result.table, result.numbers
    _write_csv(table, out / "accuracy.csv")
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    reached = np.isfinite(table["t_gamma"])
    shown = np.where(reached, table["t_gamma"], result.t_max)
    for axis, column, label in (
        (left, "on_policy_accuracy", "on-policy accuracy (pairs ~ π0 × π0)"),
        (right, "variance", "reward variance Var_{π0}[r_RM]"),
    ):
        axis.scatter(table[column][reached], shown[reached], s=8, label="reached +γ")
        axis.scatter(
            table[column][~reached],
            shown[~reached],
            s=12,
            marker="x",
            color="gray",
            label=f"not reached by t = {result.t_max:g}",
        )
        axis.set(
            yscale="log",
            xlabel=label,
            ylabel="t_γ (ground truth +γ)",
            title=f"Spearman with speed 1/t_γ: {n['spearman_' + column]:.3f}",
        )
        axis.legend(fontsize=8)
    right.set_xscale("log")
    write_png_atomic(figure, out / "accuracy.png", dpi=110)
    rows = pd.DataFrame(
        {
            "property": ["reward variance", "on-policy accuracy", "accuracy (all pairs)"],
            "Pearson (all)": [n["pearson_variance"], n["pearson_on_policy_accuracy"], n["pearson_accuracy"]],
            "Spearman (all)": [n["spearman_variance"], n["spearman_on_policy_accuracy"], n["spearman_accuracy"]],
            "Spearman (on-policy acc >= 0.9)": [
                n.get("spearman_variance_accurate", math.nan),
                n.get("spearman_on_policy_accuracy_accurate", math.nan),
                n.get("spearman_accuracy_accurate", math.nan),
            ],
        }
    )
    return "\n".join(
        [
            "## Accuracy vs variance as predictors",
            "",
            f"{int(n['reward_models'])} random reward models of one ground truth and one initial policy "
            f"({int(n['reached'])} reached +{result.gamma} by t = {result.t_max:g}; {int(n['accurate_models'])} have "
            "on-policy accuracy >= 0.9). Correlation of each property with speed 1/t_gamma (0 if not reached):",
            "",
            _markdown(rows),
            "",
            "![accuracy](accuracy.png)",
            "",
            "*Figure: t_γ of each reward model against its on-policy accuracy (left) and its reward variance (right).*",
            "",
        ]
    )


def write_constructions(result: ConstructionsResult, out: Path) -> str:
    """``constructions.png`` and ``constructions.csv``; returns the summary section with the 2x2 table."""
    table = result.table
    frame = _write_csv(table, out / "constructions.csv")
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    times = result.times[1:]
    for row, label in enumerate(result.labels):
        axis = axes[0] if table["theorem"][row] == "5" else axes[1]
        axis.plot(
            times, result.curves[row, 1:], label=label.split(": ", 1)[1] + f" (t_γ={_fmt(table['t_gamma'][row])})"
        )
    for axis, title in zip(
        axes, ("Theorem 2/5: accurate ≠ better teacher", "Theorem 3/6: policy-dependent teacher"), strict=True
    ):
        axis.axhline(result.gamma, color="k", ls=":", label=f"γ = {result.gamma}")
        axis.set(xscale="log", xlabel="gradient-flow time t", ylabel="E[r_G](t) - E[r_G](0)", title=title)
        axis.legend(fontsize=7)
    write_png_atomic(figure, out / "constructions.png", dpi=110)
    thm6 = frame[frame["theorem"] == "6"]
    grid = thm6.pivot(index="policy", columns="reward_model", values="t_gamma")
    grid_md = (
        "| initial policy | "
        + " | ".join(_fmt(str(c)) for c in grid.columns)
        + " |\n|---|"
        + "---|" * len(grid.columns)
        + "\n"
    )
    grid_md += "\n".join(f"| π0 ∈ {i} | " + " | ".join(_fmt(v) for v in grid.loc[i]) + " |" for i in grid.index)
    checks = [
        (k == "lower" and t >= b) or (k == "upper" and t <= b)
        for k, t, b in zip(table["bound_kind"], table["t_gamma"], table["bound"], strict=True)
    ]
    return "\n".join(
        [
            "## Theorem 2/5 and Theorem 3/6 constructions",
            "",
            f"gamma = {result.gamma}, T = {result.T}. Every row respects its bound: {all(checks)} "
            f"({sum(checks)} of {len(checks)}).",
            "",
            _markdown(frame),
            "",
            "Theorem 3/6, t_gamma (initial-policy family x reward model):",
            "",
            grid_md,
            "",
            "![constructions](constructions.png)",
            "",
            "*Figure: ground-truth increase along gradient flow for the proofs' reward models (left: Thm 5, "
            "right: Thm 6's two policy families x two indicator rewards).*",
            "",
        ]
    )


def write_best_of_n(result: BestOfNResult, out: Path) -> str:
    """``best_of_n.png``, ``best_of_n.csv``, ``best_of_n_curves.csv``; returns the summary section."""
    frame = _write_csv(result.table, out / "best_of_n.csv")
    curves = {"n": result.ns, "expected_max_r_G": result.expected_max}
    curves.update({name: result.best_of_n[i] for i, name in enumerate(result.names)})
    _write_csv(curves, out / "best_of_n_curves.csv")
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    left.plot(result.ns, result.expected_max, "k:", lw=3, label="E[max_i r_G(y_i)] (optimum, Prop. 1)")
    for i, name in enumerate(result.names):
        left.plot(result.ns, result.best_of_n[i], marker="o", ms=3, label=name)
    left.set(xscale="log", xlabel="N", ylabel="E[r_G] of Best-of-N", title="Best-of-N: accuracy is what matters")
    left.legend(fontsize=7)
    positions = np.arange(len(result.names))
    right.bar(positions, result.table["t_gamma"], color=[f"C{i}" for i in positions], label="t_γ under gradient flow")
    right.set_xticks(positions, [f"RM {i + 1}" for i in positions])
    right.set(
        yscale="log",
        xlabel="reward model (legend order)",
        ylabel=f"t_γ (ground truth +{result.gamma})",
        title="Policy gradient: variance is what matters",
    )
    right.legend(fontsize=8)
    write_png_atomic(figure, out / "best_of_n.png", dpi=110)
    optimal = bool(np.allclose(result.best_of_n[1], result.expected_max))
    slowest = result.names[int(np.argmax(result.table["t_gamma"]))]
    return "\n".join(
        [
            "## Best-of-N vs policy gradient",
            "",
            f"The perfectly accurate, low-variance reward model attains the Best-of-N optimum at every N: {optimal}. "
            f"Slowest under policy gradient: {slowest}.",
            "",
            _markdown(frame),
            "",
            "![best_of_n](best_of_n.png)",
            "",
            "*Figure: expected ground truth of Best-of-N against N (left) and policy-gradient t_γ (right) for the "
            "same reward models under the same initial policy.*",
            "",
        ]
    )


def write_practice(result: PracticeResult, out: Path) -> str:
    """``practice.png``, ``practice.csv``, ``practice_curves.csv``; returns the summary section."""
    frame = _write_csv(result.table, out / "practice.csv")
    curves: dict[str, np.ndarray] = {"time": result.times}
    for i, name in enumerate(result.names):
        for j, which in enumerate(("proxy", "gt")):
            curves[f"{name} | flow {which}"] = result.flow[i, j]
            curves[f"{name} | exact steps {which}"] = result.exact[i, j]
            curves[f"{name} | rloo mean {which}"] = result.rloo_mean[i, j]
            curves[f"{name} | rloo std {which}"] = result.rloo_std[i, j]
    _write_csv(curves, out / "practice_curves.csv")
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for j, (axis, which) in enumerate(zip(axes, ("training (proxy) reward", "ground-truth reward"), strict=True)):
        for i, name in enumerate(result.names):
            color = f"C{i}"
            axis.plot(result.times, result.flow[i, j], color=color, lw=2, label=f"{name}: gradient flow")
            axis.plot(result.times, result.exact[i, j], color=color, ls="--", label=f"{name}: exact steps")
            mean, std = result.rloo_mean[i, j], result.rloo_std[i, j]
            axis.plot(result.times, mean, color=color, ls=":", label=f"{name}: RLOO k={result.k} (mean ± std)")
            axis.fill_between(result.times, mean - std, mean + std, color=color, alpha=0.2)
        axis.set(
            xlabel=f"time = step × lr (lr = {result.learning_rate:g})",
            ylabel="increase over π0",
            title=f"Increase of the {which}",
        )
        axis.legend(fontsize=6)
    write_png_atomic(figure, out / "practice.png", dpi=110)
    order_flow = np.argsort(-result.table["flow_gt_increase"])
    order_rloo = np.argsort(-result.table["rloo_gt_increase"])
    return "\n".join(
        [
            "## Theory vs practice",
            "",
            f"One instance, {result.num_runs} RLOO runs (k = {result.k}, SGD). The ranking of the reward models by "
            f"final ground-truth increase agrees between gradient flow and RLOO: "
            f"{bool(np.array_equal(order_flow, order_rloo))}.",
            "",
            _markdown(frame),
            "",
            "![practice](practice.png)",
            "",
            "*Figure: proxy (left) and ground-truth (right) reward increase under gradient flow, exact-gradient steps "
            "and sampled RLOO on the same instance.*",
            "",
        ]
    )
