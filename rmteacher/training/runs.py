"""Run directories and process settings shared by the training commands (`sft`, `train-rm`).

A run directory holds one run: its resolved ``config.json`` (a directory holding another run is refused unless
``--resume`` or ``--overwrite``), an append-only ``metrics.jsonl``, and checkpoints to resume from. Training on a
CPU uses few torch threads (``--cpu-threads``): on a busy 2-core machine two threads made each step 6-15x slower.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rmteacher.tables import write_json_atomic

__all__ = [
    "CPU_THREADS_HELP",
    "VOLATILE_OPTIONS",
    "cpu_threads",
    "last_checkpoint",
    "library_progress",
    "metrics_logger",
    "prepare_run_dir",
    "progress_callback",
    "resolved_config",
    "start_run_dir",
    "torch_threads",
]


@contextlib.contextmanager
def library_progress(enabled: bool) -> Iterator[None]:
    """Turns the ``datasets`` and ``transformers`` progress bars off for the block unless ``enabled``; restores them."""
    from datasets.utils import logging as datasets_logging
    from transformers.utils import logging as transformers_logging

    datasets_was, transformers_was = (m.is_progress_bar_enabled() for m in (datasets_logging, transformers_logging))
    if not enabled:
        datasets_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if datasets_was:
            datasets_logging.enable_progress_bar()
        if transformers_was:
            transformers_logging.enable_progress_bar()


def progress_callback(desc: str) -> Any:
    """A ``TrainerCallback`` drawing one tqdm bar on stderr with the latest loss (the trainer's own bar prints logs)."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,  # a resumed run starts at its checkpoint's step
                desc=desc,
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                disable=not state.is_world_process_zero,
            )

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.close()

    return _Progress()


VOLATILE_OPTIONS = ("out", "resume", "overwrite", "progress", "cpu_threads", "versions")


def prepare_run_dir(out: Path, resolved: dict[str, Any], *, resume: bool, overwrite: bool) -> bool:
    """Checks that ``out`` may hold this run; returns whether it continues an earlier run of the same identity.

    Read-only, so every process of a multi-process launch can call it before the main one writes
    (:func:`start_run_dir`). ``resolved`` is the run's ``config.json``: its ``command``, options and resolved inputs.

    Raises:
        ValueError: ``out`` holds files of something else, or a run with other options (naming them), or the same run
            without ``--resume``/``--overwrite``.
    """
    if overwrite or not out.exists() or not any(out.iterdir()):
        return False
    command = resolved["command"]
    saved = out / "config.json"
    if not saved.is_file():
        raise ValueError(
            f"--out {out}: not empty and not an rmteacher {command} run; pass --overwrite or another --out"
        )
    previous = json.loads(saved.read_text())
    if previous.get("command") != command:
        raise ValueError(
            f"--out {out}: holds an rmteacher {previous.get('command')!r} run, not {command!r}; "
            "pass --overwrite or another --out"
        )
    keys = (set(previous) | set(resolved)) - set(VOLATILE_OPTIONS)
    changed = sorted(k for k in keys if previous.get(k) != resolved.get(k))
    if changed:
        shown = ", ".join(f"{k} ({previous.get(k)!r} there, {resolved.get(k)!r} now)" for k in changed)
        raise ValueError(f"--out {out}: holds a different run: {shown}; pass --overwrite or another --out")
    if not resume:
        raise ValueError(f"--out {out}: holds a previous run; pass --resume to continue it or --overwrite")
    return True


def start_run_dir(out: Path, resolved: dict[str, Any], *, overwrite: bool) -> None:
    """Empties ``out`` when ``overwrite`` and writes ``config.json`` (main process only)."""
    if overwrite and out.exists():
        shutil.rmtree(out)
    write_json_atomic(out / "config.json", resolved)


def resolved_config(command: str, config: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``config.json`` of a run: the command, every option, the resolved inputs and the library versions."""
    options = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()}
    versions = {p: version(p) for p in ("torch", "transformers", "trl")}
    return {"command": command, **options, "resolved_inputs": dict(inputs), "versions": versions}


def last_checkpoint(checkpoints: Path) -> str | None:
    """The newest ``checkpoint-<step>`` directory the trainer saved in ``checkpoints``, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None


def metrics_logger(path: Path, *, resumed_from: str | None = None) -> Any:
    """A ``TrainerCallback`` appending every log dict of the trainer to ``path`` as one JSON line with its step.

    Lines are written as they are logged, so a killed run keeps its log; a resumed run appends a
    ``{"event": "resume", ...}`` line and goes on appending. Steps after the checkpoint it resumed from then appear
    twice: for curves, keep the last line of each step.
    """
    from transformers import TrainerCallback

    def append(row: Mapping[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    class _MetricsLogger(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if resumed_from is not None and state.is_world_process_zero:
                append({"event": "resume", "checkpoint": Path(resumed_from).name, "step": state.global_step})

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and state.is_world_process_zero:
                append({"step": state.global_step, "time": round(time.time(), 3), **logs})

    return _MetricsLogger()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Sets torch's intra-op threads for the block (None leaves them), then restores them.

    A model of a few hundred thousand parameters trains several times faster on one thread than on two busy cores
    (the sandbox builder measured 60-73 ms against 430-1030 ms per step; sampling 1000 sequences took 0.4 s against
    9-20 s), and the thread count changes float sums, so reproducing the sandbox policy bit for bit needs the
    builder's single thread.
    """
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


CPU_THREADS_HELP = (
    "torch threads when training on a CPU: 1 is fastest for sandbox-sized models (2 threads on 2 busy cores were "
    "up to 50x slower); raise it for larger models; 0 keeps torch's default"
)


def cpu_threads(threads: int) -> int | None:
    """The torch thread count to set for a run: ``threads`` on a CPU-only machine, None (leave it) with CUDA or 0."""
    import torch

    return None if threads == 0 or torch.cuda.is_available() else threads
