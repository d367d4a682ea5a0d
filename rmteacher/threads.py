"""Torch threads on a CPU: one per process by default.

On a 2-core machine, torch's default of one thread per core collapses as soon as anything else runs: measured with
one core busy, ``evaluate`` took 25-45 s instead of 11 s and 20 ``rl`` steps 168 s instead of 12-14 s, while one
thread on a quiet machine costs nothing at sandbox size (12.5-14.5 s against 12.8-14.7 s). The thread count also
changes float sums, so reproducing a run bit for bit needs the same count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["CPU_THREADS_HELP", "cpu_threads", "torch_threads"]

CPU_THREADS_HELP = (
    "torch threads on a CPU-only machine: 1 is fastest for sandbox-sized models and robust on a busy machine (2 "
    "threads on 2 busy cores were up to 50x slower); raise it for larger models; 0 keeps torch's default"
)


def cpu_threads(threads: int) -> int | None:
    """The torch thread count to set for a run: ``threads`` on a CPU-only machine, None (leave it) with CUDA or 0."""
    import torch

    return None if threads == 0 or torch.cuda.is_available() else threads


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Sets torch's intra-op threads for the block (None leaves them), then restores them."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
