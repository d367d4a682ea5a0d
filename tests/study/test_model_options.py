"""The study hands its --dtype and --device-map to the evaluate and RL stages of both designs, and its own
learning rate and completion length (not rl's defaults for a user's policy) to RL; --dtype enters the stages'
fingerprints only when given. The stages' work is replaced by recorders that stop the study at its first RL run."""

import json
from pathlib import Path
from typing import Any

import pytest

import rmteacher.evaluate
import rmteacher.study.policies
import rmteacher.training.rl
from rmteacher.cli import main
from rmteacher.sandbox import SandboxTask
from rmteacher.study import StudyConfig, study_policies, study_reward_models
from rmteacher.study.stages import dtype_input


class FirstRLRun(Exception):
    """Raised by the recording train_rl: the study stops there."""


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    calls: dict[str, list[Any]] = {"evaluate": [], "rl": []}

    def evaluate(config: Any) -> dict[str, Any]:
        calls["evaluate"].append(config)
        return {}

    def train_rl(config: Any, **kwargs: Any) -> dict[str, Any]:
        calls["rl"].append(config)
        raise FirstRLRun

    monkeypatch.setattr(rmteacher.evaluate, "evaluate", evaluate)
    monkeypatch.setattr(rmteacher.training.rl, "train_rl", train_rl)
    monkeypatch.setattr(rmteacher.study.policies, "fine_tune", lambda rows, **kwargs: None)
    return calls


def check(calls: dict[str, list[Any]]) -> None:
    assert calls["evaluate"] and len(calls["rl"]) == 1
    for config in [*calls["evaluate"], *calls["rl"]]:
        assert (config.dtype, config.device_map) == ("bfloat16", "cpu"), type(config).__name__
    rl = calls["rl"][0]
    assert (rl.learning_rate, rl.max_new_tokens) == (5e-5, 16)  # the study's own defaults, not TRL's


def test_reward_models_design_passes_dtype_and_device_map(
    tmp_path: Path, sandbox_task: SandboxTask, recorded: dict[str, list[Any]]
) -> None:
    config = StudyConfig(out=tmp_path / "study", reward_model=["a=m:a", "b=m:b"], dtype="bfloat16", device_map="cpu",
                         quick=True, progress=False)  # fmt: skip
    with pytest.raises(FirstRLRun):
        study_reward_models(config, policy=str(sandbox_task.policy_dir), prompts=sandbox_task.train_prompts,
                            eval_prompts=sandbox_task.eval_prompts, ground_truth="m:truth")  # fmt: skip
    check(recorded)
    stage = json.loads((tmp_path / "study" / "evaluate" / "stage.json").read_text())
    assert stage["inputs"]["dtype"] == "bfloat16"


def test_policies_design_passes_dtype_and_device_map(
    tmp_path: Path, sandbox_task: SandboxTask, recorded: dict[str, list[Any]]
) -> None:
    config = StudyConfig(out=tmp_path / "study", design="policies", dtype="bfloat16", device_map="cpu", quick=True,
                         progress=False)  # fmt: skip
    with pytest.raises(FirstRLRun):
        study_policies(config, task=sandbox_task, prompts=sandbox_task.train_prompts,
                       eval_prompts=sandbox_task.eval_prompts, pairs=sandbox_task.pairs,
                       ground_truth="m:truth")  # fmt: skip
    check(recorded)


def test_dtype_is_a_stage_input_only_when_given(tmp_path: Path) -> None:
    assert dtype_input(StudyConfig(out=tmp_path)) == {}
    assert dtype_input(StudyConfig(out=tmp_path, dtype="float16")) == {"dtype": "float16"}


def test_study_refuses_a_bad_dtype(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "--out", str(tmp_path / "s"), "--dtype", "int8"])
    assert exit_info.value.code == 2
    assert "argument --dtype: 'int8' is not one of auto, bfloat16, float16, float32" in capsys.readouterr().err
