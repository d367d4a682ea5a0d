"""GGUF checkpoints (llama.cpp's single-file format) as plain safetensors directories, converted once and cached.

transformers reads a ``.gguf`` file with the ``gguf`` package (``from_pretrained(dir, gguf_file=name)``) and
dequantizes its weights to float32; the tokenizer, chat template and generation config come from the file's
metadata. A model loaded that way refuses ``save_pretrained`` (its ``hf_quantizer`` says "gguf"), so a policy trained
from it could not write its checkpoints. Here the file is loaded once, the GGUF quantizer record is dropped (the
weights in memory are plain float32 tensors by then) and the model, its tokenizer and generation config are saved as
a safetensors directory. Every later load is an ordinary directory load, and everything rmteacher writes from it
(RL and sft checkpoints, ``policy/``, trained reward models) is a plain checkpoint.

The cache entry is content-addressed: ``<cache>/gguf/<stem>-<key>/``, the key a digest of the file's bytes and the
transformers and gguf versions that converted it. It is built in a temporary directory and renamed into place
under a lock, ``gguf.json`` (the record of the source file, its fingerprint and architecture) written last, so
concurrent processes build it once and an entry either is complete or does not exist. ``$RMTEACHER_CACHE`` moves
the cache, as for the sandbox task.

Loading a GGUF file takes about 20 s for a 135M-parameter model on one CPU core (transformers parses the metadata in
Python); a converted directory loads in about a second.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path

from rmteacher.fingerprints import cache_root, exclusive_lock, file_digest
from rmteacher.tables import write_json_atomic

__all__ = [
    "RECORD",
    "GGUFError",
    "cached_conversion",
    "convert_gguf",
    "default_cache_dir",
    "gguf_fingerprint",
    "gguf_fingerprints",
    "is_gguf_path",
]

#: The record of a converted entry, written last: its presence means the entry is complete.
RECORD = "gguf.json"
# Bump when the layout of a converted entry changes.
FORMAT_VERSION = 1


class GGUFError(ValueError):
    """A GGUF file that cannot be converted (not a GGUF file, or an architecture transformers cannot load)."""


def default_cache_dir() -> Path:
    """``$RMTEACHER_CACHE/gguf`` when the variable is set, else ``~/.cache/rmteacher/gguf``."""
    return cache_root() / "gguf"


def is_gguf_path(path: str | Path) -> bool:
    """Whether ``path`` names a GGUF file (by its ``.gguf`` suffix; a directory of that name is a directory)."""
    return str(path).lower().endswith(".gguf") and not Path(path).expanduser().is_dir()


def gguf_fingerprint(path: Path | str) -> str:
    """A digest of every byte of the file (its metadata holds the tokenizer and chat template, so sampling the
    weights alone would miss an edited template): 0.2 s for 93 MB, computed once per process and file version."""
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    return _digest(resolved, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    return file_digest(path, full=True)[:16]


def gguf_fingerprints(inputs: Mapping[str, object]) -> dict[str, str]:
    """``{name: fingerprint}`` of every value of ``inputs`` that is an existing GGUF file, for a run's config.json:
    a GGUF file is a checkpoint by itself, so its path alone does not say which model a run used."""
    return {
        name: gguf_fingerprint(value)
        for name, value in inputs.items()
        if isinstance(value, str | Path) and is_gguf_path(value) and Path(value).expanduser().is_file()
    }


def _entry(path: Path, cache_dir: Path | None) -> tuple[Path, str]:
    digest = hashlib.sha256(f"format {FORMAT_VERSION}".encode())
    digest.update(gguf_fingerprint(path).encode())
    for name in ("transformers", "gguf"):
        digest.update(f"{name}=={version(name)}".encode())
    stem = re.sub(r"[^\w.\-]", "_", path.stem)[:80]
    key = f"{stem}-{digest.hexdigest()[:16]}"
    return (cache_dir if cache_dir is not None else default_cache_dir()) / key, key


def cached_conversion(path: Path | str, *, cache_dir: Path | None = None) -> Path | None:
    """The converted directory of the GGUF file ``path`` when the cache has it, else None."""
    root, _ = _entry(Path(path).expanduser(), cache_dir)
    return root if (root / RECORD).is_file() else None


def convert_gguf(path: Path | str, *, cache_dir: Path | None = None, progress: bool = False) -> Path:
    """The safetensors directory of the GGUF file ``path``: from the cache, or converted into it (about 20 s for a
    135M model).

    Args:
        path: a ``.gguf`` file.
        cache_dir: where converted checkpoints are kept; :func:`default_cache_dir` when not given.
        progress: show transformers' progress bars while converting.

    Returns:
        A directory with ``config.json``, ``generation_config.json``, ``model.safetensors`` (float32), the tokenizer
        and chat template, and :data:`RECORD` (source file, fingerprint, architecture, versions).

    Raises:
        GGUFError: ``path`` is not a GGUF file, or holds an architecture transformers cannot load as a causal LM
            (the message names it, not the path: callers name the argument and path).
    """
    source = Path(path).expanduser().resolve()
    if not source.is_file():
        raise GGUFError("no such file")
    root, key = _entry(source, cache_dir)
    if (root / RECORD).is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(root.parent / f".{key}.lock"):
        if (root / RECORD).is_file():  # another process converted it while we waited
            return root
        scratch = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{key}.tmp-"))
        try:
            start = time.perf_counter()
            architecture = _convert_into(scratch, source, progress=progress)
            record = {
                "source": str(source),
                "fingerprint": gguf_fingerprint(source),
                "architecture": architecture,
                "versions": {name: version(name) for name in ("transformers", "gguf")},
                "seconds": round(time.perf_counter() - start, 1),
            }
            write_json_atomic(scratch / RECORD, record)
            if root.exists():  # an incomplete entry (no record) left by a crash
                shutil.rmtree(root)
            scratch.rename(root)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return root


def _convert_into(out: Path, source: Path, *, progress: bool) -> str:
    """Loads ``source`` with transformers' GGUF support and saves it into ``out``; returns its architecture."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        # trust_remote_code stays off: a GGUF file is read by transformers' own classes only.
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise GGUFError(_reason(source, error)) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    # The weights are dequantized float32 tensors by now; only the record of the GGUF quantizer blocks saving.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(model.config.model_type)


def _reason(source: Path, error: BaseException) -> str:
    """Why ``source`` cannot be converted, naming its architecture when the file says one."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    architecture = _architecture(source)
    if architecture is None:
        return f"not a GGUF file transformers can read ({detail})"
    return (
        f"GGUF architecture {architecture!r} cannot be loaded as a causal LM by transformers "
        f"{version('transformers')} ({detail}); its GGUF support covers {', '.join(_supported())}"
    )


def _architecture(source: Path) -> str | None:
    """``general.architecture`` of a GGUF file, read with the ``gguf`` package; None when it is not one."""
    try:
        from gguf import GGUFReader

        field = GGUFReader(source).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError):
        return None


def _supported() -> list[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return [a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer")]
