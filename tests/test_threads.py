"""Torch threads on a CPU (issue 13): every command that runs torch has `--cpu-threads`, default 1, with one help
line and one check. That evaluate runs under the count it is given: tests/evaluate/test_pipeline.py."""

import dataclasses
from pathlib import Path

import pytest
import torch

from rmteacher.commands.sft import SFTConfig
from rmteacher.evaluate import EvaluateConfig
from rmteacher.study import StudyConfig
from rmteacher.threads import CPU_THREADS_HELP, cpu_threads, torch_threads
from rmteacher.training.reward_model import TrainRMConfig
from rmteacher.training.rl import RLConfig

CONFIGS = [EvaluateConfig, RLConfig, SFTConfig, TrainRMConfig, StudyConfig]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_every_torch_command_has_cpu_threads_default_1(config: type) -> None:
    field = {f.name: f for f in dataclasses.fields(config)}["cpu_threads"]
    assert field.default == 1
    assert field.metadata["help"] == CPU_THREADS_HELP
    required = {f.name: Path("x") for f in dataclasses.fields(config) if f.name == "out"}
    with pytest.raises(ValueError, match=r"--cpu-threads must be >= 0.*; got -1"):
        config(**required, cpu_threads=-1)


def test_cpu_threads_and_the_block_that_sets_them() -> None:
    assert cpu_threads(0) is None  # torch's default
    assert cpu_threads(3) == (None if torch.cuda.is_available() else 3)
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
