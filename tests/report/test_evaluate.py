"""evaluate's figure: intervals over very few prompts may lie on one side of their estimate."""

from pathlib import Path

from rmteacher.report.evaluate import scatter_variance_accuracy


def test_scatter_accepts_an_interval_that_excludes_its_estimate(tmp_path: Path) -> None:
    interval = {"estimate": 0.5, "low": 0.6, "high": 0.9, "confidence": 0.95}  # 2 prompts: percentile CI off-centre
    result = {"reward_models": {"a": {"reward_variance": interval, "on_policy_accuracy": interval}}}
    scatter_variance_accuracy(result, tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 0
