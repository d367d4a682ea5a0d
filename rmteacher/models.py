"""Loading policies and reward models, and scoring (prompt, completion) pairs with them.

A reward is either a Hugging Face sequence-classification model with a scalar head (a local directory or a hub id
the user has) or a Python callable named ``module:function`` in TRL's reward-function form
``f(prompts, completions, **kwargs) -> list[float]``. Weights load from safetensors only and ``trust_remote_code``
stays off unless asked for; nothing is unpickled.

Every reward model renders each (prompt, completion) with its *own* chat template and tokenizer
(:mod:`rmteacher.rendering`), so a reward model whose tokenizer or template differs from the policy's is handled the
same way as one that shares it. Reward functions get what TRL gives them (:class:`CallableReward`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import json
import logging
import math
import os
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlparse

import numpy as np

from rmteacher.rendering import (
    Prompt,
    completion_text,
    encode_rendered,
    is_conversational,
    render_conversation,
    render_prompt,
    trl_prompt,
)

__all__ = [
    "DTYPES",
    "CallableReward",
    "ModelLoadError",
    "ModelReward",
    "Prompt",
    "Reward",
    "RewardError",
    "completion_text",
    "default_max_length",
    "encode_rendered",
    "load_policy",
    "load_reward",
    "load_tokenizer",
    "parse_reward_spec",
    "quiet_loading",
    "render_conversation",
    "render_prompt",
    "trl_prompt",
]

# ``package.module:function``: a callable; anything else is a model path or hub id.
_CALLABLE_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# A hub id as huggingface_hub validates it: ``name`` or ``owner/name``, letters, digits, ``-_.``, no ``--``/``..``.
_HUB_ID = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9][\w.\-]{0,95}(/[A-Za-z0-9][\w.\-]{0,95})?$")

Dtype = Literal["auto", "bfloat16", "float16", "float32"]
#: The ``dtype`` values :func:`load_policy` and :func:`load_reward` accept (None: transformers' default).
DTYPES: tuple[str, ...] = ("auto", "bfloat16", "float16", "float32")


class ModelLoadError(ValueError):
    """A policy or reward model that cannot be loaded (the message says which and why)."""


class RewardError(ValueError):
    """A reward that returned a non-finite value or raised (the message names the reward, prompt and sample)."""


def parse_reward_spec(spec: str, *, argument: str = "--reward-model") -> tuple[str, str]:
    """Splits ``NAME=PATH_OR_CALLABLE``; a bare path or callable is named after its last component."""
    name, sep, target = spec.partition("=")
    if not sep:
        target = spec
        name = spec.rsplit(":", 1)[-1] if _CALLABLE_SPEC.match(spec) else Path(spec.rstrip("/")).name
    name, target = name.strip(), target.strip()
    if not name or not target:
        raise ValueError(f"{argument} {spec!r}: expected NAME=PATH_OR_CALLABLE, e.g. rm=./my-rm or gt=pkg.mod:fn")
    if not re.fullmatch(r"[\w.\-]+", name):
        raise ValueError(f"{argument} {spec!r}: the name {name!r} may hold only letters, digits, '_', '-' and '.'")
    return name, target


# ------------------------------------------------------------------------------------------------------- loading


def _resolve_device(device: str | None) -> Any:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _placement(kind: str, device: str | None, dtype: str | None, device_map: Any) -> dict[str, Any]:
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


def _check_safetensors(loader: Any, directory: Path, *, kind: str, path: str) -> None:
    if any(directory.glob("*.safetensors")) or not any(directory.glob("pytorch_model*.bin")):
        return
    cls = getattr(loader, "__name__", "AutoModel")
    raise ModelLoadError(
        f"{kind} {path!r}: weights must be safetensors, and this directory has only pytorch_model*.bin (pickles, "
        f'which rmteacher does not load); convert once, for a checkpoint you trust, with: python -c "from '
        f"transformers import {cls}; {cls}.from_pretrained('{directory}', use_safetensors=False)"
        f".save_pretrained('{directory}')\""
    )


def _load_pretrained(
    loader: Any, path: str, *, kind: str, trust_remote_code: bool, weights: bool = False, **kwargs: Any
) -> Any:
    """``loader.from_pretrained(path)`` with rmteacher's rules.

    - A path that exists is a local directory, with or without ``./`` (``models/rm``); one that does not exist and
      is not a plausible hub id (``name`` or ``owner/name``) is "no such directory".
    - A hub id loads from the local cache only when the hub is offline (``HF_HUB_OFFLINE=1``) or unreachable, so
      the error comes at once instead of after a minute of retries.
    - ``weights``: a model (not a tokenizer): safetensors only; weights the checkpoint lacks are an error (they
      would be random), reported instead of transformers' load report.
    """
    local = Path(path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelLoadError(f"{kind} {path!r}: not a directory (give the model's directory)")
        if weights:
            _check_safetensors(loader, local, kind=kind, path=path)
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

    tokenizer = _load_pretrained(AutoTokenizer, path, kind=f"{kind} tokenizer", trust_remote_code=trust_remote_code)
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
        path: a local directory (with or without ``./``) or a hub id.
        device: where to put it (default: CUDA when available, else CPU); excludes ``device_map``.
        dtype: ``"auto"`` (the checkpoint's), ``"bfloat16"``, ``"float16"`` or ``"float32"``; None: transformers'
            default.
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"`` to spread a large model over the devices).
        trust_remote_code: run the checkpoint's own modelling code (off unless asked for).
    """
    from transformers import AutoModelForCausalLM

    placement = _placement(f"policy {path!r}", device, dtype, device_map)
    tokenizer = load_tokenizer(path, kind="policy", trust_remote_code=trust_remote_code)
    model = _load_pretrained(
        AutoModelForCausalLM,
        path,
        kind="policy",
        trust_remote_code=trust_remote_code,
        weights=True,
        use_safetensors=True,
        **placement,
    )
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if device_map is None:
        model = model.to(_resolve_device(device))
    return model.eval(), tokenizer


