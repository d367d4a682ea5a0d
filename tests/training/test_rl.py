"""`rmteacher rl` end to end on the sandbox task, a few steps each: the update happens, the logs hold the named
metrics, the ground truth is logged without touching the update, the low-variance construction scales exactly the
chosen prompts, resume after SIGKILL, two processes, and bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from rmteacher.cli import main
from rmteacher.metrics import NormalizationStats, select_prompts
from rmteacher.sandbox import GROUND_TRUTH, SandboxTask
from rmteacher.training.rl import training_reward

pytestmark = pytest.mark.slow

SMALL = ["--max-steps", "4", "--eval-every", "2", "--save-every", "2", "--eval-num-prompts", "8", "--eval-samples",
         "2", "--prompts-per-step", "4", "--samples-per-prompt", "2", "--no-progress"]  # fmt: skip


def rl(out: Path, *extra: str) -> int:
    return main(["rl", "--out", str(out), *SMALL, *extra])


def sandbox_inputs(task: SandboxTask, *, ground_truth: bool = True, reward: str | None = None) -> list[str]:
    """The sandbox's inputs spelled out: given one input, a command needs them all (no silent sandbox fill-in). A
    policy given is the user's, which gets TRL's learning rate and completion length: the sandbox's are given too."""
    args = ["--policy", str(task.policy_dir), "--prompts", str(task.train_prompts), "--learning-rate", "5e-5",
            "--max-new-tokens", "16"]  # fmt: skip
    args += ["--eval-prompts", str(task.eval_prompts), "--reward-model", reward or f"perfect={GROUND_TRUTH}"]
    return args + (["--ground-truth", GROUND_TRUTH] if ground_truth else [])


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(directory: Path) -> dict[str, np.ndarray]:
    return load_file(str(directory / "model.safetensors"))


