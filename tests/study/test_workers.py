"""`rmteacher study --workers`: independent stages in spawned worker processes (rmteacher.study.workers).

The pool on toy stages (results, fingerprints and resumption as sequential; a killed worker fails the batch cleanly
and keeps the finished stages), the default's rule, and end to end: `study --quick` with 2 workers gives the numbers
of 1 worker bit for bit, and a study whose worker is killed exits 2 and finishes with --resume; with
`--launcher ray` on a local Ray instance of 2 CPUs, the numbers of the pool bit for bit (the toy stages on Ray are in
tests/study/test_ray.py).
"""

import functools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from rmteacher.cli import main
from rmteacher.sandbox import SandboxTask
from rmteacher.study import workers as workers_module
from rmteacher.study.stages import Stages
from rmteacher.study.workers import (
    KILL_STAGE_VARIABLE,
    StageJob,
    default_workers,
    run_stages,
    study_workers,
    worker_memory,
)

QUICK = ["study", "--quick", "--no-progress"]


def square(directory: Path, *, value: int) -> dict[str, Any]:
    """A toy stage: writes a file and returns its value squared and the process that ran it."""
    (directory / "value.txt").write_text(str(value))
    return {"square": value * value, "pid": os.getpid()}


def jobs(count: int) -> list[StageJob]:
    return [StageJob(f"toy/{k}", {"value": k}, functools.partial(square, value=k)) for k in range(count)]


def test_the_pool_runs_stages_as_a_sequential_run_would(tmp_path: Path) -> None:
    parallel = run_stages(Stages(tmp_path / "p"), jobs(4), workers=2, desc="toy", progress=False)
    sequential = run_stages(Stages(tmp_path / "s"), jobs(4), workers=1, desc="toy", progress=False)
    assert [r["square"] for r in parallel.values()] == [0, 1, 4, 9]
    assert {k: (r["square"], r["fingerprint"]) for k, r in parallel.items()} == {
        k: (r["square"], r["fingerprint"]) for k, r in sequential.items()
    }
    assert os.getpid() not in {r["pid"] for r in parallel.values()}  # ran in workers
    assert {r["pid"] for r in sequential.values()} == {os.getpid()}
    # Complete stages are skipped: nothing is rerun (their records, pids included, are read back).
    again = run_stages(Stages(tmp_path / "p"), jobs(4), workers=2, desc="toy", progress=False)
    assert again == parallel


def wait_for(directory: Path, *, flag: str) -> dict[str, Any]:
    """A toy stage that finishes once ``flag`` exists (or after 60 s) and says whether it saw it."""
    for _ in range(600):
        if Path(flag).exists():
            return {"saw_flag": True}
        time.sleep(0.1)
    return {"saw_flag": False}


class FlagBar:
    """A stand-in for the progress bar: its first update writes ``FLAG``."""

    FLAG: Path

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.n = kwargs.get("initial", 0)

    def __enter__(self) -> "FlagBar":
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def update(self) -> None:
        self.n += 1
        self.FLAG.touch()


def test_the_bar_moves_with_each_finished_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One job waits for the bar to count the other: the batch's bar moves as runs finish, not all at the end."""
    monkeypatch.setattr(FlagBar, "FLAG", tmp_path / "updated", raising=False)
    monkeypatch.setattr(workers_module, "tqdm", FlagBar)
    batch = [
        StageJob("toy/fast", {"value": 1}, functools.partial(square, value=1)),
        StageJob("toy/waits", {"flag": 1}, functools.partial(wait_for, flag=str(tmp_path / "updated"))),
    ]
    results = run_stages(Stages(tmp_path / "run"), batch, workers=2, desc="toy", progress=False)
    assert results["toy/waits"]["saw_flag"] is True


def test_a_killed_worker_fails_the_batch_and_resume_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stages = Stages(tmp_path / "run")
    monkeypatch.setenv(KILL_STAGE_VARIABLE, "toy/2")
    with pytest.raises(ChildProcessError, match=r"a worker process died while running stage\(s\) .*toy/2.*--resume"):
        run_stages(stages, jobs(4), workers=2, desc="toy", progress=False)
    assert not (tmp_path / "run" / "toy" / "2" / "stage.json").exists()
    monkeypatch.delenv(KILL_STAGE_VARIABLE)
    done = run_stages(stages, jobs(4), workers=2, desc="toy", progress=False)
    assert [r["square"] for r in done.values()] == [0, 1, 4, 9]


def test_a_stage_error_is_raised_as_in_a_sequential_run(tmp_path: Path) -> None:
    bad = [*jobs(2), StageJob("toy/bad", {"value": "x"}, functools.partial(square, value="x"))]  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="can't multiply sequence"):
        run_stages(Stages(tmp_path / "run"), bad, workers=2, desc="toy", progress=False)
    with pytest.raises(ValueError, match="workers must be >= 1; got 0"):
        run_stages(Stages(tmp_path / "run"), jobs(1), workers=0, desc="toy", progress=False)


def test_default_workers_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(workers_module, "_available_memory", lambda: 64 * 2**30)
    assert default_workers(None) == (4, "4 usable cores, 64.0 GiB available at 1.0 GiB per worker (room for 64)")
    # A policy of 1 GiB of float32 weights: 1 + 12 GiB per worker, so 64 GiB hold 4.
    policy = tmp_path / "policy"
    policy.mkdir()
    with open(policy / "model.safetensors", "wb") as handle:
        handle.truncate(2**30)
    assert worker_memory(str(policy)) == 13 * 2**30
    monkeypatch.setattr(workers_module, "_available_memory", lambda: 30 * 2**30)
    assert default_workers(str(policy))[0] == 2
    monkeypatch.setattr(workers_module, "_available_memory", lambda: 2**30)
    assert default_workers(str(policy))[0] == 1  # at least one
    assert worker_memory("org/some-hub-model") == 8 * 2**30  # size unknown


