"""The run-directory protocol: refuse, resume, overwrite only what the run made, lock, clean failed starts."""

import json
from pathlib import Path

import pytest

from rmteacher.rundir import LOCK, MANIFEST, RunDirError, complete_checkpoints, open_run, read_jsonl


def _open(out: Path, identity: dict | None = None, **kwargs):  # type: ignore[no-untyped-def]
    options = {"command": "evaluate", "identity": identity or {"seed": 1}, "resume": False, "overwrite": False}
    return open_run(out, **{**options, **kwargs})


def test_new_run_writes_manifest_and_completes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with _open(out) as run:
        assert not run.resumed
        (out / "metrics.json").write_text("{}")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["status"] == "complete"
    assert "metrics.json" in manifest["entries"]


def test_same_run_needs_resume_and_then_continues(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with _open(out):
        (out / "metrics.json").write_text("{}")
    with pytest.raises(RunDirError, match="pass --resume to continue it"), _open(out):
        pass
    with _open(out, resume=True) as run:
        assert run.resumed


def test_other_identity_is_named(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with _open(out, {"seed": 1}):
        (out / "a.txt").write_text("x")
    with pytest.raises(RunDirError, match=r"seed \(1 there, 2 now\)"), _open(out, {"seed": 2}, resume=True):
        pass


def test_foreign_directory_is_never_deleted(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    (tmp_path / "data").mkdir()
    with pytest.raises(RunDirError, match="never deletes what it did not make"), _open(tmp_path, overwrite=True):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "thesis.tex"], "not even a lock file is left"
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_overwrite_deletes_only_the_runs_entries(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with _open(out):
        (out / "metrics.json").write_text("{}")
    (out / "notes.txt").write_text("mine")  # the user's file, added after the run
    opening = _open(out, {"seed": 2}, overwrite=True, outputs=("metrics.*",))
    with pytest.warns(UserWarning, match="--overwrite kept notes.txt .*not written by the earlier run"):
        run = opening.__enter__()
    assert not (out / "metrics.json").exists()
    assert any("notes.txt" in note for note in run.notes)
    opening.__exit__(None, None, None)
    assert (out / "notes.txt").read_text() == "mine"


def test_overwrite_removes_declared_outputs_of_a_killed_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with _open(out):
        pass
    (out / "checkpoint-4").mkdir()  # written after the manifest's last update, then killed
    with _open(out, overwrite=True, outputs=("checkpoint-*",)):
        assert not (out / "checkpoint-4").exists()


def test_another_command_is_refused(tmp_path: Path) -> None:
    with _open(tmp_path / "run"):
        (tmp_path / "run" / "x").write_text("")
    other = open_run(tmp_path / "run", command="rl", identity={}, resume=True, overwrite=False)
    with pytest.raises(RunDirError, match="holds an rmteacher evaluate run, not a rl run"), other:
        pass


def test_second_run_on_the_same_out_fails_at_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with _open(out), pytest.raises(RunDirError, match="another rmteacher run is using it now"), _open(out, resume=True):
        pass


def _fail(out: Path, error: Exception, written: str | None = None) -> None:
    """A run that writes ``written`` (if any; ending in / an empty directory) and then fails with ``error``."""
    with _open(out):
        if written and written.endswith("/"):
            (out / written).mkdir(parents=True)
        elif written:
            (out / written).write_text("{}")
        raise error


def test_failed_start_leaves_out_as_found(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ModuleNotFoundError, match="myrewards"):
        _fail(out, ModuleNotFoundError("no module named 'myrewards'"), "config.json")
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError, match="boom"):
        _fail(empty, RuntimeError("boom"), "checkpoints/")
    assert list(empty.iterdir()) == [], "nor the empty directories the run made (e.g. a trainer's output directory)"
    with _open(out):  # the corrected rerun needs no flag
        pass


def test_failure_after_results_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="out of memory"):
        _fail(out, RuntimeError("out of memory"), "samples.parquet")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["status"] == "failed"
    assert "out of memory" in manifest["error"]
    with pytest.raises(RunDirError, match=r"previous evaluate run \(failed: RuntimeError: out of memory\)"), _open(out):
        pass
    with _open(out, resume=True) as run:
        assert run.resumed


def test_out_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(RunDirError, match="is a file, not a directory"), _open(tmp_path / "f"):
        pass


def test_lock_file_is_not_left_by_a_failed_fresh_start(tmp_path: Path) -> None:
    out = tmp_path / "new"
    with pytest.raises(ValueError, match="bad prompts"):
        _fail(out, ValueError("bad prompts"))
    assert not (out / LOCK).exists()


def test_complete_checkpoints(tmp_path: Path) -> None:
    full = tmp_path / "checkpoint-4"
    full.mkdir()
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt"):
        (full / name).write_text("")
    (full / "trainer_state.json").write_text("{}")
    torn = tmp_path / "checkpoint-8"
    torn.mkdir()
    (torn / "config.json").write_text("{}")
    complete, incomplete = complete_checkpoints(tmp_path)
    assert complete == [full]
    assert incomplete == [torn]


def test_read_jsonl_tolerates_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not valid JSON"):
        read_jsonl(path)