# ------------------------------------------------------------------------------------------------------- rewards


class Reward(Protocol):
    """Scores (prompt, completion) pairs. ``name`` names it in tables and error messages."""

    name: str

    def score(self, prompts: Sequence[Prompt], completions: Sequence[Any], **kwargs: Any) -> np.ndarray:
        """Returns ``[len(prompts)]`` rewards; ``kwargs`` (dataset columns, one value per sample) reach reward
        functions."""
        ...


def _per_sample(value: Any, count: int) -> bool:
    return hasattr(value, "__len__") and not isinstance(value, str | bytes | Mapping) and len(value) == count


@dataclass
class CallableReward:
    """A reward function in TRL's form, ``fn(prompts, completions, **kwargs) -> list[float | None]``.

    It is called the way TRL's ``GRPOTrainer``/``RLOOTrainer`` (``_calculate_rewards``) call it:

    - ``prompts``: each prompt as the dataset gives it, a string or a list of messages;
    - ``completions``: strings for string prompts; for conversational prompts TRL's conversational completion,
      ``[{"role": "assistant", "content": text}]`` (a string completion is wrapped so);
    - every keyword argument given to :meth:`score` (the prompts table's other columns, e.g. ``answer``):
      a sequence with one value per sample is passed as a list of this batch's values, anything else as it is.
      TRL also passes ``completion_ids``, ``trainer_state``, ``log_metric`` and ``log_extra`` during RL; outside
      RL they are passed only where the caller has them, so a function should take ``**kwargs``.

    ``None`` values become NaN (TRL: "no reward for this sample").
    """

    name: str
    fn: Callable[..., Sequence[float | None]]
    batch_size: int = 256

    def score(self, prompts: Sequence[Prompt], completions: Sequence[Any], **kwargs: Any) -> np.ndarray:
        if len(completions) != len(prompts):
            raise ValueError(f"reward {self.name!r}: {len(prompts)} prompts but {len(completions)} completions")
        completions = [
            [{"role": "assistant", "content": c}] if isinstance(c, str) and is_conversational(p) else c
            for p, c in zip(prompts, completions, strict=True)
        ]
        columns = {
            k: list(v.tolist() if hasattr(v, "tolist") else v)
            for k, v in kwargs.items()
            if _per_sample(v, len(prompts))
        }
        out = np.empty(len(prompts))
        for start in range(0, len(prompts), self.batch_size):
            stop = min(start + self.batch_size, len(prompts))
            extra = {k: columns[k][start:stop] if k in columns else v for k, v in kwargs.items()}
            try:
                values = list(self.fn(prompts=list(prompts[start:stop]), completions=completions[start:stop], **extra))
            except Exception as error:
                raise RewardError(f"reward {self.name!r} raised {type(error).__name__}: {error}") from error
            if len(values) != stop - start:
                raise RewardError(f"reward {self.name!r} returned {len(values)} values for {stop - start} completions")
            out[start:stop] = [_reward_value(self.name, start + i, v) for i, v in enumerate(values)]
        return out