def test_bad_workers_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "--out", str(tmp_path / "s"), "--workers", "-1"]) == 2
    assert "--workers must be >= 0 (0: one per usable core); got -1" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_the_study_default_is_one_worker_per_core_but_one_for_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(workers_module, "_available_memory", lambda: 64 * 2**30)
    assert study_workers(3, quick=True, policy=None) == (3, "--workers")  # given: as given
    assert study_workers(None, quick=True, policy=None) == (1, "--quick's default")  # start-up > its 2-s runs
    assert study_workers(0, quick=True, policy=None)[0] == 2  # 0: the rule, asked for explicitly
    assert study_workers(None, quick=False, policy=None) == default_workers(None)
    assert default_workers(None)[0] == 2


# ------------------------------------------------------------------------------------------------ end to end


def untimed(value: Any) -> Any:
    """``value`` without the keys that hold times or paths, however nested."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in PATHS and not any(w in k for w in TIMES)}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


TIMES, PATHS = ("time", "second"), ("model", "directory", "output_dir", "out")


def numbers(run: Path) -> dict[str, Any]:
    """What a study computed, without paths and times: the analysis, every RL run's records and every stage's
    result."""
    out: dict[str, Any] = {"analysis": json.loads((run / "analysis.json").read_text())}
    for path in sorted(run.rglob("metrics.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out[str(path.relative_to(run))] = untimed(records)
    for path in sorted(run.rglob("stage.json")):
        out[str(path.relative_to(run))] = untimed(json.loads(path.read_text())["result"])
    return out


@pytest.fixture(scope="module")
def parallel_study(sandbox_task: SandboxTask, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("parallel") / "run"
    assert main([*QUICK, "--workers", "2", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_two_workers_give_the_numbers_of_one_bit_for_bit(parallel_study: Path, tmp_path: Path) -> None:
    sequential = tmp_path / "run"
    assert main([*QUICK, "--workers", "1", "--out", str(sequential)]) == 0
    expected, got = numbers(sequential), numbers(parallel_study)
    assert len(got) >= 20  # the analysis, 7 RL runs (one seed) and their stages, 5 reward models, Table 1
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], key  # exact: no tolerance
    machines = json.loads((parallel_study / "machine.json").read_text())["machines"]
    assert [m["workers"] for m in machines] == [2]
    assert "Machine: " in (parallel_study / "report.md").read_text()


@pytest.mark.slow
def test_a_study_whose_worker_dies_exits_2_and_resumes(
    parallel_study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(parallel_study, run)
    for stage in ("rl/rm_50/seed0", "rl/rm_25/seed0", "rl/ground_truth/seed0"):
        shutil.rmtree(run / stage)
    (run / "analysis.json").unlink()
    monkeypatch.setenv(KILL_STAGE_VARIABLE, "rl/rm_25/seed0")
    assert main([*QUICK, "--workers", "2", "--out", str(run), "--resume"]) == 2  # --resume: another --out
    err = capsys.readouterr().err
    assert "rmteacher study: error: a worker process died while running stage(s)" in err
    assert "rl/rm_25/seed0" in err and "rerun the same command with --resume" in err
    assert "Traceback" not in err
    assert not (run / "rl" / "rm_25" / "seed0" / "stage.json").exists()
    monkeypatch.delenv(KILL_STAGE_VARIABLE)
    assert main([*QUICK, "--workers", "2", "--out", str(run), "--resume"]) == 0
    assert numbers(run)["analysis"] == numbers(parallel_study)["analysis"]


@pytest.mark.slow
def test_a_quick_study_on_a_local_ray_instance_gives_the_numbers_of_the_pool(
    parallel_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ray = pytest.importorskip("ray")
    on_ray = tmp_path / "run"
    # --workers 2: a local Ray instance with 2 CPUs, started for each batch and stopped after it.
    assert main([*QUICK, "--launcher", "ray", "--workers", "2", "--out", str(on_ray)]) == 0
    assert not ray.is_initialized()
    expected, got = numbers(parallel_study), numbers(on_ray)
    assert len(got) >= 20 and got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], key  # exact: the analysis, every RL run's records, every stage's result
    assert json.loads((on_ray / "study.json").read_text())["launcher"] == "ray"
    # The pool's run resumed with Ray: every stage is complete (the launcher is in no fingerprint), none reruns.
    pool_run = tmp_path / "pool"
    shutil.copytree(parallel_study, pool_run)
    before = {p: p.read_text() for p in pool_run.rglob("stage.json")}
    assert main([*QUICK, "--launcher", "ray", "--workers", "2", "--out", str(pool_run), "--resume"]) == 0  # --out
    assert {p: p.read_text() for p in pool_run.rglob("stage.json")} == before  # "seconds" would differ on a rerun


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sgd-learning-rate", "nan"], "--sgd-learning-rate must be a finite number >= 0 (0: no SGD arm); got nan"),
        (["--sgd-learning-rate", "-1"], "--sgd-learning-rate must be a finite number >= 0 (0: no SGD arm); got -1.0"),
        (["--sgd-learning-rate", "1e-3", "--design", "policies"], "--design policies has none"),
    ],
)
def test_bad_sgd_learning_rate(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["study", "--out", str(tmp_path / "s"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()
