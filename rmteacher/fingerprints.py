"""Content fingerprints: caches are valid for the same content, not the same path.

A reward model retrained in place keeps its path but not its weights; a score cache keyed by the path would serve
the old model's scores. A fingerprint of a model directory reads its config and the safetensors headers (which
hold every tensor's name, dtype, shape and byte range) plus a digest of the weight bytes sampled at a few offsets,
so it is cheap for multi-gigabyte models and changes when the weights do.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path

__all__ = ["cache_root", "exclusive_lock", "file_digest", "reward_fingerprint"]

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_SAMPLED_BLOCKS = 16
_BLOCK = 1 << 16


def file_digest(path: Path, *, full: bool = False) -> str:
    """Digest of a file: every byte when ``full`` or small, else its size and evenly spread sampled blocks."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with path.open("rb") as handle:
        if full or size <= _SAMPLED_BLOCKS * _BLOCK:
            while block := handle.read(1 << 24):  # in pieces: a GGUF file can be gigabytes
                digest.update(block)
        else:
            for index in range(_SAMPLED_BLOCKS):
                handle.seek(index * (size - _BLOCK) // (_SAMPLED_BLOCKS - 1))
                digest.update(handle.read(_BLOCK))
    return digest.hexdigest()


def cache_root() -> Path:
    """Where rmteacher keeps what it builds once (the sandbox task, converted GGUF checkpoints):
    ``$RMTEACHER_CACHE`` when the variable is set, else ``~/.cache/rmteacher``."""
    base = os.environ.get("RMTEACHER_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "rmteacher"


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block (released by the OS if the process dies), so concurrent
    builders of one cache entry (pytest-xdist workers, ``accelerate launch`` ranks) build it once."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _safetensors_header(path: Path) -> bytes:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return handle.read(min(length, 100_000_000))


def reward_fingerprint(target: str) -> str:
    """A fingerprint of a model's or reward's content: a model directory's config, tokenizer and weights, a GGUF
    file's bytes, or a callable's module source. A hub id that is not a local directory is fingerprinted by its name
    (the hub's revision is what the user's cache holds)."""
    digest = hashlib.sha256(target.encode())
    local = Path(target).expanduser()
    if local.is_dir():
        for path in sorted(local.rglob("*")):
            if not path.is_file():
                continue
            digest.update(str(path.relative_to(local)).encode())
            if path.suffix == ".safetensors":
                digest.update(_safetensors_header(path))
                digest.update(file_digest(path).encode())
            elif path.suffix in (".json", ".txt", ".model", ".jinja"):
                digest.update(file_digest(path, full=True).encode())
    elif local.is_file() and local.suffix.lower() == ".gguf":
        digest.update(file_digest(local, full=True).encode())
    elif _CALLABLE.match(target):
        module = target.split(":")[0]
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            digest.update(file_digest(Path(spec.origin), full=True).encode())
    return digest.hexdigest()[:16]
