"""A study's independent stages (RL runs, reward-model trainings) in worker processes, one torch thread each.

The study's RL runs are independent of each other (each has its own seed and directory) and so are its reward-model
trainings: :func:`run_stages` runs the incomplete ones of a batch in a ``concurrent.futures.ProcessPoolExecutor``
with the ``spawn`` start method (forking a process that has loaded torch is unsafe: its thread pools and locks are
copied mid-state). Each job runs :meth:`rmteacher.study.stages.Stages.run` in its worker, so it writes the same
``stage.json`` with the same fingerprint as a sequential run; the number of workers is in no fingerprint. A run's
numbers depend on its seed and on its torch thread count only (:mod:`rmteacher.threads`), so with the same
``--cpu-threads`` the results are bit-identical to ``--workers 1`` (``tests/study/test_workers.py``).

A worker that dies (killed, e.g. by the out-of-memory killer) breaks the pool: the batch stops with
``ChildProcessError``, the stages finished so far keep their ``stage.json``, and ``--resume`` redoes the rest.

How many workers by default (:func:`default_workers`): one per usable core (``os.sched_getaffinity``), at most one
per :func:`worker_memory` bytes of the memory available now (``MemAvailable`` in ``/proc/meminfo``), at least one.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rmteacher.study.stages import Stages

__all__ = [
    "BASE_WORKER_MEMORY",
    "KILL_STAGE_VARIABLE",
    "WEIGHTS_MEMORY_FACTOR",
    "StageJob",
    "default_workers",
    "run_stages",
    "study_workers",
    "worker_memory",
]

#: Memory of a worker before any model: Python, torch, transformers and TRL imported (measured about 0.6 GiB of
#: RSS for a sandbox RL run on 2026-12-06, rounded up).
BASE_WORKER_MEMORY = 2**30
#: A worker's memory per byte of the policy's weights in float32: the policy, its reference copy, gradients, Adam's
#: two moments and activations (SmolLM2-135M: 0.54 GB of float32 weights, 5-7 GB RSS in RL, hence 12).
WEIGHTS_MEMORY_FACTOR = 12
#: Test hook: a worker about to run the stage of this name kills itself (SIGKILL), as the out-of-memory killer would.
KILL_STAGE_VARIABLE = "RMTEACHER_TEST_KILL_STAGE"


@dataclass(frozen=True)
class StageJob:
    """One stage to run: its name (directory under the run), its fingerprinted inputs, and the function that makes
    it, ``fn(directory) -> result``; ``fn`` must pickle (a module-level function or a ``functools.partial`` of one)
    to run in a worker process."""

    name: str
    inputs: dict[str, Any]
    fn: Callable[[Path], dict[str, Any]]


def _policy_weight_bytes(policy: str | None) -> int | None:
    """The float32 size of a local policy's weights from its files (4-bit GGUF counted x8), or None when unknown."""
    if policy is None or not Path(policy).is_dir():
        return None
    total = 0
    for path in Path(policy).iterdir():
        if path.suffix in (".safetensors", ".bin"):
            total += path.stat().st_size  # bfloat16 files under-count float32 by 2x; the factor has headroom
        elif path.suffix == ".gguf":
            total += 8 * path.stat().st_size
    return total or None


def worker_memory(policy: str | None) -> int:
    """Bytes one worker is allowed for: :data:`BASE_WORKER_MEMORY` plus :data:`WEIGHTS_MEMORY_FACTOR` x the
    policy's weights when it is a local directory; 8 GiB for a policy whose size is unknown (a hub id)."""
    weights = _policy_weight_bytes(policy)
    if weights is None:
        return 8 * 2**30 if policy is not None else BASE_WORKER_MEMORY
    return BASE_WORKER_MEMORY + WEIGHTS_MEMORY_FACTOR * weights


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return None


def default_workers(policy: str | None) -> tuple[int, str]:
    """The default number of workers and the rule that gave it, as one sentence for the command to print.

    One per usable core (``len(os.sched_getaffinity(0))``), capped at ``MemAvailable // worker_memory(policy)``,
    at least one.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_worker = worker_memory(policy)
    available = _available_memory()
    if available is None:
        return max(1, cores), f"{cores} usable cores (available memory unknown: not capped)"
    by_memory = available // per_worker
    workers = max(1, min(cores, by_memory))
    return workers, (
        f"{cores} usable cores, {available / 2**30:.1f} GiB available at {per_worker / 2**30:.1f} GiB per worker "
        f"(room for {by_memory})"
    )


def study_workers(workers: int | None, *, quick: bool, policy: str | None) -> tuple[int, str]:
    """A study's number of workers and why: ``--workers`` when given (> 0); 1 for a ``--quick`` study left at the
    default (its 2-s runs cost less than a worker's start-up, docs/guides/study.md); else :func:`default_workers`."""
    if workers:
        return workers, "--workers"
    if workers is None and quick:
        return 1, "--quick's default"
    return default_workers(policy)


def _start_worker() -> None:
    """Each worker process: the warnings filter and the quiet hub bars of the command line (`rmteacher.cli`)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)


def _run_in_worker(root: Path, job: StageJob) -> None:
    if os.environ.get(KILL_STAGE_VARIABLE) == job.name:
        os.kill(os.getpid(), signal.SIGKILL)
    Stages(root).run(job.name, job.inputs, job.fn)


def run_stages(
    stages: Stages,
    jobs: Sequence[StageJob],
    *,
    workers: int,
    desc: str,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """Runs the incomplete ``jobs`` (``workers`` at a time, in worker processes when more than one) and returns
    every job's result by name, as :meth:`Stages.run` returns it. One progress bar counts the batch's jobs.

    Raises:
        ChildProcessError: a worker process died; the stages it and the others had not finished are redone by
            ``--resume``.
        Exception: a job's own error, as it would be raised by a sequential run (the other jobs running then are
            finished, none is started).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    pending = [job for job in jobs if not stages.complete(job.name, job.inputs)]
    with tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=desc, disable=not progress) as bar:
        if workers == 1 or len(pending) <= 1:
            for job in pending:
                stages.run(job.name, job.inputs, job.fn)
                bar.update()
        else:
            _run_in_pool(stages, pending, min(workers, len(pending)), bar)
    # Every stage is complete now: this reads each one's record.
    return {job.name: stages.run(job.name, job.inputs, job.fn) for job in jobs}


def _run_in_pool(stages: Stages, jobs: Sequence[StageJob], workers: int, bar: Any) -> None:
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker)
    futures: dict[Future[None], StageJob] = {pool.submit(_run_in_worker, stages.root, job): job for job in jobs}
    try:
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)  # the bar moves with each run
            for future in done:
                error = future.exception()
                if isinstance(error, BrokenProcessPool):
                    unfinished = sorted(job.name for f, job in futures.items() if not _finished(f))
                    raise ChildProcessError(
                        f"a worker process died while running stage(s) {_names(unfinished)} (killed, e.g. by the "
                        f"out-of-memory killer: try fewer --workers); the {len(jobs) - len(unfinished)} stage(s) "
                        "finished so far are kept: rerun the same command with --resume to do the rest"
                    ) from error
                if error is not None:
                    raise error
                bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _finished(future: Future[None]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _names(names: Sequence[str], shown: int = 4) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")