@pytest.fixture(scope="module")
def run(sandbox_task: SandboxTask, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rl") / "run"
    assert rl(out) == 0
    return out


def test_parameters_change_and_logs_hold_the_metrics(sandbox_task: SandboxTask, run: Path) -> None:
    before, after = weights(sandbox_task.policy_dir), weights(run / "policy")
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    train = [r for r in records(run) if r["event"] == "train" and "reward" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    for key in ("rewards/proxy/mean", "rewards/ground_truth/mean", "reward_variance/within_prompt",
                "reward_variance/zero_variance_prompts", "kl"):  # fmt: skip
        assert all(np.isfinite(r[key]) for r in train), key
    evals = [r for r in records(run) if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [0, 2, 4]
    assert evals[0]["proxy_increase"] == 0.0
    assert evals[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert all("ground_truth_increase" in r and np.isfinite(r["kl"]) for r in evals)
    assert (run / "initial.json").exists()
    assert list(run.glob("checkpoint-*"))
    assert list(run.rglob("events.out.tfevents.*")), "TensorBoard logs"


def test_ground_truth_is_logged_but_does_not_change_the_update(
    run: Path, tmp_path: Path, sandbox_task: SandboxTask
) -> None:
    assert rl(tmp_path / "no_gt", *sandbox_inputs(sandbox_task, ground_truth=False)) == 0
    with_gt, without = weights(run / "policy"), weights(tmp_path / "no_gt" / "policy")
    for key, value in with_gt.items():
        np.testing.assert_array_equal(value, without[key], err_msg=key)
    assert not any("rewards/ground_truth/mean" in r for r in records(tmp_path / "no_gt"))


def test_low_variance_construction_scales_exactly_the_chosen_prompts() -> None:
    class Constant:
        name = "c"

        def score(self, prompts: list[str], completions: list[str], **kwargs: object) -> np.ndarray:
            return np.array([float(len(c)) for c in completions])

    fn = training_reward(Constant(), NormalizationStats(mean=1.0, std=2.0), factor=1e-3, name="proxy")
    values = fn(prompts=["a", "b", "c"], completions=["xxx", "xxx", "x"], prompt_id=[0, 1, 2],
                scaled=[False, True, True])  # fmt: skip
    assert values == pytest.approx([1.0, 1e-3, 0.0])


def test_scaled_flags_in_a_run(tmp_path: Path, sandbox_task: SandboxTask) -> None:
    out = tmp_path / "scaled"
    assert rl(out, "--scale-fraction", "0.5", "--scale-factor", "0.001", "--max-steps", "2") == 0
    prompts = pd.read_json(sandbox_task.train_prompts, lines=True)
    config = json.loads((out / "config.json").read_text())
    assert config["scale_fraction"] == 0.5
    chosen = select_prompts(len(prompts), 0.5, seed=8122)
    assert len(chosen) == len(prompts) // 2


def test_resume_after_sigkill_matches_uninterrupted(tmp_path: Path, run: Path, sandbox_task: SandboxTask) -> None:
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rmteacher.cli", "rl", "--out", str(out), *SMALL]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (out / "checkpoint-2" / "trainer_state.json").exists() and time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"run ended before the kill: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "policy").exists(), "killed before the end"
    logged = len(records(out))
    assert main(["rl", "--out", str(out), *SMALL]) == 2  # refuses without --resume
    assert main(["rl", "--out", str(out), *SMALL, "--resume"]) == 0
    assert len(records(out)) > logged  # appended, not truncated
    final = [r for r in records(out) if r["event"] == "eval"][-1]
    reference = [r for r in records(run) if r["event"] == "eval"][-1]
    assert final["step"] == reference["step"] == 4
    # Same seed and the trainer's saved RNG state: the resumed run ends where the uninterrupted one did.
    assert final["ground_truth_increase"] == pytest.approx(reference["ground_truth_increase"], abs=0.05)


def test_sgd_step_is_the_learning_rate_times_the_gradient(tmp_path: Path) -> None:
    """--optimizer sgd (the paper's theory): one step moves the weights by lr x the gradient, whose norm TRL logs;
    --max-grad-norm 1 clips that norm to 1, and 0 turns clipping off."""
    one_step = ["--optimizer", "sgd", "--learning-rate", "0.01", "--max-steps", "1", "--eval-every", "1"]
    for name, clip in (("free", "0"), ("clipped", "1")):
        assert rl(tmp_path / name, *one_step, "--max-grad-norm", clip) == 0
    before = weights(Path(json.loads((tmp_path / "free" / "config.json").read_text())["policy"]))

    def moved(name: str) -> float:
        after = weights(tmp_path / name / "policy")
        return float(np.sqrt(sum(((after[k] - before[k]).astype(np.float64) ** 2).sum() for k in before)))

    grad_norm = next(r["grad_norm"] for r in records(tmp_path / "free") if "grad_norm" in r)
    assert grad_norm > 1.5  # so that clipping at 1 bites
    assert moved("free") == pytest.approx(0.01 * grad_norm, rel=1e-3)
    assert moved("clipped") == pytest.approx(0.01 * 1.0, rel=1e-3)


def test_bad_input(tmp_path: Path, run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rl(run, "--temperature", "0.5") == 2
    assert "holds a different rl run: temperature (1.0 there, 0.5 now)" in capsys.readouterr().err
    assert rl(tmp_path / "x", "--scale-fraction", "1.5") == 2
    assert "--scale-fraction must be in [0, 1]; got 1.5" in capsys.readouterr().err
    assert rl(tmp_path / "x", "--max-grad-norm", "-1") == 2
    assert "--max-grad-norm must be a finite number >= 0 (0: no clipping); got -1.0" in capsys.readouterr().err
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "notes.txt").write_text("mine")
    assert rl(tmp_path / "z") == 2
    assert "holds files that are not an rmteacher run (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "z" / "notes.txt").read_text() == "mine"


def test_normalization_from_another_policy_is_an_error(
    tmp_path: Path, sandbox_task: SandboxTask, capsys: pytest.CaptureFixture[str]
) -> None:
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "config.json").write_text(json.dumps({"resolved_inputs": {"policy": "/elsewhere/policy"}}))
    (evaluation / "metrics.json").write_text(json.dumps({"reward_models": {}, "specs": {}}))
    assert rl(tmp_path / "run", "--normalization", str(evaluation)) == 2
    err = capsys.readouterr().err
    assert "statistics of policy '/elsewhere/policy'" in err
    assert str(sandbox_task.policy_dir) in err


def test_nan_reward_stops_with_step_and_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sandbox_task: SandboxTask
) -> None:
    (tmp_path / "nan_reward.py").write_text(
        "from rmteacher.sandbox import ground_truth\n"
        "def late_nan(prompts, completions, trainer_state=None, **kwargs):\n"
        "    if trainer_state is not None and trainer_state.global_step >= 2:\n"
        "        return [float('nan')] * len(completions)\n"
        "    return ground_truth(prompts, completions)\n"
        "def always_nan(prompts, completions, **kwargs):\n"
        "    return [float('nan')] * len(completions)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    assert rl(out, *sandbox_inputs(sandbox_task, reward="bad=nan_reward:late_nan")) == 2
    err = capsys.readouterr().err
    assert "reward 'bad' returned nan at step 3 for prompt_id=" in err
    assert (out / "checkpoint-2").is_dir(), "the last checkpoint is kept"
    assert rl(tmp_path / "run2", *sandbox_inputs(sandbox_task, reward="bad=nan_reward:always_nan")) == 2
    assert "reward 'bad' returned nan for evaluation_prompt=0, sample_id=0" in capsys.readouterr().err


def test_two_processes(tmp_path: Path, sandbox_task: SandboxTask) -> None:
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu", "--num_machines",
               "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rmteacher.cli", "rl", "--out",
               str(out), *SMALL, "--max-steps", "2"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("RLOO for 2 steps") == 1
    assert [r["step"] for r in records(out) if r["event"] == "train" and "reward" in r] == [1, 2]


def test_trls_closing_line_is_the_summary_not_a_step(run: Path) -> None:
    rows = records(run)
    summaries = [r for r in rows if r["event"] == "summary"]
    assert len(summaries) == 1 and "train_runtime" in summaries[0]
    assert all("train_runtime" not in r for r in rows if r["event"] == "train")
