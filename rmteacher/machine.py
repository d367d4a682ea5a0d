"""The machine a run's numbers came from: CPU model, the CPU features that change floating-point results, torch.

Training on two CPUs with the same pinned stack gives different policies: the kernels torch picks (AVX2, AVX-512,
AMX for bfloat16) sum in different orders, and the differences grow over RL steps (issue 19: one study's
ground-truth finding reproduced on one machine and not on another). A study records this next to its results
(``machine.json``) so that a report names the machine the study ran on, not the one that renders the report.
"""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any

__all__ = ["FLOAT_FLAGS", "describe_machine", "machine_text"]

#: /proc/cpuinfo flags that select torch's CPU kernels (and so change float sums), widest first.
FLOAT_FLAGS = (
    "amx_tile",
    "amx_bf16",
    "amx_fp16",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vnni",
    "avx2",
    "fma",
    "f16c",
    "avx",
)


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def describe_machine(*, torch_threads: int, workers: int) -> dict[str, Any]:
    """What a study records of the machine: CPU model, usable cores, the float-relevant flags present and absent
    (:data:`FLOAT_FLAGS`), the torch/numpy/Python versions, torch threads per process and worker processes."""
    import numpy
    import torch

    model, flags = _cpuinfo()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": model,
        "usable_cores": cores,
        "flags": [flag for flag in FLOAT_FLAGS if flag in flags],
        "flags_absent": [flag for flag in FLOAT_FLAGS if flag not in flags] if flags else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "torch_threads": torch_threads,
        "workers": workers,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_text(machine: dict[str, Any]) -> str:
    """One line: ``AMD EPYC 7B13 (2 usable cores; avx512f, avx2, fma, f16c, avx; no AMX), torch 2.13.0, ...``."""
    flags = ", ".join(machine["flags"]) or "none of " + ", ".join(FLOAT_FLAGS)
    if machine.get("flags_absent") is None:
        flags = "CPU flags unknown"
    elif not any(flag.startswith("amx") for flag in machine["flags"]):
        flags += "; no AMX"
    threads = machine["torch_threads"]
    thread_text = "torch's default threads" if threads == 0 else f"{threads} torch thread{'s' if threads != 1 else ''}"
    workers = machine["workers"]
    cuda = f", CUDA {machine['cuda']}" if machine.get("cuda") else ""
    return (
        f"{machine['cpu']} ({machine['usable_cores']} usable cores; {flags}), torch {machine['torch']}{cuda}, numpy "
        f"{machine['numpy']}, Python {machine['python']}, {machine['os']}; {thread_text} in each of {workers} "
        f"worker process{'es' if workers != 1 else ''}"
    )
