"""`rmteacher study --quick` (the paper's Section 4.1) end to end: every table and figure is there, the correlation
table agrees with `rmteacher correlate`, `rmteacher report` regenerates the report from saved results, stages resume;
and how the command resolves its inputs (the built-in sandbox only when none is given)."""

import json
from pathlib import Path

import pytest

from rmteacher.cli import main
from rmteacher.commands.study import resolve_inputs
from rmteacher.sandbox import SandboxTask
from rmteacher.study import StudyConfig, study_reward_models
from rmteacher.study.stages import table_evaluation

QUICK = ["study", "--quick", "--no-progress"]


@pytest.fixture(scope="module")
def study_dir(sandbox_task: SandboxTask, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "run"
    assert main([*QUICK, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_every_table_and_figure_is_there(study_dir: Path) -> None:
    for name in ("report.md", "report.html", "analysis.json", "table1.csv", "table2_input.csv", "timings.json",
                 "fig_reward_increase.png", "fig_ground_truth_vs_kl.png", "evaluate/metrics.json",
                 "evaluate/variance_vs_accuracy.png"):  # fmt: skip
        assert (study_dir / name).stat().st_size > 0, name
    report = (study_dir / "report.md").read_text()
    for heading in ("## Findings", "## Table 1 analogue", "## Table 2 analogue", "## Figures", "## Stage times"):
        assert heading in report
    for model in ("rm_100", "rm_75", "rm_50", "rm_25", "rm_0", "Perfectly acc. low var.", "Ground truth"):
        assert model in report
    html = (study_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # self-contained
    analysis = json.loads((study_dir / "analysis.json").read_text())
    assert len(analysis["table"]) == 7
    assert {c["n"] for cells in analysis["correlations"].values() for c in cells.values()} == {6}
    timings = json.loads((study_dir / "timings.json").read_text())
    assert {"setup", "reward_models", "evaluate", "rl"} <= set(timings)


@pytest.mark.slow
def test_correlation_table_agrees_with_rmteacher_correlate(
    study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["correlate", str(study_dir / "table2_input.csv"), "--json", str(tmp_path / "c.json")]) == 0
    capsys.readouterr()
    correlate = json.loads((tmp_path / "c.json").read_text())
    analysis = json.loads((study_dir / "analysis.json").read_text())["correlations"]
    for row, cells in analysis.items():
        for increase, values in cells.items():
            for kind in ("pearson", "spearman"):
                expected = values[kind]
                got = correlate[row][increase][kind]
                assert (got is None and expected is None) or got == pytest.approx(expected), (row, increase, kind)


@pytest.mark.slow
def test_report_regenerates_from_saved_results(study_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (study_dir / "report.md").read_text()
    (study_dir / "report.md").unlink()
    (study_dir / "report.html").unlink()
    assert main(["report", str(study_dir)]) == 0
    assert "Report:" in capsys.readouterr().out
    assert (study_dir / "report.md").read_text() == before
    assert (study_dir / "report.html").exists()


@pytest.mark.slow
def test_resume_skips_complete_stages_and_redoes_changed_ones(
    study_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def stamps() -> dict[str, float]:
        return {str(p.relative_to(study_dir)): p.stat().st_mtime for p in study_dir.rglob("stage.json")}

    before = stamps()
    assert main([*QUICK, "--out", str(study_dir)]) == 0  # the same study again: every stage is complete
    assert stamps() == before  # nothing redone
    assert main([*QUICK, "--out", str(study_dir), "--rl-steps", "6"]) == 2
    assert "holds a study with different rl_steps; pass --resume" in capsys.readouterr().err
    # Fewer RL steps change the RL stages' inputs only: the reward models and Table 1 are kept.
    assert main([*QUICK, "--out", str(study_dir), "--resume", "--rl-steps", "6"]) == 0
    after = stamps()
    assert after["evaluate/stage.json"] == before["evaluate/stage.json"]
    assert after["reward_models/rm_50/stage.json"] == before["reward_models/rm_50/stage.json"]
    assert after["rl/rm_50/seed0/stage.json"] != before["rl/rm_50/seed0/stage.json"]


def test_report_and_study_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no evaluate/metrics.json" in capsys.readouterr().err
    assert main(["study", "--out", str(tmp_path / "s"), "--table-eval", "9"]) == 2
    assert "--table-eval must be in [1, --rl-evals=6]; got 9" in capsys.readouterr().err
    assert main(["study", "--out", str(tmp_path / "s"), "--design", "policies", "--system-prompt", "Be brief."]) == 2
    assert "--design policies runs on the sandbox's own policies, whose chat template" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    assert main(["study", "--out", str(tmp_path / "other")]) == 2
    assert "not empty and not a study" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- inputs


def test_the_sandbox_only_when_no_input_is_given(
    sandbox_task: SandboxTask, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = resolve_inputs(StudyConfig(out=tmp_path / "run"))
    task = inputs.task  # the session's sandbox_task, unless the library code changed since it was built
    assert task is not None
    assert (inputs.policy, inputs.prompts, inputs.eval_prompts, inputs.pairs, inputs.ground_truth) == (
        str(task.policy_dir),
        task.train_prompts,
        task.eval_prompts,
        task.pairs,
        "rmteacher.sandbox.task:ground_truth",
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "using the built-in sandbox task" in err[0], err
    given = StudyConfig(out=tmp_path / "run", policy="p", prompts=Path("s.jsonl"), eval_prompts=Path("e.jsonl"),
                        ground_truth="pkg.mod:fn")  # fmt: skip
    inputs = resolve_inputs(given)
    assert (inputs.policy, inputs.pairs, inputs.task) == ("p", None, None)
    assert capsys.readouterr().err == ""
    # The study's stages call the ground truth `ground_truth`: a NAME= given is left out, the target kept.
    named = StudyConfig(out=tmp_path / "run", policy="p", prompts=Path("s.jsonl"), eval_prompts=Path("e.jsonl"),
                        ground_truth="gold=pkg.mod:fn")  # fmt: skip
    assert resolve_inputs(named).ground_truth == "pkg.mod:fn"


def test_some_inputs_but_not_all_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="--prompts given without --policy/--eval-prompts/--ground-truth"):
        resolve_inputs(StudyConfig(out=tmp_path / "run", prompts=Path("s.jsonl")))
    with pytest.raises(ValueError, match="--pairs given without --prompts/--eval-prompts/--ground-truth"):
        resolve_inputs(StudyConfig(out=tmp_path / "run", design="policies", pairs=Path("p.jsonl")))
    assert main(["study", "--out", str(tmp_path / "run"), "--ground-truth", "pkg.mod:fn"]) == 2
    assert "--ground-truth given without --policy/--prompts/--eval-prompts" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_too_few_reward_models_to_correlate_are_refused() -> None:
    with pytest.raises(ValueError, match="--reward-model: 1 given; --design reward-models correlates over them and"):
        StudyConfig(reward_model=["a=pkg.mod:a"])
    assert StudyConfig(reward_model=["a=pkg.mod:a", "b=pkg.mod:b"]).reward_model == ["a=pkg.mod:a", "b=pkg.mod:b"]


def test_the_pipeline_takes_its_inputs_explicitly(tmp_path: Path) -> None:
    config = StudyConfig(out=tmp_path / "run")
    with pytest.raises(ValueError, match="study_reward_models: missing input\\(s\\) policy, ground_truth"):
        study_reward_models(config, policy="", prompts=Path("s"), eval_prompts=Path("e"), ground_truth=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="--pairs is needed to train reward models"):
        study_reward_models(config, policy="p", prompts=Path("s"), eval_prompts=Path("e"), ground_truth="g")
    assert not (tmp_path / "run").exists()


def test_a_system_prompt_the_template_rejects_stops_before_any_stage(
    sandbox_task: SandboxTask, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sandbox's chat template has user and assistant roles only: the study stops at once, exit 2, nothing
    written (it used to fail at the reward-model stage, leaving a setup stage behind)."""
    inputs = ["--policy", str(sandbox_task.policy_dir), "--prompts", str(sandbox_task.train_prompts),
              "--eval-prompts", str(sandbox_task.eval_prompts), "--pairs", str(sandbox_task.pairs),
              "--ground-truth", "rmteacher.sandbox.task:ground_truth"]  # fmt: skip
    out = tmp_path / "run"
    assert main([*QUICK, "--out", str(out), *inputs, "--system-prompt", "Be brief."]) == 2
    err = capsys.readouterr().err
    assert "rejected the messages (roles ['system', 'user'])" in err and "drop --system-prompt" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_the_findings_evaluation_defaults_to_the_second_or_the_last() -> None:
    assert table_evaluation(None, 6) == 2  # step 20 of 60
    assert table_evaluation(None, 1) == 1  # --rl-evals 1 alone is not an error about an option not given
    assert table_evaluation(4, 6) == 4
    assert StudyConfig(rl_evals=1).table_eval is None
    with pytest.raises(ValueError, match=r"--table-eval must be in \[1, --rl-evals=1\]; got 2"):
        StudyConfig(rl_evals=1, table_eval=2)
