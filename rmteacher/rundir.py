"""The one run-directory protocol of every command: a run owns its ``--out`` and never destroys what it did not make.

A run directory holds one run and a manifest, ``rmteacher-run.json``: the command, the run's *identity* (the options
and resolved inputs its results depend on), its status (``running``/``failed``/``complete``) and the top-level
entries the run made. The rules, the same for every command:

- an empty or missing ``--out`` starts a new run;
- an ``--out`` holding files but no manifest is refused, with or without ``--overwrite``: rmteacher never deletes
  what it did not make;
- an ``--out`` holding another command's run, or a run with another identity, is refused unless ``--overwrite``,
  which deletes only that run's own entries (those its manifest lists and the command's declared outputs);
- the same run again needs ``--resume`` (or, for commands whose stages are fingerprinted, nothing);
- a lock (``fcntl.flock`` on ``.rmteacher.lock``, released by the kernel on exit and on a crash) makes a second
  run on the same ``--out`` fail at once;
- a run that fails before writing anything but the protocol's own files leaves ``--out`` as it found it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from rmteacher.tables import write_json_atomic

__all__ = [
    "LOCK",
    "MANIFEST",
    "RunDir",
    "RunDirError",
    "complete_checkpoints",
    "open_run",
    "read_jsonl",
]

MANIFEST = "rmteacher-run.json"
LOCK = ".rmteacher.lock"
_PROTOCOL_FILES = (MANIFEST, LOCK, "config.json")


class RunDirError(ValueError):
    """An ``--out`` that this run may not use (the message says why and what to pass instead)."""


@dataclass
class RunDir:
    """An open run directory: ``resumed`` tells whether it continues an earlier run of the same identity; ``notes``
    what opening it did that the user should know (each also given as a warning)."""

    path: Path
    command: str
    identity: dict[str, Any]
    resumed: bool
    previous_identity: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def complete(self) -> None:
        """Marks the run complete (its results are all written)."""
        _write_manifest(self.path, self.command, self.identity, "complete")


def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def _read_manifest(path: Path) -> dict[str, Any] | None:
    manifest = path / MANIFEST
    if not manifest.is_file():
        return None
    try:
        loaded = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise RunDirError(f"--out {path}: its {MANIFEST} is damaged ({error}); choose another --out") from None
    if not isinstance(loaded, dict) or "command" not in loaded or "identity" not in loaded:
        raise RunDirError(f"--out {path}: its {MANIFEST} is not an rmteacher run manifest; choose another --out")
    return loaded


def _write_manifest(path: Path, command: str, identity: Mapping[str, Any], status: str, **extra: Any) -> None:
    previous = _read_manifest(path) or {}
    entries = sorted(set(previous.get("entries", [])) | set(_entries(path)) | {MANIFEST})
    record = {
        "command": command,
        "status": status,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "entries": entries,
        "identity": dict(identity),
        **extra,
    }
    write_json_atomic(path / MANIFEST, record)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    handle = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 64, 0).decode(errors="replace").strip() or "another process"
            raise RunDirError(
                f"--out {path}: another rmteacher run is using it now (pid {holder}); wait for it or choose another "
                "--out"
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(handle)


def _differences(before: Mapping[str, Any], now: Mapping[str, Any], volatile: Iterable[str]) -> list[str]:
    keys = (set(before) | set(now)) - set(volatile)
    return sorted(k for k in keys if before.get(k) != now.get(k))


def _delete_run(path: Path, manifest: Mapping[str, Any], outputs: Iterable[str]) -> list[str]:
    """Deletes the run's own entries; returns the names of the entries it left (not the run's)."""
    patterns = [*outputs, *_PROTOCOL_FILES]
    owned = set(manifest.get("entries", []))
    kept = []
    for name in _entries(path):
        if name == LOCK:  # held by this process
            continue
        if name in owned or any(fnmatch(name, pattern) for pattern in patterns):
            target = path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        else:
            kept.append(name)
    return kept


@contextlib.contextmanager
def open_run(
    out: Path,
    *,
    command: str,
    identity: Mapping[str, Any],
    resume: bool,
    overwrite: bool,
    outputs: Iterable[str] = (),
    volatile: Iterable[str] = (),
    rerun_continues: bool = False,
    resume_may_change: bool = False,
    is_main_process: bool = True,
) -> Iterator[RunDir]:
    """Opens ``out`` for one run of ``command`` under the rules of this module, for the duration of the block.

    Args:
        out: the run directory (``--out``).
        command: the command's name, recorded in the manifest.
        identity: what the run's results depend on (JSON-able); compared with the run already there.
        resume, overwrite: the user's ``--resume`` / ``--overwrite``.
        outputs: glob patterns of the top-level entries the command writes, deleted by ``--overwrite`` even when a
            killed run could not record them.
        volatile: identity keys that may differ between a run and its resumption (e.g. ``max_steps``).
        rerun_continues: the same identity again continues without ``--resume`` (stages are fingerprinted).
        resume_may_change: with ``--resume``, a different identity is allowed (changed stages are redone).
        is_main_process: only the main process of a multi-process launch checks, locks and writes; the others get
            a :class:`RunDir` once the main process has set the directory up (call after its ``wait_for_everyone``).

    Raises:
        RunDirError: ``out`` is a file, holds files that are not an rmteacher run, holds another run and no
            ``--overwrite`` was given, holds the same run without ``--resume``, or is locked by another run.
    """
    identity = dict(json.loads(json.dumps(dict(identity), default=str)))
    if not is_main_process:
        manifest = _read_manifest(out) or {}
        yield RunDir(out, command, identity, resumed=manifest.get("status") != "new")
        return
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out}: is a file, not a directory; choose another --out")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"--out {out}: cannot be created ({error.strerror})") from None
    lock_was_there = (out / LOCK).exists()
    with _locked(out):
        try:
            run = _claim(
                out, command, identity, resume=resume, overwrite=overwrite, outputs=tuple(outputs),
                volatile=tuple(volatile), rerun_continues=rerun_continues, resume_may_change=resume_may_change,
            )  # fmt: skip
        except BaseException:  # refused: leave --out as it was, without the lock file this call made
            if created and _entries(out) == [LOCK]:
                shutil.rmtree(out, ignore_errors=True)
            elif not lock_was_there:
                (out / LOCK).unlink(missing_ok=True)
            raise
        for note in run.notes:
            warnings.warn(note, stacklevel=3)
        try:
            yield run
        except BaseException as error:
            _close_failed(out, run, created=created, error=error)
            raise
        else:
            if (_read_manifest(out) or {}).get("status") != "complete":
                _write_manifest(out, command, identity, "complete")
            (out / LOCK).unlink(missing_ok=True)  # the run is over: leave only its results


def _claim(
    out: Path,
    command: str,
    identity: dict[str, Any],
    *,
    resume: bool,
    overwrite: bool,
    outputs: tuple[str, ...],
    volatile: tuple[str, ...],
    rerun_continues: bool,
    resume_may_change: bool,
) -> RunDir:
    present = [name for name in _entries(out) if name != LOCK]
    manifest = _read_manifest(out)
    if present and manifest is None:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise RunDirError(
            f"--out {out}: holds files that are not an rmteacher run ({shown}); rmteacher never deletes what it did "
            "not make, so --overwrite does not apply: choose another --out"
        )
    run = RunDir(out, command, identity, resumed=False)
    if manifest is not None:
        changed = _differences(manifest["identity"], identity, volatile)
        other_command = manifest["command"] != command
        if overwrite:
            kept = _delete_run(out, manifest, outputs)
            if kept:
                run.notes.append(f"--overwrite kept {', '.join(kept)} in {out}: not written by the earlier run")
        elif other_command:
            raise RunDirError(
                f"--out {out}: holds an rmteacher {manifest['command']} run, not a {command} run; choose another "
                f"--out (or pass --overwrite to delete that run)"
            )
        elif manifest.get("status") == "new" and not [n for n in present if n not in _PROTOCOL_FILES]:
            pass  # an earlier start was killed before it wrote anything: start again
        elif changed and not (resume and resume_may_change):
            shown = ", ".join(
                f"{k} ({manifest['identity'].get(k)!r} there, {identity.get(k)!r} now)" for k in changed[:4]
            )
            hint = "pass --resume to keep what still matches and redo the rest, " if resume_may_change else "pass "
            raise RunDirError(
                f"--out {out}: holds a different {command} run: {shown}; {hint}--overwrite, or another --out"
            )
        elif not (resume or rerun_continues):
            raise RunDirError(
                f"--out {out}: holds a previous {command} run ({_state(manifest)}); pass --resume to continue it, "
                "--overwrite to start over, or another --out"
            )
        else:
            run.resumed = True
            run.previous_identity = manifest["identity"]
    _write_manifest(out, command, identity, "running" if run.resumed else "new")
    return run


def _state(manifest: Mapping[str, Any]) -> str:
    """How an earlier run ended, for messages. No run holds the lock, so one still marked as started was killed."""
    status = manifest.get("status")
    if status == "complete":
        return "complete"
    if status == "failed":
        return f"failed: {manifest.get('error', 'unknown error')}"
    return "stopped before it completed: killed or crashed"


def _close_failed(out: Path, run: RunDir, *, created: bool, error: BaseException) -> None:
    """After an error: a new run that wrote nothing but the protocol's files (and empty directories) leaves ``out`` as
    it found it; any other is marked failed in its manifest."""
    if not out.is_dir():
        return
    leftovers = [name for name in _entries(out) if name not in _PROTOCOL_FILES]
    if not run.resumed and not any(_holds_files(out / name) for name in leftovers):
        for name in leftovers:  # empty directories the run made (e.g. the trainer's output directory)
            shutil.rmtree(out / name)
        for name in _PROTOCOL_FILES:
            (out / name).unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        return
    reason = f"{type(error).__name__}: {error}".strip()[:500]
    _write_manifest(out, run.command, run.identity, "failed", error=reason)


def _holds_files(path: Path) -> bool:
    """``path`` is a file (or link), or a directory with a file somewhere below it."""
    if path.is_symlink() or not path.is_dir():
        return True
    return any(not p.is_dir() or p.is_symlink() for p in path.rglob("*"))


def complete_checkpoints(directory: Path) -> tuple[list[Path], list[Path]]:
    """TRL/transformers ``checkpoint-<step>`` directories under ``directory``: (complete, incomplete), by step.

    A checkpoint is complete when its weights, optimizer, scheduler and trainer state are all there: a run killed
    while the trainer wrote one leaves only some of these files (e.g. ``config.json`` alone), and resuming from it
    fails for good.
    """
    complete: list[Path] = []
    incomplete: list[Path] = []
    found = [p for p in directory.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    for checkpoint in sorted(found, key=lambda p: int(p.name.split("-")[-1])):
        weights = any(checkpoint.glob("*.safetensors"))
        state = all((checkpoint / name).is_file() for name in ("optimizer.pt", "scheduler.pt", "trainer_state.json"))
        (complete if weights and state and _readable_json(checkpoint / "trainer_state.json") else incomplete).append(
            checkpoint
        )
    return complete, incomplete


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return True


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of an append-only JSON-lines log; a torn last line (a run killed mid-write) is skipped.

    Raises:
        ValueError: a malformed line that is not the last one, naming the file and line.
    """
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
    return records
