"""Issue 12 through real processes: `kill -9` *while a checkpoint is being written*, then `--resume` ends where an
uninterrupted run ends; and a second run on the same `--out` fails at once (exit 2) while the first still runs.

The run is `rmteacher sft` on the sandbox task, 4 steps with a checkpoint every 2, started in a subprocess by a small
wrapper that makes the save of checkpoint 4 hang after its weights are written and before its optimizer, scheduler
and trainer state are (transformers writes them in that order): a test double for the writer, so the kill lands
inside the write every time, with no hook in rmteacher itself.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from rmteacher.cli import main
from rmteacher.rundir import LOCK, MANIFEST, read_jsonl
from rmteacher.sandbox import SandboxTask

pytestmark = pytest.mark.slow

SFT = ["sft", "--max-steps", "4", "--save-steps", "2", "--no-progress"]

# Runs `rmteacher ARGS` with torch.save hanging (after writing MARKER) when it would write CHECKPOINT/optimizer.pt.
HANGING_SAVE = """
import os, sys, time, torch
marker, checkpoint, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
real_save = torch.save
def save(obj, f, *args, **kwargs):
    if isinstance(f, (str, os.PathLike)) and str(f).endswith(os.path.join(checkpoint, "optimizer.pt")):
        open(marker, "w").close()
        time.sleep(600)
    return real_save(obj, f, *args, **kwargs)
torch.save = save
from rmteacher.cli import main
sys.exit(main(argv))
"""


@pytest.fixture
def hung_in_a_save(sandbox_task: SandboxTask, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """An `sft` run in a subprocess, stopped inside the write of ``checkpoints/checkpoint-4``; killed at the end."""
    out, marker = tmp_path / "run", tmp_path / "saving"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", HANGING_SAVE, str(marker), "checkpoint-4", *SFT, "--out", str(out)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(f"sft ended before its checkpoint-4 save: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "sft did not reach its checkpoint-4 save in 240 s"
        time.sleep(0.05)
    try:
        yield process, out
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stderr.close()  # type: ignore[union-attr]


def test_kill_during_a_checkpoint_write_then_resume_ends_as_uninterrupted(
    hung_in_a_save: tuple[subprocess.Popen[bytes], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    process, out = hung_in_a_save
    torn = out / "checkpoints" / "checkpoint-4"
    assert (torn / "model.safetensors").is_file(), "the kill lands after the weights were written"
    assert not (torn / "optimizer.pt").exists() and not (torn / "trainer_state.json").exists()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "model").exists(), "killed before the end"
    assert json.loads((out / MANIFEST).read_text())["status"] != "complete"

    assert main([*SFT, "--out", str(out)]) == 2  # the killed run is still there: refused without --resume
    assert "holds a previous sft run (stopped before it completed: killed or crashed); pass --resume" in (
        capsys.readouterr().err
    )
    with pytest.warns(UserWarning, match="skipped the incomplete checkpoint checkpoint-4"):
        assert main([*SFT, "--out", str(out), "--resume"]) == 0
    assert "resumed from checkpoint-2" in capsys.readouterr().out
    assert (torn / "trainer_state.json").is_file(), "the torn checkpoint 4 was deleted and written again, whole"
    assert {"event": "resume", "checkpoint": "checkpoint-2", "step": 2} in read_jsonl(out / "metrics.jsonl")
    assert json.loads((out / MANIFEST).read_text())["status"] == "complete"
    assert not (out / LOCK).exists()

    reference = tmp_path / "uninterrupted"
    assert main([*SFT, "--out", str(reference)]) == 0
    # Same seed, data order, optimizer and RNG state from checkpoint 2: the same weights as the run never killed.
    resumed, uninterrupted = (load_file(str(d / "model" / "model.safetensors")) for d in (out, reference))
    assert set(resumed) == set(uninterrupted)
    for key, value in uninterrupted.items():
        np.testing.assert_allclose(resumed[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_a_second_run_on_the_same_out_fails_at_once(hung_in_a_save: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, out = hung_in_a_save
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for flags in (["--resume"], ["--overwrite"]):
        second = subprocess.run(
            [sys.executable, "-m", "rmteacher.cli", *SFT, "--out", str(out), *flags],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert process.poll() is None, "the first run still holds --out: the second did not wait for it"
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"another rmteacher run is using it now (pid {process.pid})" in second.stderr
        assert "Traceback" not in second.stderr
    # The refused runs changed nothing: the first run's files are all there, its checkpoint 2 complete.
    assert json.loads((out / MANIFEST).read_text())["status"] == "new"
    assert (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
