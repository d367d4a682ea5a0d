"""examples/real_model_study.py, piece by piece (its full run takes minutes on SmolLM2): options, data, resuming,
the analysis and report on hand-made results, and its evaluate and RL stages on a tiny ChatML model."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "real_model_study.py"


@pytest.fixture(scope="module")
def study() -> ModuleType:
    spec = importlib.util.spec_from_file_location("real_model_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_model_study"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--seeds", "1"], "--seeds 1: must be at least 2"),
        (["--max-steps", "0"], "--max-steps 0: must be at least 1"),
        (["--learning-rate", "2"], r"--learning-rate 2.0: must be in \(0, 1\)"),
        (["--cpu-threads", "0"], "--cpu-threads 0: must be at least 1"),
    ],
)
def test_bad_options_exit_2(
    study: ModuleType, argv: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as error:
        study.parse_args(["--policy", "p", "--out", str(tmp_path), *argv])
    assert error.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_sizes(study: ModuleType, tmp_path: Path) -> None:
    args = study.parse_args(["--policy", "p", "--out", str(tmp_path), "--quick", "--seeds", "3", "--max-steps", "2"])
    size = study.size_of(args)
    assert (size.seeds, size.rl_max_steps, size.teachers) == (3, 2, ("verifier", "partial_credit", "brevity"))
    full = study.size_of(study.parse_args(["--policy", "p", "--out", str(tmp_path)]))
    assert full.teachers == tuple(study.TEACHERS)


def test_data_is_deterministic(study: ModuleType, tmp_path: Path) -> None:
    size = study.SIZES["quick"]
    first = {k: p.read_text() for k, p in study.make_data(tmp_path / "a", size, 5).items()}
    again = {k: p.read_text() for k, p in study.make_data(tmp_path / "b", size, 5).items()}
    assert first == again
    train = [json.loads(line) for line in first["train"].splitlines()]
    pairs = [json.loads(line) for line in first["pairs"].splitlines()]
    assert len(train) == size.num_train
    assert len(first["heldout"].splitlines()) == size.num_heldout
    assert [p["prompt_id"] for p in pairs] == [r["prompt_id"] for r in train]


def fake_metrics(teachers: tuple[str, ...], scores: list[float]) -> dict[str, Any]:
    def entry(variance: float, accuracy: float) -> dict[str, Any]:
        return {
            "reward_variance": {"estimate": variance, "low": variance - 0.1, "high": variance + 0.1},
            "on_policy_accuracy": {"estimate": accuracy},
            "off_policy_accuracy": {"estimate": 1.0},
            "zero_variance_prompts": 0.25,
        }

    models = {t: entry(s, 0.5) for t, s in zip(teachers, scores, strict=True)}
    models["ground_truth"] = entry(0.7, 1.0)
    order = [t for _, t in sorted(zip(scores, teachers, strict=True), reverse=True)]
    return {
        "reward_models": models,
        "ranking": {"criterion": "reward_variance", "order": order, "score": {t: {"estimate": s} for t, s in
                                                                               zip(teachers, scores, strict=True)}},
        "finished_share": 0.8,
    }  # fmt: skip


def fake_results(teachers: tuple[str, ...], means: list[float], seeds: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    results = []
    for teacher, mean in zip(teachers, means, strict=True):
        for seed in range(seeds):
            gt = mean + 0.01 * rng.standard_normal()
            final = {"ground_truth_increase": gt, "proxy_increase": 2 * gt, "kl": 0.1}
            initial = {"ground_truth_increase": 0.0, "proxy_increase": 0.0, "kl": 0.0}
            results.append({"teacher": teacher, "seed": seed, "seconds": 10.0, "initial": initial, "final": final})
    return results


@pytest.mark.parametrize(("direction", "expected"), [(1, "reproduces"), (-1, "does not reproduce")])
def test_analysis_tests_whether_the_ranking_predicts_the_increase(
    study: ModuleType, tmp_path: Path, direction: int, expected: str
) -> None:
    size = study.SIZES["full"]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    means = [direction * s for s in scores]  # the increase follows (or reverses) the ranking exactly
    analysis = study.analyse(fake_metrics(size.teachers, scores), fake_results(size.teachers, means, 3), size)
    ranking, variance = analysis["findings"][0], analysis["findings"][1]
    assert ranking["verdict"] == expected
    assert ranking["test"]["estimate"] == pytest.approx(direction * 1.0)
    assert ranking["test"]["p_positive" if direction > 0 else "p_negative"] == pytest.approx(1 / 120)  # exact, 5!
    assert variance["verdict"] == expected  # the variances are the scores here
    low_variance = analysis["findings"][-1]
    assert "low-variance reward model raised the ground truth less" in low_variance["claim"]
    assert [r["teacher"] for r in analysis["table1"]] == [*size.teachers, "ground_truth"]
    row = analysis["rl"][0]
    assert row["ground_truth_increase_mean"] == pytest.approx(direction * 0.9, abs=0.03)
    args = study.parse_args(["--policy", "p", "--out", str(tmp_path)])
    text = study.report(analysis, args, size, {"finished_share": 0.8, "rl_seconds": 150.0})
    assert f"**{expected}**" in text
    assert "| verifier | 1 | 0.900 |" in text


def test_finished_stages_are_skipped(study: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*a: Any, **k: Any) -> float:
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(study, "run_cli", fail)
    args = study.parse_args(["--policy", "p", "--out", str(tmp_path), "--quick"])
    size = study.size_of(args)
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "evaluate" / "metrics.json").write_text(json.dumps({"done": 1}))
    run = tmp_path / "rl" / "verifier" / "seed0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"teacher": "verifier", "seed": 0}))
    assert study.evaluate(args, size, {}) == {"done": 1}
    assert study.rl_run(args, size, {}, "verifier", 0) == {"teacher": "verifier", "seed": 0}


def test_a_failed_stage_stops_with_its_log(study: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"rmteacher no-such-command failed \(exit 2\); its log"):
        study.run_cli(["no-such-command"], log_file=tmp_path / "log")


@pytest.mark.slow
def test_evaluate_and_one_rl_run_on_a_tiny_chatml_policy(study: ModuleType, zoo: Any, tmp_path: Path) -> None:
    """The two stages through the real CLI, at the quick size, on the zoo's Qwen2 (ChatML) policy: evaluate ranks
    every candidate; an RL run trains on its normalization and leaves result.json, its policy/ and checkpoints
    deleted."""
    out = tmp_path / "study"
    policy = str(zoo.policies["qwen2"])
    args = study.parse_args(["--policy", policy, "--out", str(out), "--quick", "--cpu-threads", "1"])
    size = study.size_of(args)
    data = study.make_data(out, size, args.data_seed)
    metrics = study.evaluate(args, size, data)
    assert set(metrics["ranking"]["order"]) == set(study.TEACHERS)
    result = study.rl_run(args, size, data, "partial_credit", 0)
    assert result["final"]["step"] == size.rl_max_steps
    assert np.isfinite(result["final"]["ground_truth_increase"])
    run = out / "rl" / "partial_credit" / "seed0"
    assert (run / "result.json").exists() and not (run / "policy").exists()
    assert not list(run.glob("checkpoint-*"))
    config = json.loads((run / "config.json").read_text())
    assert str(config["normalization"]) == str(out / "evaluate")


def test_an_out_directory_of_other_settings_is_refused(
    study: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = study.parse_args(["--policy", "p", "--out", str(tmp_path), "--quick"])
    path = tmp_path / "study.json"
    study.check_same_study(path, study.study_identity(args, study.size_of(args)))
    more_seeds = study.parse_args(["--policy", "p", "--out", str(tmp_path), "--quick", "--seeds", "4"])
    study.check_same_study(path, study.study_identity(more_seeds, study.size_of(more_seeds)))  # allowed
    other = study.parse_args(["--policy", "p", "--out", str(tmp_path), "--quick", "--learning-rate", "2e-5"])
    with pytest.raises(SystemExit) as error:
        study.check_same_study(path, study.study_identity(other, study.size_of(other)))
    assert error.value.code == 2
    assert "holds a study with other settings (options.learning_rate)" in capsys.readouterr().err
