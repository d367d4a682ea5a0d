"""The tables and figure of `rmteacher evaluate` (``metrics.md``, ``variance_vs_accuracy.png``), rendered from its
metrics; nothing is computed here. Run: ``rmteacher evaluate --help``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tabulate import tabulate

from rmteacher.report.render import pyplot
from rmteacher.tables import write_png_atomic

__all__ = ["render_markdown", "scatter_variance_accuracy"]


def _ci(entry: dict[str, Any] | None, spec: str = ".3f") -> str:
    if entry is None:
        return "-"
    return f"{entry['estimate']:{spec}} [{entry['low']:{spec}}, {entry['high']:{spec}}]"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def render_markdown(result: dict[str, Any]) -> str:
    """The Table 1 analogue (one column per reward model) and the teacher ranking, as markdown."""
    models = result["reward_models"]
    names = list(models)
    rows = [
        ["Reward variance (normalized)", *(_ci(models[n]["reward_variance"]) for n in names)],
        ["Reward variance (raw)", *(_ci(models[n]["raw_reward_variance"], ".3g") for n in names)],
        ["On-policy accuracy", *(_ci(models[n].get("on_policy_accuracy")) for n in names)],
        ["Off-policy accuracy", *(_ci(models[n].get("off_policy_accuracy")) for n in names)],
        [
            "On-policy accuracy, ground-truth ties excluded",
            *(_ci(models[n].get("on_policy_accuracy_without_ties")) for n in names),
        ],
        [
            "Off-policy accuracy, ground-truth ties excluded",
            *(_ci(models[n].get("off_policy_accuracy_without_ties")) for n in names),
        ],
        ["On- & off-policy accuracy", *(_number(models[n].get("on_and_off_policy_accuracy")) for n in names)],
        ["Reward variance & accuracy", *(_number(models[n].get("reward_variance_and_accuracy")) for n in names)],
        ["Prompts with zero variance", *(f"{models[n]['zero_variance_prompts']:.1%}" for n in names)],
        ["Normalization mean", *(f"{models[n]['normalization']['mean']:.4g}" for n in names)],
        ["Normalization std", *(f"{models[n]['normalization']['std']:.4g}" for n in names)],
    ]
    ranking = result["ranking"]
    ranked = []
    for i, name in enumerate(ranking["order"]):
        step = "" if i == len(ranking["order"]) - 1 else f"{ranking['adjacent_confidence'][i]:.0%}"
        ranked.append([i + 1, name, _ci(ranking["score"][name]), step])
    budget = result.get("budget", {})
    ties = result.get("ground_truth_ties") or {}
    lines = [
        "# Teacher evaluation",
        "",
        f"{result['num_prompts']} prompts x {result['samples_per_prompt']} samples from the policy; variance: "
        f"{result['variance_estimator']}; [95% bootstrap CIs over prompts].",
        "Reward variance is normalized by each model's own mean and std over all samples of the policy (the "
        "paper's Table 1); `_scaled` models are normalized first and then scaled, as in training.",
        "Accuracy is the paper's (Definition 1): a pair the ground truth ties counts as correct only when the reward "
        "ties it too. 'Ground-truth ties excluded' counts only the pairs the ground truth orders (as RewardBench "
        f"does). Pairs the ground truth ties: {_share(ties.get('on_policy'))} on-policy, "
        f"{_share(ties.get('off_policy'))} off-policy.",
        "",
        tabulate(rows, headers=["", *names], tablefmt="github"),
        "",
        f"## Ranking as teachers for this policy (criterion: `{ranking['criterion']}`, higher is better)",
        "",
        *(
            [result["ranking_basis"][0].upper() + result["ranking_basis"][1:] + ".", ""]
            if "ranking_basis" in result
            else []
        ),
        tabulate(ranked, headers=["rank", "reward model", "score", "P(above the next)"], tablefmt="github"),
        "",
        "P(above the next) is the share of bootstrap resamples of the prompts in which the model scored above the "
        "one ranked after it.",
    ]
    if "finished_share" in result:
        share = result["finished_share"]
        lines += ["", f"Finished samples (ended on an end token or a --stop string): {share:.1%}."]
        if result.get("finished_warning"):
            lines += ["", f"**Warning:** {result['finished_warning']}."]
    if result.get("stop_strings"):
        counts = ", ".join(f"{s!r}: {n}" for s, n in result["stop_strings"].items())
        lines += ["", f"Samples ended by each --stop string (as decoded): {counts}."]
        if result.get("stop_warning"):
            lines += ["", f"**Warning:** {result['stop_warning']}."]
    cut = {k: v for k, v in (result.get("truncations") or {}).items() if v["samples"] or v["pairs"]}
    if cut:
        shown = "; ".join(f"{k}: {v['samples']} samples, {v['pairs']} pairs" for k, v in cut.items())
        lines += ["", f"Texts longer than the reward model's maximum length (the prompt's start cut): {shown}."]
    if budget:
        lines += [
            "",
            f"Budget: {budget['mode']}, {budget['rounds']} round(s), {budget['prompts']} prompts, "
            f"{budget['samples_per_reward_model']} samples scored per reward model; adjacent models separated by "
            f"their CIs: {'yes' if budget['ranking_separated'] else 'no'}.",
        ]
    return "\n".join(lines) + "\n"


def scatter_variance_accuracy(result: dict[str, Any], path: Path) -> None:
    """Reward variance against on-policy accuracy, one point per reward model with its CIs (PNG, atomic)."""
    plt = pyplot()
    models = result["reward_models"]
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for name, entry in models.items():
        variance = entry["reward_variance"]
        acc = entry.get("on_policy_accuracy") or {"estimate": float("nan"), "low": float("nan"), "high": float("nan")}
        axes.errorbar(
            acc["estimate"],
            variance["estimate"],
            xerr=_bar(acc),
            yerr=_bar(variance),
            fmt="o",
            capsize=3,
            label=name,
        )
    axes.set_xlabel("on-policy accuracy")
    axes.set_ylabel("reward variance (normalized)")
    axes.set_title("Reward variance vs on-policy accuracy under the policy")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    write_png_atomic(figure, path, dpi=120)


def _bar(interval: dict[str, float]) -> list[list[float]]:
    """Error-bar lengths below and above an estimate. A percentile interval over very few prompts can lie entirely
    on one side of its estimate; the bar on the other side is then zero."""
    below = max(interval["estimate"] - interval["low"], 0.0)
    above = max(interval["high"] - interval["estimate"], 0.0)
    return [[below], [above]]