def _reward_value(name: str, index: int, value: Any) -> float:
    """One value a reward function returned, as a float (None, as TRL allows, is NaN: the callers refuse it).

    Strings are refused even when they parse (``"1.5"``): a reward that returns text is a bug to fix, not a number.
    """
    if value is None:
        return math.nan
    if isinstance(value, str | bytes):
        raise RewardError(f"reward {name!r} returned {value!r} (a string) for completion {index}; rewards are numbers")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RewardError(
            f"reward {name!r} returned {value!r} ({type(value).__name__}) for completion {index}; rewards are numbers"
        ) from None


def default_max_length(model: Any, tokenizer: Any) -> int | None:
    """The most tokens ``model`` reads: the smaller of its position limit (``max_position_embeddings``, GPT-2's
    ``n_positions``) and the tokenizer's ``model_max_length`` when finite; None when neither is known."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    finite = [int(n) for n in limits if isinstance(n, int) and 0 < n < 1_000_000_000]
    return min(finite) if finite else None


@dataclass
class ModelReward:
    """A sequence-classification reward model with a scalar head.

    Each (prompt, completion) is rendered with the model's own tokenizer (:func:`render_conversation`) and read
    at its last non-pad token, as ``*ForSequenceClassification`` does. Scoring is exact (batched scores equal
    one-sequence-at-a-time scores) but does less work than one forward pass per sample:

    - samples of the same prompt share their rendered prefix (the prompt and the chat template up to the
      assistant's answer); it is run once per prompt and its key/value cache reused for the K completions, so only
      the completions' tokens are computed K times (``share_prefix``);
    - sequences are sorted by length and batches filled up to ``max_tokens_per_batch`` tokens, so little is padded.

    Padding uses the pad id the model was configured with (``config.pad_token_id``), since the head finds each
    row's last token as the rightmost token that is not that id: padding with the tokenizer's pad id when the two
    differ would make the head read a pad position. When the config has none, the tokenizer's pad (or EOS) id is set
    in the config, as TRL does for a reward model.

    Inputs longer than ``max_length`` tokens (default :func:`default_max_length`) lose tokens from the left, so the
    prompt is cut and the completion kept whole (a completion longer than ``max_length`` alone keeps its last
    ``max_length`` tokens). ``num_truncated`` counts the truncated inputs of every :meth:`score` call,
    ``num_scored`` all of them.
    """

    name: str
    model: Any
    tokenizer: Any
    max_tokens_per_batch: int = 16384
    max_length: int | None = None
    share_prefix: bool = True
    system_prompt: str | None = None
    num_scored: int = field(default=0, init=False)
    num_truncated: int = field(default=0, init=False)
    pad_token_id: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.max_tokens_per_batch < 1:
            raise ValueError(
                f"reward model {self.name!r}: max_tokens_per_batch must be >= 1; got {self.max_tokens_per_batch}"
            )
        if self.max_length is None:
            self.max_length = default_max_length(self.model, self.tokenizer)
        elif self.max_length < 2:
            raise ValueError(f"reward model {self.name!r}: max_length must be >= 2; got {self.max_length}")
        config = self.model.config.get_text_config()
        pad = config.pad_token_id
        if pad is None:
            pad = (
                self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
            )
            if pad is None:
                raise ModelLoadError(f"reward model {self.name!r}: no pad token in its config or tokenizer, and no EOS")
            config.pad_token_id = pad
        vocabulary = self.model.get_input_embeddings().num_embeddings
        if not 0 <= pad < vocabulary:
            raise ModelLoadError(
                f"reward model {self.name!r}: config.pad_token_id {pad} is outside its vocabulary of {vocabulary}"
            )
        self.pad_token_id = int(pad)

    def score(self, prompts: Sequence[Prompt], completions: Sequence[Any], **kwargs: Any) -> np.ndarray:
        """``[len(prompts)]`` scores (the head's output at each sequence's last token); ``kwargs`` are ignored."""
        if self.model is None:
            raise RuntimeError(f"reward model {self.name!r} was freed")
        if len(completions) != len(prompts):
            raise ValueError(f"reward {self.name!r}: {len(prompts)} prompts but {len(completions)} completions")
        encoded = list(_encode_conversations(self.tokenizer, prompts, completions, self.system_prompt))
        limit = self.max_length
        if limit is not None:
            for i, ids in enumerate(encoded):
                if len(ids) > limit:
                    encoded[i] = ids[-limit:]
                    self.num_truncated += 1
        self.num_scored += len(encoded)
        out = np.full(len(encoded), np.nan)
        groups: dict[str, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(_prompt_key(prompt), []).append(i)
        shared: list[tuple[int, list[int]]] = []
        alone: list[int] = []
        for rows in groups.values():
            length = _common_prefix_length([encoded[i] for i in rows])
            # A row whose own tokens are all pad ids would be read inside the prefix: score it whole.
            own = [i for i in rows if any(t != self.pad_token_id for t in encoded[i][length:])]
            alone.extend(i for i in rows if i not in own)
            if self.share_prefix and len(own) > 1 and length >= 2:
                shared.append((length, own))
            else:
                alone.extend(own)
        if shared:
            try:
                self._score_shared(shared, encoded, out)
            except (TypeError, ValueError, AttributeError):  # a model without a usable key/value cache
                alone.extend(i for _, rows in shared for i in rows)
        self._score_full(alone, encoded, out)
        return out

    def free(self) -> None:
        """Releases the model's memory (to load the next reward model); :meth:`score` fails afterwards."""
        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self) -> ModelReward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()

    def _device(self) -> Any:
        return next(self.model.parameters()).device

    def _score_full(self, rows: list[int], encoded: list[list[int]], out: np.ndarray) -> None:
        """One forward pass per batch of whole sequences, length-sorted, right-padded."""
        import torch

        order = sorted(rows, key=lambda i: len(encoded[i]))
        device = self._device()
        start = 0
        with torch.inference_mode():
            while start < len(order):
                stop = start + 1
                while stop < len(order) and len(encoded[order[stop]]) * (stop + 1 - start) <= self.max_tokens_per_batch:
                    stop += 1
                ids, mask = self._right_padded([encoded[i] for i in order[start:stop]])
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                out[order[start:stop]] = logits[:, 0].float().cpu().numpy()
                start = stop

    def _score_shared(self, groups: list[tuple[int, list[int]]], encoded: list[list[int]], out: np.ndarray) -> None:
        """Prefix once per prompt, then every completion on the prefix's key/value cache (same numbers)."""
        import torch

        device = self._device()
        by_length: dict[int, list[list[int]]] = {}
        for length, rows in groups:
            by_length.setdefault(length, []).append(rows)
        with torch.inference_mode():
            for length, bucket in sorted(by_length.items()):
                start = 0
                while start < len(bucket):
                    stop, cost = start, 0
                    while stop < len(bucket):
                        rows = bucket[stop]
                        longest = max(len(encoded[i]) for i in rows) - length
                        cost += length + len(rows) * (length + longest)  # prefix once; completions attend to it
                        if stop > start and cost > self.max_tokens_per_batch:
                            break
                        stop += 1
                    chunk = bucket[start:stop]
                    prefix = torch.tensor([encoded[rows[0]][:length] for rows in chunk], device=device)
                    cache = self.model(input_ids=prefix, use_cache=True).past_key_values
                    members = [i for rows in chunk for i in rows]
                    owner = torch.tensor([g for g, rows in enumerate(chunk) for _ in rows], device=device)
                    cache.batch_select_indices(owner)
                    ids, mask = self._right_padded([encoded[i][length:] for i in members])
                    full_mask = torch.cat([torch.ones(len(members), length, dtype=mask.dtype), mask], dim=1)
                    logits = self.model(
                        input_ids=ids.to(device), attention_mask=full_mask.to(device), past_key_values=cache
                    ).logits
                    out[members] = logits[:, 0].float().cpu().numpy()
                    start = stop

    def _right_padded(self, sequences: list[list[int]]) -> tuple[Any, Any]:
        """``[batch, longest]`` ids and mask, right-padded with the model's pad id."""
        import torch

        longest = max(len(seq) for seq in sequences)
        ids = torch.full((len(sequences), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), longest), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return ids, mask


