"""The Section 4.2 report (`rmteacher report RUN_DIR` of a `--design policies` run) on a tiny hand-made run
directory: the Table 10 analogue by hand, the policies' order from ``policies.json``, the checks and the files."""

import json
import re
from pathlib import Path

import pytest

from rmteacher.commands.report import ReportConfig, design_of, run_report
from rmteacher.report.policies import analyze

#: policy -> reward model -> (reward variance, on-policy accuracy); the highest variance: "b", then "a".
POLICIES = {
    "second": {"a": (0.2, 0.9), "b": (0.6, 0.7), "c": (0.4, 0.8)},
    "first": {"a": (0.5, 0.9), "b": (0.1, 0.7), "c": (0.3, 0.8)},
}


def make_run(run_dir: Path) -> Path:
    """A `--design policies` run as the study leaves it; seed k's increases at step s: ground truth
    ``(var + 0.1 k) s / 10``, proxy ``2 var s / 10``."""
    (run_dir / "study.json").parent.mkdir(parents=True)
    (run_dir / "study.json").write_text(json.dumps({"design": "policies", "quick": True}))
    (run_dir / "policies.json").write_text(json.dumps({"policies": [{"name": "second"}, {"name": "first"}]}))
    for policy, models in POLICIES.items():
        metrics = {
            "num_prompts": 4,
            "samples_per_prompt": 2,
            "variance_estimator": "population (Definition 2)",
            "reward_models": {
                **{
                    rm: {"reward_variance": {"estimate": var}, "on_policy_accuracy": {"estimate": acc}}
                    for rm, (var, acc) in models.items()
                },
                "ground_truth": {"reward_variance": {"estimate": 1.0}, "on_policy_accuracy": {"estimate": 1.0}},
            },
        }
        (run_dir / "evaluate" / policy).mkdir(parents=True)
        (run_dir / "evaluate" / policy / "metrics.json").write_text(json.dumps(metrics))
        for rm, (var, _) in models.items():
            for k in range(2):
                records = [
                    {
                        "event": "eval",
                        "step": s,
                        "ground_truth_increase": (var + 0.1 * k) * s / 10,
                        "proxy_increase": 2 * var * s / 10,
                    }
                    for s in (0, 5, 10)
                ]
                path = run_dir / "rl" / policy / rm / f"seed{k}" / "metrics.jsonl"
                path.parent.mkdir(parents=True)
                path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def test_table10_by_hand(tmp_path: Path) -> None:
    analysis = analyze(make_run(tmp_path / "run"))
    table = analysis["table"]
    # policies.json's order, not the names' order; the ground truth is not a row.
    assert [(r["policy"], r["reward_model"]) for r in table] == [(p, m) for p in ("second", "first") for m in "abc"]
    second_b = table[1]
    # At the end of training (step 10), mean and population std over the two seeds.
    assert second_b["increase_ground_truth"] == pytest.approx(0.65)
    assert second_b["increase_ground_truth_std"] == pytest.approx(0.05)
    assert second_b["increase_proxy"] == pytest.approx(1.2)
    assert second_b["increase_proxy_std"] == pytest.approx(0.0)
    assert (second_b["seeds"], second_b["step"], second_b["off_policy_accuracy"]) == (2, 10, None)
    summaries = analysis["summaries"]
    assert list(summaries) == ["second", "first"]
    assert [summaries[p]["best_ground_truth"] for p in summaries] == ["b", "a"]  # the highest variance, each time
    assert summaries["second"]["clear_best_ground_truth"] is True  # 0.65 - 0.45 > 0.05 + 0.05
    assert summaries["second"]["correlations"]["reward_variance"]["increase_ground_truth"]["spearman"] == 1.0
    # The winners cross (second: b, first: a), tested over seeds: under `second`, a's [0.2, 0.3] against b's
    # [0.6, 0.7] gives Welch t = -0.4 / 0.0707 = -5.66 with 2 df, one-sided p = 0.0149, x2 Bonferroni over the
    # other models = 0.0298; the same under `first`; one policy pair, so the claim's p is 0.0298 < 0.05.
    (test,) = analysis["tests"]
    assert test["verdict"] == "reproduces"
    assert test["p_value"] == pytest.approx(0.0298, abs=2e-4)
    assert analysis["findings"][-1] == test["sentence"]
    assert test["sentence"].startswith("The best reward model differs between policies (second, first)")


def test_what_the_run_directory_must_hold(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=re.escape("no evaluate/<policy>/metrics.json; is it a `--design policies` study")
    ):
        analyze(tmp_path)
    run = make_run(tmp_path / "run")
    for path in (run / "rl" / "first" / "b").glob("seed*/metrics.jsonl"):
        path.unlink()
    with pytest.raises(ValueError, match="no RL runs for policy 'first' and reward model 'b'"):
        analyze(run)


def test_the_command_picks_the_policies_report(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    assert design_of(run) == "policies"
    printed = run_report(ReportConfig(run_dir=run))
    assert printed.splitlines()[-1] == f"Report: {run / 'report.md'}, {run / 'report.html'}"
    for name in ("analysis.json", "table10.csv", "fig_table10.png", "fig_variance_vs_increase.png",
                 "fig_ground_truth_curves.png", "report.md", "report.html"):  # fmt: skip
        assert (run / name).stat().st_size > 0, name
    report = (run / "report.md").read_text()
    assert report.index("## Table 10 analogue, policy second") < report.index("## Table 10 analogue, policy first")
    assert (run / "report.html").read_text().count("data:image/png;base64,") == 3


def test_power_of_an_inconclusive_crossing() -> None:
    from rmteacher.power import welch_seeds_needed
    from rmteacher.report.policies import _crossing_power
    from rmteacher.significance import finding_policy_dependent_best, increase_interval

    runs = {"pythia": {"a": [0.1, 0.2, 0.15], "b": [0.2, 0.1, 0.25]},
            "llama": {"a": [0.3, 0.2, 0.35], "b": [0.2, 0.3, 0.2]}}  # fmt: skip
    finding = finding_policy_dependent_best(runs)
    assert finding.verdict == "inconclusive at this budget" and finding.details["winners"] == {
        "pythia": "b",
        "llama": "a",
    }
    power = _crossing_power(finding.details, runs)
    # Under each policy its winner against the other's (one other model, one pair: no Bonferroni factor); the
    # crossing needs both, so the side needing more seeds decides.
    sides = [
        welch_seeds_needed(increase_interval(runs["pythia"]["a"]), increase_interval(runs["pythia"]["b"])),
        welch_seeds_needed(increase_interval(runs["llama"]["b"]), increase_interval(runs["llama"]["a"])),
    ]
    assert all(side.status == "reached" for side in sides)
    assert power.seeds_needed == max(side.seeds_needed or 0 for side in sides)
    common = finding_policy_dependent_best(
        {"p": {"a": [0.3, 0.2], "b": [0.1, 0.2]}, "q": {"a": [0.3, 0.2], "b": [0.1, 0.2]}}
    )
    assert _crossing_power(common.details, {}).status == "other way"
    one_seed = finding_policy_dependent_best({"p": {"a": [0.3], "b": [0.1]}, "q": {"a": [0.3], "b": [0.1]}})
    assert _crossing_power(one_seed.details, {}).cell() == "needs at least 2 seeds"
