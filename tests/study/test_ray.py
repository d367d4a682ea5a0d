"""`rmteacher study --launcher ray`: the independent stages as Ray tasks (rmteacher.study.workers).

On toy stages, each test on a local Ray instance with 2 CPUs that `run_stages` starts and stops itself (or one the
test started, which it leaves running): results and fingerprints as a sequential run, complete stages skipped, a
stage's error raised as itself, a killed worker failing the batch cleanly and --resume finishing it, the run directory
not shared between nodes. Without Ray, `--launcher ray` exits 2 before creating anything. The quick study on Ray against
the process pool is end to end in tests/study/test_workers.py (it reuses that module's study).
"""

import functools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from rmteacher.cli import main
from rmteacher.study.stages import RAY_MISSING, Stages, StudyConfig, check_run_dir, prepare_run_dir
from rmteacher.study.workers import KILL_STAGE_VARIABLE, Launcher, StageJob, _check_shared, run_stages

from .test_workers import jobs, square

RAY = Launcher("ray")


@pytest.fixture
def ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Ray, and no Ray instance left running after the test, whatever happened in it.

    Ray pickles the toy stages by module name (pytest's: ``study.test_workers`` under rootdir-based imports), and its
    workers do not share this process's ``sys.path`` (a spawned process pool does): ``PYTHONPATH``, which an instance
    started afterwards passes to its workers, gets the directory that name is importable from."""
    module = pytest.importorskip("ray")
    assert not module.is_initialized()
    name = square.__module__
    root = Path(sys.modules[name].__file__ or "").parents[name.count(".")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    yield module
    if module.is_initialized():
        module.shutdown()


def test_ray_runs_stages_as_a_sequential_run_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray: ModuleType
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative run directory, as the default --out runs/study, in Ray's workers too
    on_ray = run_stages(Stages(Path("r")), jobs(4), workers=2, desc="toy", progress=False, launcher=RAY)
    assert sorted(p.parent.name for p in (tmp_path / "r" / "toy").glob("*/stage.json")) == ["0", "1", "2", "3"]
    assert not ray.is_initialized()  # the instance it started is stopped
    sequential = run_stages(Stages(tmp_path / "s"), jobs(4), workers=1, desc="toy", progress=False)
    assert [r["square"] for r in on_ray.values()] == [0, 1, 4, 9]
    assert {k: (r["square"], r["fingerprint"]) for k, r in on_ray.items()} == {
        k: (r["square"], r["fingerprint"]) for k, r in sequential.items()
    }
    assert os.getpid() not in {r["pid"] for r in on_ray.values()}  # ran in Ray's workers
    # Complete stages are skipped: nothing is rerun (their records, pids included, are read back), no Ray started.
    again = run_stages(Stages(tmp_path / "r"), jobs(4), workers=2, desc="toy", progress=False, launcher=RAY)
    assert again == on_ray


def test_a_stage_error_is_raised_as_in_a_sequential_run_and_a_started_ray_is_left(
    tmp_path: Path, ray: ModuleType
) -> None:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    bad = [*jobs(2), StageJob("toy/bad", {"value": "x"}, functools.partial(square, value="x"))]  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="can't multiply sequence") as raised:
        run_stages(Stages(tmp_path / "run"), bad, workers=2, desc="toy", progress=False, launcher=RAY)
    assert type(raised.value) is TypeError  # the stage's own error, not Ray's wrapper
    assert ray.is_initialized()  # the caller's instance: not ours to stop
    # A run needing more CPUs than any node has would wait forever: refused.
    big = Launcher("ray", None, 3)
    with pytest.raises(ValueError, match=r"--cpu-threads 3: no node of the Ray cluster has that many CPUs \(the "):
        run_stages(Stages(tmp_path / "big"), jobs(1), workers=1, desc="toy", progress=False, launcher=big)


def test_a_killed_ray_worker_fails_the_batch_and_resume_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray: ModuleType
) -> None:
    stages = Stages(tmp_path / "run")
    monkeypatch.setenv(KILL_STAGE_VARIABLE, "toy/2")  # the local instance started next passes it to its workers
    with pytest.raises(ChildProcessError, match=r"a Ray worker died while running stage\(s\) .*toy/2.*--resume"):
        run_stages(stages, jobs(4), workers=2, desc="toy", progress=False, launcher=RAY)
    assert not ray.is_initialized()
    assert not (tmp_path / "run" / "toy" / "2" / "stage.json").exists()
    monkeypatch.delenv(KILL_STAGE_VARIABLE)
    done = run_stages(stages, jobs(4), workers=2, desc="toy", progress=False, launcher=RAY)
    assert [r["square"] for r in done.values()] == [0, 1, 4, 9]


def test_a_run_directory_the_driver_does_not_see_is_an_error(tmp_path: Path) -> None:
    # What the driver finds after a batch whose nodes wrote to their own disks: no stage.json.
    stages = Stages(tmp_path / "run")
    run_stages(stages, jobs(1), workers=1, desc="toy", progress=False)
    _check_shared(stages, jobs(1))  # complete: no error
    with pytest.raises(FileNotFoundError, match=r"stage\(s\) toy/1, toy/2 finished on the Ray cluster.*node sees"):
        _check_shared(stages, jobs(3))


def test_without_ray_launcher_ray_exits_2_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, find_spec finds none
    out = tmp_path / "study"
    assert main(["study", "--quick", "--no-progress", "--launcher", "ray", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"rmteacher study: error: {RAY_MISSING}" in err and "Traceback" not in err
    assert RAY_MISSING == "--launcher ray needs Ray: pip install 'rmteacher[ray]'"
    assert not out.exists()
    # The library: the same error from run_stages, before any stage runs.
    with pytest.raises(ValueError, match=r"--launcher ray needs Ray: pip install 'rmteacher\[ray\]'"):
        run_stages(Stages(tmp_path / "run"), jobs(2), workers=1, desc="toy", progress=False, launcher=RAY)
    assert not (tmp_path / "run").exists()


def test_launcher_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert StudyConfig().launcher == "local" and StudyConfig().ray_address is None
    assert Launcher.of(StudyConfig(cpu_threads=0)) == Launcher("local", None, 1)  # torch's default threads: 1 CPU
    assert main(["study", "--out", str(tmp_path / "s"), "--ray-address", "auto"]) == 2
    assert "--ray-address 'auto' is only used with --launcher ray" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    with pytest.raises(SystemExit):
        main(["study", "--out", str(tmp_path / "s"), "--launcher", "slurm"])
    assert "argument --launcher: 'slurm' is not one of local, ray" in capsys.readouterr().err


def test_the_launcher_is_how_not_what_a_study_runs(tmp_path: Path) -> None:
    """A study run with one launcher is the same study with the other: no --resume needed, as for --workers."""
    pytest.importorskip("ray")
    prepare_run_dir(StudyConfig(out=tmp_path / "run", quick=True))
    check_run_dir(StudyConfig(out=tmp_path / "run", quick=True, launcher="ray", ray_address="auto"))
    # A study.json written before --launcher existed has neither key.
    manifest = tmp_path / "run" / "study.json"
    options = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({k: v for k, v in options.items() if k not in ("launcher", "ray_address")}))
    check_run_dir(StudyConfig(out=tmp_path / "run", quick=True))
    with pytest.raises(ValueError, match="holds a study with different seeds; pass --resume"):
        check_run_dir(StudyConfig(out=tmp_path / "run", quick=True, seeds=2, launcher="ray"))
