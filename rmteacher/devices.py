"""The torch device a command runs on, checked at the boundary: a typo or a missing GPU is a clear error."""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_device"]


def resolve_device(device: str | None, *, argument: str = "--device") -> Any:
    """``torch.device(device)``, or CUDA when available and ``device`` is None, else the CPU.

    Raises:
        ValueError: ``device`` is not a torch device name, or names a CUDA/MPS device this machine does not have.
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{argument} {device!r}: not a torch device; use cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{argument} {device!r}: this machine has no CUDA device (use cpu)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"{argument} {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{argument} {device!r}: MPS is not available on this machine")
    return resolved
