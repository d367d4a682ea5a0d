"""GGUF files given on the command line, converted before the command's work starts, with a line on stderr.

The library converts a ``.gguf`` file silently where it loads one (:func:`rmteacher.loading.checkpoint_directory`);
the command line does it first, so the user reads why the first run waits (about 20 s for a 135M model) and where
the converted checkpoint is kept, and a file that cannot be converted fails before anything else is done.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["convert_gguf_inputs"]


def convert_gguf_inputs(command: str, inputs: Mapping[str, str | None], *, progress: bool) -> None:
    """Converts each GGUF file among ``inputs`` (flag -> path) that the cache does not hold yet, saying so.

    Raises:
        ValueError: a GGUF file that is missing or cannot be converted, naming the flag, the file and why.
    """
    from rmteacher.gguf import GGUFError, cached_conversion, convert_gguf, default_cache_dir, is_gguf_path

    for flag, path in inputs.items():
        if not path or not is_gguf_path(path):
            continue
        if not Path(path).expanduser().is_file():
            raise ValueError(f"{flag} {path!r}: no such file")
        if cached_conversion(path) is not None:
            continue
        print(
            f"rmteacher {command}: {flag} {path} is a GGUF file; converting it once to a safetensors checkpoint in "
            f"{default_cache_dir()} (about 20 s for a 135M model; later runs reuse it)",
            file=sys.stderr,
        )
        try:
            convert_gguf(path, progress=progress)
        except GGUFError as error:
            raise ValueError(f"{flag} {path!r}: {error}") from None
