"""What the training commands share (rmteacher.training.runs): the divergence guard, on hand-made models and logs."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rmteacher.rundir import read_jsonl
from rmteacher.training.runs import divergence_guard, first_non_finite, metrics_logger


def test_first_non_finite_names_the_first_bad_parameter() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    assert first_non_finite(model) is None
    with torch.no_grad():
        model[1].bias[0] = float("inf")
        assert first_non_finite(model) == "1.bias"
        model[0].weight[1, 2] = float("nan")
    assert first_non_finite(model) == "0.weight"


def test_the_guard_stops_on_non_finite_weights_or_logs_naming_the_step() -> None:
    guard, state = divergence_guard("rl"), SimpleNamespace(global_step=7)
    model = torch.nn.Linear(2, 2)
    guard.on_step_end(None, state, None, model=model)  # finite: nothing happens
    guard.on_log(None, state, None, logs={"loss": 0.5, "grad_norm": 1.0})
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"diverged at step 7 \(weight weight is not finite\); rl stopped"):
        guard.on_step_end(None, state, None, model=model)
    for key in ("loss", "grad_norm", "train_loss"):
        with pytest.raises(FloatingPointError, match=rf"diverged at step 7 \({key} = inf\)"):
            guard.on_log(None, state, None, logs={key: float("inf")})


def test_the_metrics_log_marks_resumes_and_the_trainers_closing_summary(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    logger = metrics_logger(path, resumed_from=str(tmp_path / "checkpoint-2"))
    state = SimpleNamespace(global_step=2, is_world_process_zero=True)
    logger.on_train_begin(None, state, None)
    state.global_step = 4
    logger.on_log(None, state, None, logs={"loss": 0.5})
    logger.on_log(None, state, None, logs={"train_runtime": 1.0, "train_loss": 0.6})
    path.write_text(path.read_text() + '{"step": 5, "lo')  # a kill while appending
    records = [{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(path)]
    assert records == [
        {"event": "resume", "checkpoint": "checkpoint-2", "step": 2},
        {"step": 4, "loss": 0.5},
        {"event": "summary", "step": 4, "train_runtime": 1.0, "train_loss": 0.6},
    ]