def _prompt_key(prompt: Prompt) -> str:
    """A hashable key for a prompt of either format (conversations are lists, not hashable)."""
    return prompt if isinstance(prompt, str) else json.dumps(list(prompt), sort_keys=True, default=str)


# Several reward models usually share a tokenizer and score the same samples: render and tokenize them once.
_ENCODED: dict[tuple[Any, ...], list[list[int]]] = {}


def _encode_conversations(
    tokenizer: Any, prompts: Sequence[Prompt], completions: Sequence[Any], system_prompt: str | None
) -> list[list[int]]:
    """Token ids of each rendered (prompt, completion), cached for the last few tokenizer/sample sets."""
    signature = (
        type(tokenizer).__name__,
        # Loaded tokenizers are identified by where they came from; in-memory ones only by themselves.
        getattr(tokenizer, "name_or_path", "") or id(tokenizer),
        len(tokenizer),
        getattr(tokenizer, "chat_template", None),
        tokenizer.eos_token,
        system_prompt,
        hash(tuple(_prompt_key(p) for p in prompts)),
        hash(tuple(c if isinstance(c, str) else _prompt_key(c) for c in completions)),
    )
    if signature not in _ENCODED:
        texts = [
            render_conversation(tokenizer, p, c, system_prompt=system_prompt)
            for p, c in zip(prompts, completions, strict=True)
        ]
        while len(_ENCODED) >= 4:
            _ENCODED.pop(next(iter(_ENCODED)))
        _ENCODED[signature] = encode_rendered(tokenizer, texts)
    return _ENCODED[signature]


