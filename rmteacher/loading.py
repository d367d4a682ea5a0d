"""Loading checkpoints: policies (causal LMs) and their tokenizers, from a local directory, a hub id or a GGUF file.

Weights load from safetensors only and ``trust_remote_code`` stays off unless asked for; nothing is unpickled. A
``.gguf`` file (llama.cpp's format) is converted once into a safetensors directory in rmteacher's cache
(:mod:`rmteacher.gguf`) and loaded from there, so everything trained from it saves as a plain checkpoint. Reward
specs (``NAME=PATH_OR_CALLABLE``) are parsed here; rewards themselves are built by :mod:`rmteacher.rewards`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from rmteacher.devices import resolve_device
from rmteacher.gguf import GGUFError, convert_gguf, is_gguf_path

__all__ = [
    "CALLABLE_SPEC",
    "DTYPES",
    "Dtype",
    "ModelLoadError",
    "check_safetensors",
    "checkpoint_directory",
    "default_max_length",
    "load_policy",
    "load_pretrained",
    "load_tokenizer",
    "parse_reward_spec",
    "placement",
    "quiet_loading",
]

# ``package.module:function``: a callable; anything else is a model path or hub id.
CALLABLE_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# A hub id as huggingface_hub validates it: ``name`` or ``owner/name``, letters, digits, ``-_.``, no ``--``/``..``.
_HUB_ID = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9][\w.\-]{0,95}(/[A-Za-z0-9][\w.\-]{0,95})?$")

Dtype = Literal["auto", "bfloat16", "float16", "float32"]
#: The ``dtype`` values :func:`load_policy` and :func:`rmteacher.rewards.load_reward` accept (None: transformers'
#: default).
DTYPES: tuple[str, ...] = ("auto", "bfloat16", "float16", "float32")


class ModelLoadError(ValueError):
    """A policy or reward model that cannot be loaded (the message says which and why)."""


def parse_reward_spec(spec: str, *, argument: str = "--reward-model") -> tuple[str, str]:
    """Splits ``NAME=PATH_OR_CALLABLE``; a bare path or callable is named after its last component."""
    name, sep, target = spec.partition("=")
    if not sep:
        target = spec
        name = spec.rsplit(":", 1)[-1] if CALLABLE_SPEC.match(spec) else Path(spec.rstrip("/")).name
    name, target = name.strip(), target.strip()
    if not name or not target:
        raise ValueError(f"{argument} {spec!r}: expected NAME=PATH_OR_CALLABLE, e.g. rm=./my-rm or gt=pkg.mod:fn")
    if not re.fullmatch(r"[\w.\-]+", name):
        raise ValueError(f"{argument} {spec!r}: the name {name!r} may hold only letters, digits, '_', '-' and '.'")
    return name, target


def placement(kind: str, device: str | None, dtype: str | None, device_map: Any) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for ``dtype`` and ``device_map`` (validated)."""
    if dtype is not None and dtype not in DTYPES:
        raise ModelLoadError(f"{kind}: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if device is not None and device_map is not None:
        raise ModelLoadError(f"{kind}: give a device ({device!r}) or a device_map ({device_map!r}), not both")
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    return kwargs


def _hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` set (now or when huggingface_hub was imported), or the hub's endpoint unreachable."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"} or constants.HF_HUB_OFFLINE:
        return True
    return not _hub_reachable(constants.ENDPOINT)


@functools.cache
def _hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` s (asked once per process).

    Without this, a machine with no network retries every file for about a minute before failing.
    """
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    reachable: list[bool] = []

    def probe() -> None:  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection((url.hostname or "", port), timeout=timeout).close()
            reachable.append(True)
        except OSError:
            reachable.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(reachable and reachable[0])


def _not_a_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No "Loading weights" bar and no per-model load report on stderr, for the block (rmteacher checks missing keys
    itself; code that loads a model whose new weights are expected, e.g. a reward head on a causal LM, uses it too).

    The report is filtered out rather than the logger's level raised: transformers 5.23 logs a tensor-parallel
    plan check whenever that logger's level is WARNING or above.
    """
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    report = logging.getLogger("transformers.modeling_utils")
    report.addFilter(_not_a_load_report)
    try:
        yield
    finally:
        report.removeFilter(_not_a_load_report)
        if bars:
            hf_logging.enable_progress_bar()


def check_safetensors(loader: Any, directory: Path, *, kind: str, path: str) -> None:
    if any(directory.glob("*.safetensors")) or not any(directory.glob("pytorch_model*.bin")):
        return
    cls = getattr(loader, "__name__", "AutoModel")
    raise ModelLoadError(
        f"{kind} {path!r}: weights must be safetensors, and this directory has only pytorch_model*.bin (pickles, "
        f'which rmteacher does not load); convert once, for a checkpoint you trust, with: python -c "from '
        f"transformers import {cls}; {cls}.from_pretrained('{directory}', use_safetensors=False)"
        f".save_pretrained('{directory}')\""
    )


def checkpoint_directory(path: str, *, kind: str) -> str:
    """``path`` itself, or for a ``.gguf`` file its converted safetensors directory (:func:`rmteacher.gguf.
    convert_gguf`: from the cache, or converted now, about 20 s for a 135M model).

    Raises:
        ModelLoadError: the GGUF file is missing, is not a GGUF file or holds an architecture transformers cannot
            load (named in the message).
    """
    if not is_gguf_path(path):
        return path
    try:
        return str(convert_gguf(path))
    except GGUFError as error:
        raise ModelLoadError(f"{kind} {path!r}: {error}") from None


def load_pretrained(
    loader: Any, path: str, *, kind: str, trust_remote_code: bool, weights: bool = False, **kwargs: Any
) -> Any:
    """``loader.from_pretrained(path)`` with rmteacher's rules.

    - A path that exists is a local directory, with or without ``./`` (``models/rm``); one that does not exist and
      is not a plausible hub id (``name`` or ``owner/name``) is "no such directory".
    - A ``.gguf`` file loads from its converted directory (:func:`checkpoint_directory`).
    - A hub id loads from the local cache only when the hub is offline (``HF_HUB_OFFLINE=1``) or unreachable, so
      the error comes at once instead of after a minute of retries.
    - ``weights``: a model (not a tokenizer): safetensors only; weights the checkpoint lacks are an error (they
      would be random), reported instead of transformers' load report.
    """
    local = Path(checkpoint_directory(path, kind=kind)).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelLoadError(
                f"{kind} {path!r}: not a directory (give the model's directory, or a GGUF file named *.gguf)"
            )
        if weights:
            check_safetensors(loader, local, kind=kind, path=path)
        source = str(local)
    elif path.startswith((".", "/", "~")) or not _HUB_ID.match(path):
        raise ModelLoadError(f"{kind} {path!r}: no such directory")
    else:
        source = path
        if _hub_offline():
            kwargs["local_files_only"] = True
    try:
        with quiet_loading():
            loaded = loader.from_pretrained(
                source,
                trust_remote_code=trust_remote_code,
                **({"output_loading_info": True} if weights else {}),
                **kwargs,
            )
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if kwargs.get("local_files_only") and not local.exists():
            reason = (
                "not a local directory, and the hub is offline (HF_HUB_OFFLINE or no network) and it is not in the "
                f"local cache; give a local directory, or download it first (hf download {path}). Detail: {reason}"
            )
        raise ModelLoadError(f"{kind} {path!r}: cannot be loaded ({reason})") from None
    if not weights:
        return loaded
    model, info = loaded
    if info.get("missing_keys") or info.get("mismatched_keys"):
        missing = sorted(info.get("missing_keys") or []) + [k[0] for k in info.get("mismatched_keys") or []]
        raise ModelLoadError(
            f"{kind} {path!r}: the checkpoint has no trained weights for {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''} (they would be random); is it the right kind of model "
            f"({model.__class__.__name__})?"
        )
    return model


def load_tokenizer(path: str, *, kind: str, trust_remote_code: bool = False) -> Any:
    """Loads a tokenizer and makes sure it can pad: a missing pad token becomes the EOS token (not an error)."""
    from transformers import AutoTokenizer

    tokenizer = load_pretrained(AutoTokenizer, path, kind=f"{kind} tokenizer", trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"{kind} tokenizer {path!r} has neither a pad nor an EOS token; cannot batch")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(
    path: str,
    *,
    device: str | None = None,
    dtype: Dtype | None = None,
    device_map: str | dict[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """Loads a causal LM policy (``AutoModelForCausalLM``, safetensors) and its tokenizer, in eval mode.

    Args:
        path: a local directory (with or without ``./``), a hub id or a ``.gguf`` file (converted once, cached).
        device: where to put it (default: CUDA when available, else CPU); excludes ``device_map``.
        dtype: ``"auto"`` (the checkpoint's), ``"bfloat16"``, ``"float16"`` or ``"float32"``; None: transformers'
            default.
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"`` to spread a large model over the devices).
        trust_remote_code: run the checkpoint's own modelling code (off unless asked for).
    """
    from transformers import AutoModelForCausalLM

    where = placement(f"policy {path!r}", device, dtype, device_map)
    checkpoint_directory(path, kind="policy")  # a GGUF file that cannot be converted is the policy's error
    tokenizer = load_tokenizer(path, kind="policy", trust_remote_code=trust_remote_code)
    model = load_pretrained(
        AutoModelForCausalLM,
        path,
        kind="policy",
        trust_remote_code=trust_remote_code,
        weights=True,
        use_safetensors=True,
        **where,
    )
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if device_map is None:
        model = model.to(resolve_device(device))
    return model.eval(), tokenizer


def default_max_length(model: Any, tokenizer: Any) -> int | None:
    """The most tokens ``model`` reads: the smaller of its position limit (``max_position_embeddings``, GPT-2's
    ``n_positions``) and the tokenizer's ``model_max_length`` when finite; None when neither is known."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    finite = [int(n) for n in limits if isinstance(n, int) and 0 < n < 1_000_000_000]
    return min(finite) if finite else None
