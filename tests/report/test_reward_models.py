"""The Section 4.1 report (`rmteacher report RUN_DIR`) on a tiny hand-made run directory: the Table 1/2 analogues
by hand, the checks on what the directory holds, and the files it writes."""

import base64
import json
import shutil
from pathlib import Path

import pytest

from rmteacher.commands.report import ReportConfig, design_of, run_report
from rmteacher.report.reward_models import analyze, best_trained, write_report

#: reward model -> (reward variance, on-policy accuracy, off-policy accuracy); the names `rmteacher study` gives.
MODELS = {
    "rm_a": (0.1, 0.9, 0.8),
    "rm_b": (0.3, 0.7, 0.6),
    "rm_c": (0.5, 0.6, 0.7),
    "ground_truth_scaled": (0.01, 1.0, 1.0),
    "ground_truth": (0.4, 1.0, 1.0),
}
STEPS = (0, 5, 10)
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def _ci(value: float) -> dict[str, float]:
    return {"estimate": value, "low": value - 0.05, "high": value + 0.05}


def make_run(run_dir: Path, seeds: int = 2) -> Path:
    """A run as `rmteacher study` leaves it: Table 1's metrics and each model's RL evaluations, two seeds.

    Seed k's increases at step s: proxy ``(var + 0.02 k) s / 5``, ground truth ``(var / 2 + 0.04 k) s / 5``.
    """
    metrics = {
        "num_prompts": 4,
        "samples_per_prompt": 2,
        "variance_estimator": "population (Definition 2)",
        "reward_models": {
            name: {"reward_variance": _ci(var), "on_policy_accuracy": _ci(on), "off_policy_accuracy": _ci(off)}
            for name, (var, on, off) in MODELS.items()
        },
    }
    (run_dir / "evaluate").mkdir(parents=True)
    (run_dir / "evaluate" / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "evaluate" / "variance_vs_accuracy.png").write_bytes(PNG)
    for name, (var, _, _) in MODELS.items():
        for k in range(seeds):
            records = [
                {
                    "event": "eval",
                    "step": s,
                    "proxy_increase": (var + 0.02 * k) * s / 5,
                    "ground_truth_increase": (var / 2 + 0.04 * k) * s / 5,
                    "kl": 0.01 * s,
                }
                for s in STEPS
            ]
            path = run_dir / "rl" / name / f"seed{k}" / "metrics.jsonl"
            path.parent.mkdir(parents=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def test_tables_by_hand(tmp_path: Path) -> None:
    analysis = analyze(make_run(tmp_path / "run"), table_eval=1)
    assert analysis["table_step"] == 5
    rows = {row["reward_model"]: row for row in analysis["table"]}
    assert list(rows) == list(MODELS)  # trained models, then the low-variance one and the ground truth
    for name, (var, on, off) in MODELS.items():
        row = rows[name]
        assert (row["reward_variance"], row["on_policy_accuracy"], row["off_policy_accuracy"]) == (var, on, off)
        # Mean and population std over the two seeds at step 5.
        assert row["increase_proxy"] == pytest.approx(var + 0.01)
        assert row["increase_proxy_std"] == pytest.approx(0.01)
        assert row["increase_ground_truth"] == pytest.approx(var / 2 + 0.02)
        assert row["increase_ground_truth_std"] == pytest.approx(0.02)
    # Table 2 over the four proxies, the ground truth left out: both increases grow linearly with the variance.
    variance = analysis["correlations"]["reward_variance"]
    for increase in ("increase_proxy", "increase_ground_truth"):
        assert variance[increase]["n"] == 4
        assert variance[increase]["pearson"] == pytest.approx(1.0)
        assert variance[increase]["spearman"] == pytest.approx(1.0)
    assert analysis["curves"]["rm_b"]["kl"]["mean"] == pytest.approx([0.0, 0.05, 0.1])
    # Every seed's increase at step 5 is kept for the tests; seed k of rm_b: ground truth 0.3 / 2 + 0.04 k.
    assert analysis["per_seed"]["rm_b"]["increase_ground_truth"] == pytest.approx([0.15, 0.19])
    # The findings are the tests' sentences: no rm_100/rm_0 here, so no on-policy variance gap; the low-variance
    # model (ground truth 0.005 + 0.04 k) against the ground truth (0.2 + 0.04 k): each seed std 0.04 / sqrt(2), so
    # Welch t = -0.195 / 0.0283 = -6.89 with 2 df, one-sided p = 0.0102.
    tests = {t["claim"]: t for t in analysis["tests"]}
    assert len(tests) == 6 and not any("on-policy reward model induced" in c for c in tests)
    low = tests[
        "the perfectly accurate low-variance reward model raised the ground truth less than the ground truth itself"
    ]
    assert low["p_value"] == pytest.approx(0.0102, abs=1e-4)
    assert low["verdict"] == "reproduces"
    assert analysis["findings"][0].startswith("After 5 RL steps, the perfectly accurate low-variance")
    assert analysis["findings"][0].endswith(": reproduces.")
    # Table 2 with uncertainty: the ground-truth increase grows with the variance over the 4 proxies, so the exact
    # permutation p-value of Spearman 1 is 1 / 4! = 1/24.
    cell = analysis["correlation_tests"]["reward_variance"]["increase_ground_truth/spearman"]
    assert cell["estimate"] == pytest.approx(1.0)
    assert cell["p_positive"] == pytest.approx(1 / 24)


def test_what_the_run_directory_must_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no evaluate/metrics\.json; is it a `rmteacher study` run directory"):
        analyze(tmp_path)
    run = make_run(tmp_path / "run")
    with pytest.raises(ValueError, match=r"--table-eval 3: the runs have evaluations 1\.\.2 after step 0"):
        analyze(run, table_eval=3)
    for path in (run / "rl" / "rm_b").glob("seed*/metrics.jsonl"):
        path.unlink()
    with pytest.raises(ValueError, match="no RL runs for 'rm_b' under rl/rm_b/"):
        analyze(run)


def test_write_report_and_the_command(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    write_report(run, analyze(run, table_eval=2))
    for name in ("analysis.json", "table1.csv", "table2_input.csv", "fig_reward_increase.png",
                 "fig_ground_truth_vs_kl.png", "report.md", "report.html"):  # fmt: skip
        assert (run / name).stat().st_size > 0, name
    assert "ground_truth," not in (run / "table2_input.csv").read_text()  # Table 2's input: proxies only
    report = (run / "report.md").read_text()
    assert "## Table 1 analogue" in report and "| Perfectly acc. low var." in report
    assert (run / "report.html").read_text().count("data:image/png;base64,") == 3
    before = report
    (run / "report.md").unlink()
    assert design_of(run) == "reward-models"  # no study.json: the Section 4.1 report, at the study's default eval 2
    printed = run_report(ReportConfig(run_dir=run))
    assert printed.splitlines()[-1] == f"Report: {run / 'report.md'}, {run / 'report.html'}"
    assert (run / "report.md").read_text() == before
    assert printed.startswith("After 10 RL steps")
    # The study's own --table-eval, from its study.json; an explicit one wins.
    (run / "study.json").write_text(json.dumps({"design": "reward-models", "table_eval": 1}))
    assert run_report(ReportConfig(run_dir=run)).startswith("After 5 RL steps")
    assert run_report(ReportConfig(run_dir=run, table_eval=2)).startswith("After 10 RL steps")


def test_findings_open_with_the_verdict_table_and_state_their_power(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", seeds=3)
    # rm_a's variance raised above rm_b's: the increases (which follow the old variances) now rank the four proxies
    # with Spearman 0.8, p = 4/24 over the 4! orderings: inconclusive, and no number of seeds can change that.
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    metrics["reward_models"]["rm_a"]["reward_variance"] = _ci(0.45)
    (run / "evaluate" / "metrics.json").write_text(json.dumps(metrics))
    analysis = analyze(run, table_eval=2)
    write_report(run, analysis)
    report = (run / "report.md").read_text()
    findings = report.split("## Findings\n\n", 1)[1]
    assert findings.startswith("| claim ")  # the table first, the prose after it
    rows = [line for line in findings.split("\n\n", 1)[0].splitlines()[2:]]
    assert len(rows) == len(analysis["tests"]) == 6
    inconclusive = [t for t in analysis["tests"] if t["verdict"] == "inconclusive at this budget"]
    assert [t["label"] for t in inconclusive][:1] == ["reward variance predicts the proxy increase"]
    assert inconclusive[0]["power"]["status"] == "not by seeds"
    assert "with 4 reward models the permutation test needs Spearman >= 1.00" in inconclusive[0]["sentence"]
    for test in analysis["tests"]:
        assert (test["power"] is not None) == (test in inconclusive), test["claim"]
    for test in inconclusive:
        assert test["power"]["status"] in ("reached", "beyond", "other way", "not by seeds")
        assert any(s in test["sentence"] for s in ("power with", "other way", "cannot decide it", "more than"))
    assert "Machine: not recorded" in report  # no machine.json in this hand-made run
    assert "<td style='background:#d4edda'>reproduces</td>" in (run / "report.html").read_text()


def add_sgd_arm(run_dir: Path, increases: dict[str, list[float]], learning_rate: float = 1e-3) -> None:
    """The plain-SGD arm as the study leaves it: ``rl-sgd/<model>/seed<k>/`` with evaluations at steps 0 and 5."""
    for name, values in increases.items():
        for k, value in enumerate(values):
            directory = run_dir / "rl-sgd" / name / f"seed{k}"
            directory.mkdir(parents=True)
            records = [{"event": "eval", "step": s, "proxy_increase": 0.0, "ground_truth_increase": v, "kl": 0.0}
                       for s, v in ((0, 0.0), (5, value))]  # fmt: skip
            (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            (directory / "config.json").write_text(json.dumps({"learning_rate": learning_rate, "optimizer": "sgd"}))


def test_the_sgd_arm_by_hand(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    # The best trained model of the AdamW runs at step 5: ground truth var / 2 + 0.02 on average, rm_c (var 0.5).
    assert best_trained(run, ["rm_a", "rm_b", "rm_c"], 1) == "rm_c"
    without = analyze(run, table_eval=1)
    assert "sgd" in without and without["sgd"] is None
    # Low-variance [0.0, 0.02] against the ground truth [0.05, 0.07]: equal stds 0.01414, Welch t = -0.05 / 0.01414
    # = -3.536 with 2 df, one-sided p = 0.0357; against rm_c [0.01, 0.03]: t = -0.707, p = 0.276.
    add_sgd_arm(run, {"ground_truth_scaled": [0.0, 0.02], "ground_truth": [0.05, 0.07], "rm_c": [0.01, 0.03]})
    analysis = analyze(run, table_eval=1)
    sgd = analysis["sgd"]
    assert sgd["learning_rate"] == 1e-3 and sgd["step"] == 5
    assert {r["reward_model"]: r["increase_ground_truth"] for r in sgd["table"]} == pytest.approx(
        {"ground_truth": 0.06, "ground_truth_scaled": 0.01, "rm_c": 0.02}
    )
    tests = {t["label"]: t for t in analysis["tests"]}
    truth = tests["low-variance model < ground truth (SGD)"]
    assert truth["p_value"] == pytest.approx(0.0357, abs=1e-4) and truth["verdict"] == "reproduces"
    assert truth["claim"].endswith("under plain SGD at learning rate 0.001 without clipping (the theory's setting)")
    best = tests["low-variance model < best trained (rm_c) (SGD)"]
    assert best["p_value"] == pytest.approx(0.276, abs=1e-3)
    assert best["details"]["bonferroni"] == 1  # picked by the AdamW runs, not by these
    assert "(rm_c, ranked best by the AdamW runs)" in best["claim"] and "highest mean of 1" not in best["sentence"]
    assert best["verdict"] == "inconclusive at this budget" and best["power"] is not None
    assert any(s.startswith("After 5 RL steps under plain SGD at learning rate 0.001") for s in analysis["findings"])
    # The AdamW arm's tests are unchanged by the SGD arm's.
    assert len(analysis["tests"]) == 6 + 2
    write_report(run, analysis)
    report = (run / "report.md").read_text()
    assert "## The theory's setting: plain SGD" in report
    assert "+0.060 ± 0.010" in report
    # An SGD arm without the findings' step is refused.
    add_sgd_arm(tmp_path / "other", {"ground_truth": [0.1]})
    shutil.copytree(tmp_path / "other" / "rl-sgd" / "ground_truth", run / "rl-sgd" / "ground_truth_x")
    with pytest.raises(ValueError, match=r"not at step 10"):
        analyze(run, table_eval=2)