def _common_prefix_length(sequences: list[list[int]]) -> int:
    """Tokens all ``sequences`` share at the start, leaving each at least one token of its own."""
    shortest = min(len(seq) for seq in sequences)
    length = 0
    while length < shortest - 1 and all(seq[length] == sequences[0][length] for seq in sequences):
        length += 1
    return length


def load_reward(
    spec: str,
    *,
    device: str | None = None,
    trust_remote_code: bool = False,
    argument: str = "--reward-model",
    dtype: Dtype | None = None,
    device_map: str | dict[str, Any] | None = None,
    max_length: int | None = None,
    max_tokens_per_batch: int = 16384,
    share_prefix: bool = True,
    system_prompt: str | None = None,
) -> Reward:
    """Builds a :class:`Reward` from ``NAME=PATH_OR_CALLABLE``.

    A ``module:function`` target is a :class:`CallableReward`; anything else a :class:`ModelReward` loaded like
    :func:`load_policy` (``device``, ``dtype``, ``device_map``), with ``max_length``, ``max_tokens_per_batch``,
    ``share_prefix`` and ``system_prompt`` as in :class:`ModelReward`. Free a model reward with ``.free()`` (or use
    it as a context manager) before loading the next, to hold one reward model in memory at a time.
    """
    name, target = parse_reward_spec(spec, argument=argument)
    if _CALLABLE_SPEC.match(target) and not Path(target).exists():
        module_name, function_name = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            local = Path(*module_name.split(".")).with_suffix(".py")
            hint = (
                f"; {local} is in the current directory, which is not on the import path when running the "
                "`rmteacher` script: run with PYTHONPATH=."
                if local.exists() and str(Path.cwd()) not in sys.path and "" not in sys.path
                else ""
            )
            raise ModelLoadError(f"{argument} {spec!r}: cannot import module {module_name!r} ({error}){hint}") from None
        fn = getattr(module, function_name, None)
        if not callable(fn):
            raise ModelLoadError(f"{argument} {spec!r}: module {module_name!r} has no function {function_name!r}")
        return CallableReward(name=name, fn=fn)
    from transformers import AutoModelForSequenceClassification

    kind = f"reward model {name!r}"
    placement = _placement(f"{argument} {spec!r}", device, dtype, device_map)
    tokenizer = load_tokenizer(target, kind=kind, trust_remote_code=trust_remote_code)
    model = _load_pretrained(
        AutoModelForSequenceClassification,
        target,
        kind=kind,
        trust_remote_code=trust_remote_code,
        weights=True,
        use_safetensors=True,
        **placement,
    )
    if model.config.num_labels != 1:
        raise ModelLoadError(
            f"{argument} {spec!r}: a reward model needs a scalar head (num_labels=1); it has {model.config.num_labels}"
        )
    if device_map is None:
        model = model.to(_resolve_device(device))
    return ModelReward(
        name=name,
        model=model.eval(),
        tokenizer=tokenizer,
        max_tokens_per_batch=max_tokens_per_batch,
        max_length=max_length,
        share_prefix=share_prefix,
        system_prompt=system_prompt,
    )
