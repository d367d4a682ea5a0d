"""Issue 12 through the real CLI: a user error is one line and exit code 2, a bug a traceback and exit code 1, files
are written with the user's umask, and no command writes into a directory that is not its own run."""

import json
import os
import re
import stat
from pathlib import Path

import pytest

from rmteacher.rundir import MANIFEST
from rmteacher.sandbox import GROUND_TRUTH, SandboxTask

from .conftest import EXAMPLES, Run


def one_line_error(err: str, command: str) -> str:
    """The CLI's message for a user error: a single `rmteacher COMMAND: error: ...` line, no traceback."""
    lines = [line for line in err.splitlines() if line.startswith(f"rmteacher {command}: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def rl_inputs(task: SandboxTask, reward: str) -> list[str]:
    return ["--policy", str(task.policy_dir), "--prompts", str(task.train_prompts), "--eval-prompts",
            str(task.eval_prompts), "--reward-model", reward, "--ground-truth", GROUND_TRUTH, "--max-steps", "2",
            "--eval-num-prompts", "4", "--eval-samples", "2", "--prompts-per-step", "4", "--samples-per-prompt", "2",
            "--max-new-tokens", "16", "--no-progress"]  # fmt: skip


def test_theory_never_writes_into_a_directory_that_is_not_its_run(tmp_path: Path, cli: Run) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    code, _, err = cli(["theory", "--out", str(tmp_path), "--overwrite", "constructions"])
    assert code == 2
    assert "holds files that are not an rmteacher run (thesis.tex)" in one_line_error(err, "theory")
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]

    other = tmp_path / "evaluate_run"  # another command's run: its config.json is not overwritten
    other.mkdir()
    (other / MANIFEST).write_text(json.dumps({"command": "evaluate", "identity": {}, "status": "complete"}))
    (other / "config.json").write_text('{"mine": true}')
    code, _, err = cli(["theory", "--out", str(other), "constructions"])
    assert code == 2
    assert "holds an rmteacher evaluate run, not a theory run" in one_line_error(err, "theory")
    assert json.loads((other / "config.json").read_text()) == {"mine": True}


def test_out_that_is_a_file_or_cannot_be_made(tmp_path: Path, cli: Run) -> None:
    (tmp_path / "file").write_text("")
    table = ["correlate", str(EXAMPLES / "table10_pythia1b.csv")]
    for out, message in ((tmp_path / "file", "is a file, not a directory"),
                         (tmp_path / "file" / "run", "cannot be created")):  # fmt: skip
        code, _, err = cli(["theory", "--out", str(out), "constructions"])
        assert code == 2
        assert message in one_line_error(err, "theory")
    code, _, err = cli([*table, "--json", str(tmp_path)])
    assert code == 2
    one_line_error(err, "correlate")


@pytest.mark.parametrize(
    ("device", "message"),
    [("banana", "--device 'banana': not a torch device"), ("cuda:7", "--device 'cuda:7': ")],
)
def test_an_unavailable_device_is_a_user_error(tmp_path: Path, cli: Run, device: str, message: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a CUDA device 7")
    argv = ["evaluate", "--out", str(tmp_path / "run"), "--policy", "p", "--prompts", "q.jsonl", "--reward-model",
            f"gt={GROUND_TRUTH}", "--device", device]  # fmt: skip
    code, _, err = cli(argv)
    assert code == 2
    assert message in one_line_error(err, "evaluate")
    assert not (tmp_path / "run").exists()


def test_rl_refuses_what_would_train_nothing_or_on_overflowed_rewards(
    sandbox_task: SandboxTask, tmp_path: Path, cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = cli(["rl", "--out", str(tmp_path / "a"), *rl_inputs(sandbox_task, f"p={GROUND_TRUTH}"),
                        "--prompts-per-step", "100000"])  # fmt: skip
    assert code == 2
    assert "prompts cannot fill one step of --prompts-per-step 100000" in one_line_error(err, "rl")
    assert not (tmp_path / "a").exists(), "a run that failed at start leaves no directory"

    code, _, err = cli(["rl", "--out", str(tmp_path / "b"), *rl_inputs(sandbox_task, f"p={GROUND_TRUTH}"),
                        "--learning-rate", "inf"])  # fmt: skip
    assert code == 2
    assert "--learning-rate must be a finite number > 0; got inf" in one_line_error(err, "rl")

    (tmp_path / "huge_rewards.py").write_text(
        "from rmteacher.sandbox import ground_truth\n"
        "def huge(prompts, completions, **kwargs):\n"
        "    return [1e300 * (2 + v) for v in ground_truth(prompts, completions)]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = cli(["rl", "--out", str(tmp_path / "c"), *rl_inputs(sandbox_task, "big=huge_rewards:huge")])
    assert code == 2
    line = one_line_error(err, "rl")
    assert re.search(r"the proxy reward's normalization statistics are not usable \(mean \S+, std inf", line), line
    assert not (tmp_path / "c" / "checkpoint-1").exists(), "no step was taken"

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "metrics.json").write_text("{}")
    (damaged / "config.json").write_text("{}")
    code, _, err = cli(["rl", "--out", str(tmp_path / "d"), *rl_inputs(sandbox_task, f"p={GROUND_TRUTH}"),
                        "--normalization", str(damaged)])  # fmt: skip
    assert code == 2
    assert f"--normalization {damaged}: a damaged evaluate run" in one_line_error(err, "rl")


def test_a_bug_shows_its_traceback_and_asks_for_a_report(
    tmp_path: Path, cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(config: object) -> str:
        raise KeyError("a bug")

    monkeypatch.setattr("rmteacher.commands.correlate.run_correlate", broken)
    code, _, err = cli(["correlate", str(EXAMPLES / "table10_pythia1b.csv")])
    assert code == 1
    assert "Traceback" in err and "KeyError: 'a bug'" in err
    assert err.rstrip().endswith("internal error; please report it with the command you ran")


def test_files_are_written_with_the_users_umask(tmp_path: Path, cli: Run) -> None:
    previous = os.umask(0o022)
    try:
        code, _, _ = cli(["theory", "--out", str(tmp_path / "run"), "constructions"])
    finally:
        os.umask(previous)
    assert code == 0
    written = [p for p in (tmp_path / "run").iterdir() if p.is_file()]
    assert {p.name for p in written} >= {MANIFEST, "config.json", "constructions.png", "summary.md"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {p.name: "0o644" for p in written}


def test_a_run_that_fails_at_start_leaves_out_as_found(sandbox_task: SandboxTask, tmp_path: Path, cli: Run) -> None:
    """sft fails inside the trainer (no row fits --max-length 2) after TRL made its empty output directory: --out is
    removed again, so the corrected rerun needs no flag."""
    out = tmp_path / "run"
    code, _, err = cli(["sft", "--out", str(out), "--max-length", "2", "--max-steps", "2", "--no-progress"])
    assert code == 2
    one_line_error(err, "sft")
    assert not out.exists()


@pytest.mark.parametrize("command", ["evaluate", "rl"])
@pytest.mark.parametrize("temperature", ["1e-300", "0", "inf", "nan"])
def test_a_temperature_sampling_cannot_use_is_refused(tmp_path: Path, cli: Run, command: str, temperature: str) -> None:
    code, _, err = cli([command, "--out", str(tmp_path / "run"), "--temperature", temperature])
    assert code == 2
    assert re.search(r"--temperature must be in \[0.001, 100\].*; got", one_line_error(err, command))
    assert not (tmp_path / "run").exists()
