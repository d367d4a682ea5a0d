"""The one way the benchmarks in this folder time things: alternating variants, medians, spreads, honest ratios.

Import it before numpy (``import _timing`` first, then ``# isort: split``): it pins the BLAS/OpenMP thread pools to
one thread, which they read only when they load. Torch's intra-op threads are set by :func:`pin_torch_threads`, and
child processes get ``--cpu-threads``/``OMP_NUM_THREADS`` from :func:`child_env`.

A benchmark:

1. prints :func:`header` (title, date, machine, threads, load average before);
2. times its variants with :func:`alternate`: A B A B ..., ``repeats`` (>= 3) timed runs each after ``warmup``
   untimed rounds, each run's wall time by ``time.perf_counter`` plus any named seconds a variant returns (e.g.
   the training loop's own time inside a process);
3. prints each variant's median and spread (``(max - min) / median``) with :func:`print_measures`;
4. prints a ratio with :func:`print_ratio` only when both spreads are under ``max_spread``; otherwise it says that
   the machine was too busy and prints no ratio;
5. prints :func:`footer` (load average after).

The spread is the busy-machine detector: on 2 cores shared with other jobs, a variant's runs differ by 20-40%
(measured), while on a quiet machine they agree to a few percent.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no bar per model saved or loaded

__all__ = [
    "MAX_SPREAD",
    "Measure",
    "alternate",
    "child_env",
    "footer",
    "header",
    "machine",
    "pin_torch_threads",
    "print_measures",
    "print_ratio",
]

#: Largest spread ((max - min) / median of a variant's runs) at which a ratio is still printed.
MAX_SPREAD = 0.10
#: Fewest timed runs per variant: a median and a spread need three.
MIN_REPEATS = 3
#: /proc/cpuinfo flags and their names, widest first.
VECTOR_FLAGS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))


@dataclass
class Measure:
    """One quantity's timed runs (seconds) for one variant."""

    label: str
    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def spread(self) -> float:
        """``(max - min) / median``: 0.03 is a quiet machine, 0.3 a busy one."""
        return (max(self.runs) - min(self.runs)) / self.median if self.median > 0 else float("inf")


def machine() -> str:
    """CPU model, cores, vector extensions, memory, OS and Python, from /proc where there is one."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    vector = next((name for flag, name in VECTOR_FLAGS if flag in flags), "no AVX")
    memory = ""
    try:
        with open("/proc/meminfo") as handle:
            kib = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal"))
        memory = f", {kib / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    return (
        f"{model}, {os.cpu_count()} cores, {vector}{memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def pin_torch_threads(threads: int) -> int:
    """Sets torch's intra-op threads to ``threads`` (imports torch) and returns what torch reports."""
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


def child_env(threads: int) -> dict[str, str]:
    """The environment for a child process: this one's, with the OpenMP/BLAS pools at ``threads``."""
    env = dict(os.environ)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[variable] = str(threads)
    return env


def _commit() -> str:
    """The checkout's commit, with ``+changes`` when its tracked files differ from it (what was measured)."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=here, capture_output=True)
    except OSError:
        return "unknown (no git)"
    return head.stdout.strip() + (" +changes" if dirty.returncode else "") if head.returncode == 0 else "unknown"


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def header(title: str, *, threads: int | None, settings: str = "") -> None:
    """Prints what a reader needs to judge the numbers: what, when, where, how many threads (``threads``: torch's
    intra-op threads; None: no torch), how busy."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# {title}")
    if settings:
        print(f"settings: {settings}")
    print(f"date: {now}")
    print(f"machine: {machine()}")
    print(f"commit: {_commit()}")
    blas = f"BLAS/OpenMP {os.environ.get('OPENBLAS_NUM_THREADS')}"
    torch = sys.modules.get("torch")
    version = f" (torch {torch.__version__})" if torch is not None else ""
    print(f"threads: {blas} (no torch)" if threads is None else f"threads: torch intra-op {threads}{version}, {blas}")
    print(f"load average before: {_load()}")
    sys.stdout.flush()


def footer() -> None:
    print(f"load average after: {_load()}")


def alternate(
    variants: Mapping[str, Callable[[], Mapping[str, float] | None]],
    *,
    repeats: int,
    warmup: int = 0,
    progress: bool = True,
) -> dict[str, dict[str, Measure]]:
    """Runs the variants in turn, A B C A B C ..., ``warmup`` untimed rounds then ``repeats`` timed ones.

    Each run's wall time is recorded as ``"wall"``; a variant may also return named seconds it measured inside
    (e.g. ``{"train": 2.1}``), recorded under those names. Returns ``{variant: {quantity: Measure}}``.
    Alternating spreads a slow spell of the machine over every variant instead of one.
    """
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be >= {MIN_REPEATS} for a median and a spread; got {repeats}")
    for _ in range(warmup):
        for run in variants.values():
            run()
    results: dict[str, dict[str, Measure]] = {name: {} for name in variants}
    for round_index in range(repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            extra = run() or {}
            wall = time.perf_counter() - start
            for quantity, seconds in {"wall": wall, **extra}.items():
                results[name].setdefault(quantity, Measure(f"{name} [{quantity}]", [])).runs.append(seconds)
        if progress:
            print(f"  ... round {round_index + 1}/{repeats} done", file=sys.stderr, flush=True)
    return results


def _seconds(value: float) -> str:
    return f"{value * 1000:8.1f} ms" if value < 1 else f"{value:8.3f} s "


def print_measures(measures: Mapping[str, Measure], *, per: int = 1, unit: str = "") -> None:
    """One line per measure: median, spread and the runs; ``per``: divide by this (e.g. calls per run)."""
    for label, m in measures.items():
        runs = ", ".join(f"{v / per:.4g}" for v in m.runs)
        rate = f"/{unit}" if unit else ""
        print(f"  {label:44s} median {_seconds(m.median / per)}{rate}  spread {m.spread:6.1%}  (runs, s: {runs})")


def print_ratio(
    label: str, slow: Measure, fast: Measure, *, max_spread: float = MAX_SPREAD, form: str = "ratio"
) -> float | None:
    """Prints ``slow / fast`` (``form="ratio"``, as ``2.31x``) or ``slow / fast - 1`` (``form="overhead"``, as
    ``+4.2%``) from the medians, only when both spreads are under ``max_spread``; returns it, or None when withheld.
    """
    worst = max(slow.spread, fast.spread)
    if worst >= max_spread:
        print(
            f"  {label}: no ratio: spread {worst:.0%} >= {max_spread:.0%} ({slow.label} {slow.spread:.0%}, "
            f"{fast.label} {fast.spread:.0%}): the machine was too busy"
        )
        return None
    value = slow.median / fast.median
    if form == "overhead":
        print(f"  {label}: {value - 1:+.1%}  (spreads {slow.spread:.1%}, {fast.spread:.1%})")
        return value - 1
    print(f"  {label}: {value:.2f}x  (spreads {slow.spread:.1%}, {fast.spread:.1%})")
    return value
