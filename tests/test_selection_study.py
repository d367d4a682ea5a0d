"""examples/selection_study.py end to end, tiny: selects on the sandbox with the exact-match reward, trains both arms
for two seeds, writes results with the seeds' tests, and records that `rl --resume` refuses a new prompts file."""

import importlib.util
import json
from pathlib import Path

import pytest

from rmteacher.sandbox import SandboxTask

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "selection_study.py"


def test_study_runs_and_reports(tmp_path: Path, sandbox_task: SandboxTask) -> None:
    spec = importlib.util.spec_from_file_location("selection_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    out = tmp_path / "study"
    study.main([
        "--out", str(out), "--pool", "80", "--selection-samples", "4", "--seeds", "0", "1", "--max-steps", "2",
        "--prompts-per-step", "2", "--samples-per-prompt", "2", "--eval-num-prompts", "4", "--eval-samples", "2",
        "--try-reselect",
    ])  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["pool"] == 80 and 2 <= results["selected"] < 80
    assert [r["seed"] for r in results["runs"]["selected"]] == [0, 1]
    assert all(r["steps"] == 2 for arm in results["runs"].values() for r in arm)
    test = results["comparison"]["ground_truth_increase"]["test_all_less_than_selected"]
    assert test["test"] == "one-sided Welch t-test" and 0 <= test["p_value"] <= 1
    assert results["reselect"]["worked"] is False and "holds a different rl run" in results["reselect"]["error"]
    assert "| seed | arm |" in (out / "results.md").read_text()
