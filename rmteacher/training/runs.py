"""What the training commands (`sft`, `train-rm`, `rl`) share around TRL's trainers: their resolved config and
identity for the run directory (:mod:`rmteacher.rundir`), resuming from the last *complete* checkpoint, an
append-only ``metrics.jsonl``, progress on stderr, and a guard that stops a diverged run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rmteacher.gguf import gguf_fingerprints
from rmteacher.rundir import RunDir, complete_checkpoints

__all__ = [
    "VOLATILE_OPTIONS",
    "divergence_guard",
    "first_non_finite",
    "last_complete_checkpoint",
    "library_progress",
    "metrics_logger",
    "progress_callback",
    "resolved_config",
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


VOLATILE_OPTIONS = ("out", "resume", "overwrite", "progress", "cpu_threads")


def resolved_config(command: str, config: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A run's ``config`` (its ``config.json``: the command, every option, the resolved inputs, library versions)
    and its ``identity`` (what its results depend on: the options but those that may change on resume, and the
    inputs), for :func:`rmteacher.rundir.open_run`."""
    options = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()}
    versions = {p: version(p) for p in ("torch", "transformers", "trl")}
    full = {"command": command, **options, "resolved_inputs": dict(inputs), "versions": versions}
    identity = {k: v for k, v in options.items() if k not in VOLATILE_OPTIONS}
    identity["resolved_inputs"] = dict(inputs)
    fingerprints = gguf_fingerprints(inputs)  # a GGUF file is a whole checkpoint: record its content, not its path
    if fingerprints:
        full["gguf_fingerprints"] = identity["gguf_fingerprints"] = fingerprints
    return {"config": full, "identity": identity}


def last_complete_checkpoint(checkpoints: Path, run: RunDir) -> str | None:
    """The newest complete ``checkpoint-<step>`` in ``checkpoints``, or None. Incomplete ones (a run killed while the
    trainer wrote them) are deleted, as they are this run's own and the trainer could not resume from them; each is
    named in ``run.notes`` and in a warning."""
    if not checkpoints.is_dir():
        return None
    complete, incomplete = complete_checkpoints(checkpoints)
    for torn in incomplete:
        note = f"skipped the incomplete checkpoint {torn.name} (a run killed while saving it)"
        run.notes.append(note)
        warnings.warn(note, stacklevel=2)
        shutil.rmtree(torn)
    return str(complete[-1]) if complete else None


def metrics_logger(path: Path, *, resumed_from: str | None = None) -> Any:
    """A ``TrainerCallback`` appending every log dict of the trainer to ``path`` as one JSON line with its step.

    Lines are written as they are logged, so a killed run keeps its log; a resumed run appends a
    ``{"event": "resume", ...}`` line and goes on appending. Steps after the checkpoint it resumed from then appear
    twice: for curves, keep the last line of each step. The trainer's closing line (``train_runtime``,
    ``train_loss``, ...; it carries the last step's number) is marked ``{"event": "summary"}``, so it is not taken
    for that step's log.
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
                summary = {"event": "summary"} if "train_runtime" in logs else {}
                append({**summary, "step": state.global_step, "time": round(time.time(), 3), **logs})

    return _MetricsLogger()


def divergence_guard(command: str) -> Any:
    """A ``TrainerCallback`` stopping training with an error when the weights or a logged loss or gradient norm are not
    finite: every later number would be wrong. The weights are checked after every optimizer step, before the trainer
    saves that step's checkpoint, so no checkpoint and no final model with NaN weights is written. The message names
    the step and what to lower."""
    from transformers import TrainerCallback

    def stop(step: int, what: str) -> FloatingPointError:
        return FloatingPointError(
            f"training diverged at step {step} ({what}); {command} stopped and saved no model from it. Lower "
            "--learning-rate"
        )

    class _DivergenceGuard(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if model is not None and (name := first_non_finite(model)) is not None:
                raise stop(state.global_step, f"weight {name} is not finite")

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            for key in ("loss", "grad_norm", "train_loss"):
                value = (logs or {}).get(key)
                if isinstance(value, float) and not math.isfinite(value):
                    raise stop(state.global_step, f"{key} = {value}")

    return _DivergenceGuard()


def first_non_finite(model: Any) -> str | None:
    """The name of the first parameter of ``model`` (a ``torch.nn.Module``) holding a NaN or an infinity, or None.

    One device-to-host transfer for the whole model: the per-tensor checks are stacked before they are read.
    """
    import torch

    named = [(name, p) for name, p in model.named_parameters() if p.numel() > 0]
    if not named:
        return None
    with torch.no_grad():
        finite = torch.stack([torch.isfinite(p).all().to(named[0][1].device) for _, p in named]).cpu()
    bad = (~finite).nonzero()
    return named[int(bad[0])][0] if len(bad) else None
