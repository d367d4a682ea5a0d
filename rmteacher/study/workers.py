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

With ``--launcher ray`` (:class:`Launcher`) the same jobs go to a Ray cluster instead (Ray, an optional extra, is what
OpenRLHF and verl use; there is no scheduler of our own): each pending job is a Ray task running the same
:func:`_run_in_worker`, with ``--cpu-threads`` CPUs and one GPU where the cluster has GPUs. The tasks write into the run
directory themselves, so it must be on a filesystem every node sees at the same path; after the batch the driver reads
every stage's ``stage.json`` and says so where one is missing. Without ``--ray-address`` (and ``RAY_ADDRESS``) a local
Ray instance with ``--workers`` x ``--cpu-threads`` CPUs is started for the batch and stopped after it; a cluster the
command connected to is only disconnected from.

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
from typing import TYPE_CHECKING, Any, Literal

from tqdm.auto import tqdm

from rmteacher.study.stages import RAY_MISSING, Stages

if TYPE_CHECKING:
    from types import ModuleType

    from rmteacher.study.stages import StudyConfig

__all__ = [
    "BASE_WORKER_MEMORY",
    "KILL_STAGE_VARIABLE",
    "WEIGHTS_MEMORY_FACTOR",
    "Launcher",
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


@dataclass(frozen=True)
class Launcher:
    """Where :func:`run_stages` runs a batch's jobs: ``local`` (this machine's processes) or ``ray`` (tasks on the Ray
    cluster at ``ray_address``, None: Ray's ``RAY_ADDRESS``, else a new local instance), ``cpus_per_task`` CPUs each
    (a run's torch threads)."""

    kind: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    cpus_per_task: int = 1

    @classmethod
    def of(cls, config: StudyConfig) -> Launcher:
        """The study's ``--launcher``, ``--ray-address`` and ``--cpu-threads`` (0, torch's default: 1 CPU)."""
        return cls(config.launcher, config.ray_address, config.cpu_threads or 1)


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
    launcher: Launcher = Launcher(),
) -> dict[str, dict[str, Any]]:
    """Runs the incomplete ``jobs`` (``workers`` at a time, in worker processes when more than one; on Ray with
    ``launcher.kind == "ray"``) and returns every job's result by name, as :meth:`Stages.run` returns it. One
    progress bar counts the batch's jobs.

    Raises:
        ChildProcessError: a worker process (or Ray worker or node) died; the stages it and the others had not
            finished are redone by ``--resume``.
        FileNotFoundError: Ray: a task finished but its ``stage.json`` is not in the run directory here (not on a
            filesystem the nodes share).
        ValueError: Ray: not installed, or no node has ``launcher.cpus_per_task`` CPUs.
        Exception: a job's own error, as it would be raised by a sequential run (the process pool finishes the other
            jobs running then and starts none; Ray cancels them).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    pending = [job for job in jobs if not stages.complete(job.name, job.inputs)]
    with tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=desc, disable=not progress) as bar:
        if launcher.kind == "ray" and pending:
            _run_on_ray(stages, pending, workers, launcher, bar)
        elif workers == 1 or len(pending) <= 1:
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


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as error:
        raise ValueError(RAY_MISSING) from error
    return ray


def _run_ray_task(cwd: str, root: Path, job: StageJob) -> None:
    """A Ray task: the worker set-up of the process pool, then the same stage as a sequential run, from the command's
    working directory where this node has it (a Ray worker starts elsewhere): relative paths in the options, e.g. the
    default ``--out runs/study``, then name the same files on a shared filesystem as on the head node."""
    _start_worker()
    if os.path.isdir(cwd):
        os.chdir(cwd)
    _run_in_worker(root, job)


def _run_on_ray(stages: Stages, jobs: Sequence[StageJob], workers: int, launcher: Launcher, bar: Any) -> None:
    ray = _import_ray()
    started = not ray.is_initialized()  # a Ray the caller connected to is theirs to shut down
    if started:
        quiet: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": False}
        if launcher.ray_address is None and not os.environ.get("RAY_ADDRESS"):
            # A new local instance: "local" rather than Ray's default, which would join a cluster `ray start` left
            # running on this machine (--ray-address auto does that on purpose).
            ray.init(address="local", num_cpus=workers * launcher.cpus_per_task, **quiet)
        else:
            ray.init(address=launcher.ray_address, **quiet)
    try:
        _run_tasks(ray, stages, jobs, launcher, bar)
    finally:
        if started:
            ray.shutdown()  # stops a local instance we started; only disconnects from a cluster
    _check_shared(stages, jobs)


def _run_tasks(ray: ModuleType, stages: Stages, jobs: Sequence[StageJob], launcher: Launcher, bar: Any) -> None:
    resources = ray.cluster_resources()
    largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]), default=0)
    if largest < launcher.cpus_per_task:
        # Ray would wait forever for a node with that many CPUs.
        raise ValueError(
            f"--cpu-threads {launcher.cpus_per_task}: no node of the Ray cluster has that many CPUs (the largest has "
            f"{largest:g}); lower --cpu-threads"
        )
    # One GPU per run where the cluster has GPUs (Ray sets CUDA_VISIBLE_DEVICES for the task); max_retries=0: a run
    # whose worker died is redone by --resume, as with the process pool, not silently by Ray.
    task = ray.remote(_run_ray_task).options(
        num_cpus=launcher.cpus_per_task, num_gpus=1 if resources.get("GPU", 0) > 0 else 0, max_retries=0
    )
    refs = {task.remote(os.getcwd(), stages.root.absolute(), job): job for job in jobs}
    remaining = list(refs)
    try:
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1)
            try:
                ray.get(done[0])
            except ray.exceptions.RayTaskError as error:
                cause = error.cause
                raise (cause if isinstance(cause, Exception) else error) from error
            except (
                ray.exceptions.WorkerCrashedError,
                ray.exceptions.NodeDiedError,
                ray.exceptions.LocalRayletDiedError,
                ray.exceptions.OutOfMemoryError,
            ) as error:
                unfinished = sorted(job.name for job in jobs if not stages.complete(job.name, job.inputs))
                raise ChildProcessError(
                    f"a Ray worker died while running stage(s) {_names(unfinished)} ({type(error).__name__}: "
                    "killed, e.g. by the out-of-memory killer, or its node was lost); the "
                    f"{len(jobs) - len(unfinished)} stage(s) finished so far are kept: rerun the same command with "
                    "--resume to do the rest"
                ) from error
            bar.update()
    finally:
        for ref in remaining:  # after an error: the other runs stop (a stage without stage.json is redone)
            ray.cancel(ref, force=True)


def _check_shared(stages: Stages, jobs: Sequence[StageJob]) -> None:
    """Raises ``FileNotFoundError`` when a job that ran on Ray left no ``stage.json`` that this process sees."""
    missing = [job.name for job in jobs if not stages.complete(job.name, job.inputs)]
    if missing:
        raise FileNotFoundError(
            f"--launcher ray: stage(s) {_names(missing)} finished on the Ray cluster, but their stage.json is not in "
            f"{stages.root} here: the run directory (--out) must be on a filesystem every node sees, at the same path "
            "(e.g. NFS); the stages' results are on the nodes that ran them"
        )


def _finished(future: Future[None]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _names(names: Sequence[str], shown: int = 4) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")
