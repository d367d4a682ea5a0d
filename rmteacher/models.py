"""Loading policies and reward models, and scoring (prompt, completion) texts with them.

A reward is either a Hugging Face sequence-classification model with a scalar head (a local directory or a hub id
the user has) or a Python callable named ``module:function`` in TRL's reward-function form
``f(prompts, completions, **kwargs) -> list[float]``. Weights load from safetensors only and ``trust_remote_code``
stays off unless asked for; nothing is unpickled.

Every reward model sees decoded text and applies its *own* chat template and tokenizer, so a reward model whose
tokenizer or template differs from the policy's is handled the same way as one that shares it.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = [
    "CallableReward",
    "ModelLoadError",
    "ModelReward",
    "Reward",
    "RewardError",
    "load_policy",
    "load_reward",
    "parse_reward_spec",
    "render_conversation",
]

# ``package.module:function``: a callable; anything else is a model path or hub id.
_CALLABLE_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


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


def _resolve_device(device: str | None) -> Any:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _load_pretrained(loader: Any, path: str, *, kind: str, trust_remote_code: bool, **kwargs: Any) -> Any:
    local = Path(path).expanduser()
    looks_local = local.exists() or path.startswith((".", "/", "~"))
    if looks_local and not local.is_dir():
        raise ModelLoadError(f"{kind} {path!r}: no such directory")
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per model drowns the run's own progress
    try:
        return loader.from_pretrained(
            str(local) if looks_local else path, trust_remote_code=trust_remote_code, **kwargs
        )
    except (OSError, ValueError, KeyError, ImportError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{kind} {path!r}: cannot be loaded ({reason})") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(path: str, *, kind: str, trust_remote_code: bool = False) -> Any:
    """Loads a tokenizer and makes sure it can pad: a missing pad token becomes the EOS token (not an error)."""
    from transformers import AutoTokenizer

    tokenizer = _load_pretrained(AutoTokenizer, path, kind=f"{kind} tokenizer", trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"{kind} tokenizer {path!r} has neither a pad nor an EOS token; cannot batch")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(path: str, *, device: str | None = None, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """Loads a causal LM policy (``AutoModelForCausalLM``, safetensors) and its tokenizer, in eval mode."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(path, kind="policy", trust_remote_code=trust_remote_code)
    model = _load_pretrained(
        AutoModelForCausalLM, path, kind="policy", trust_remote_code=trust_remote_code, use_safetensors=True
    )
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(_resolve_device(device)).eval(), tokenizer


def render_conversation(tokenizer: Any, prompt: str, completion: str | None = None) -> str:
    """The text a model sees: the tokenizer's chat template when it has one, else ``prompt + completion + EOS``.

    With ``completion=None`` this is the generation prompt (the template's assistant header appended).
    """
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}]
        if completion is not None:
            messages.append({"role": "assistant", "content": completion})
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=completion is None))
    if completion is None:
        return prompt
    return prompt + completion + (tokenizer.eos_token or "")


class Reward(Protocol):
    """Scores (prompt, completion) texts. ``name`` names it in tables and error messages."""

    name: str

    def score(self, prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> np.ndarray:
        """Returns ``[len(prompts)]`` rewards; ``kwargs`` (TRL's reward kwargs) reach reward functions."""
        ...


@dataclass
class CallableReward:
    """A reward function in TRL's form, ``fn(prompts, completions, **kwargs) -> list[float]``."""

    name: str
    fn: Callable[..., Sequence[float | None]]
    batch_size: int = 256

    def score(self, prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> np.ndarray:
        out = np.empty(len(prompts))
        for start in range(0, len(prompts), self.batch_size):
            stop = start + self.batch_size
            extra = {
                k: v[start:stop] if isinstance(v, list) and len(v) == len(prompts) else v for k, v in kwargs.items()
            }
            try:
                values = list(
                    self.fn(prompts=list(prompts[start:stop]), completions=list(completions[start:stop]), **extra)
                )
            except Exception as error:
                raise RewardError(f"reward {self.name!r} raised {type(error).__name__}: {error}") from error
            if len(values) != len(prompts[start:stop]):
                raise RewardError(
                    f"reward {self.name!r} returned {len(values)} values for {len(prompts[start:stop])} completions"
                )
            out[start:stop] = [math.nan if v is None else float(v) for v in values]
        return out


@dataclass
class ModelReward:
    """A sequence-classification reward model with a scalar head.

    Scoring is exact but does less work than one forward pass per sample:

    - samples of the same prompt share their rendered prefix (the prompt and the chat template up to the
      assistant's answer); it is run once per prompt and its key/value cache reused for the K completions, so only
      the completions' tokens are computed K times (``share_prefix``);
    - sequences are sorted by length and batches filled up to a token budget, so little is padded.
    """

    name: str
    model: Any
    tokenizer: Any
    max_tokens_per_batch: int = 16384
    max_length: int | None = None
    share_prefix: bool = True

    def score(self, prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> np.ndarray:
        encoded = _encode_conversations(self.tokenizer, tuple(prompts), tuple(completions), self.max_length)
        out = np.full(len(encoded), np.nan)
        groups: dict[str, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(prompt, []).append(i)
        shared: list[tuple[int, list[int]]] = []
        alone: list[int] = []
        for rows in groups.values():
            length = _common_prefix_length([encoded[i] for i in rows])
            if self.share_prefix and len(rows) > 1 and length >= 2:
                shared.append((length, rows))
            else:
                alone.extend(rows)
        if shared:
            try:
                self._score_shared(shared, encoded, out)
            except (TypeError, ValueError, AttributeError):  # a model without a usable key/value cache
                alone.extend(i for _, rows in shared for i in rows)
        self._score_full(alone, encoded, out)
        return out

    def _score_full(self, rows: list[int], encoded: list[list[int]], out: np.ndarray) -> None:
        """One forward pass per batch of whole sequences, length-sorted, right-padded."""
        import torch

        order = sorted(rows, key=lambda i: len(encoded[i]))
        device = next(self.model.parameters()).device
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

        device = next(self.model.parameters()).device
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
        """``[batch, longest]`` ids and mask, right-padded: the head reads the last non-pad token."""
        import torch

        longest = max(len(seq) for seq in sequences)
        ids = torch.full((len(sequences), longest), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), longest), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return ids, mask


# Several reward models usually share a tokenizer and score the same samples: render and tokenize them once.
_ENCODED: dict[tuple[Any, ...], list[list[int]]] = {}


def _encode_conversations(
    tokenizer: Any, prompts: tuple[str, ...], completions: tuple[str, ...], max_length: int | None
) -> list[list[int]]:
    """Token ids of each rendered (prompt, completion), cached for the last few tokenizer/sample sets."""
    signature = (
        type(tokenizer).__name__,
        # Loaded tokenizers are identified by where they came from; in-memory ones only by themselves.
        getattr(tokenizer, "name_or_path", "") or id(tokenizer),
        len(tokenizer),
        getattr(tokenizer, "chat_template", None),
        max_length,
        hash(prompts),
        hash(completions),
    )
    if signature not in _ENCODED:
        texts = [render_conversation(tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
        ids = tokenizer(texts, add_special_tokens=False, truncation=max_length is not None, max_length=max_length)
        while len(_ENCODED) >= 4:
            _ENCODED.pop(next(iter(_ENCODED)))
        _ENCODED[signature] = ids["input_ids"]
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
) -> Reward:
    """Builds a :class:`Reward` from ``NAME=PATH_OR_CALLABLE``."""
    name, target = parse_reward_spec(spec, argument=argument)
    if _CALLABLE_SPEC.match(target) and not Path(target).exists():
        module_name, function_name = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ModelLoadError(f"{argument} {spec!r}: cannot import module {module_name!r} ({error})") from None
        fn = getattr(module, function_name, None)
        if not callable(fn):
            raise ModelLoadError(f"{argument} {spec!r}: module {module_name!r} has no function {function_name!r}")
        return CallableReward(name=name, fn=fn)
    from transformers import AutoModelForSequenceClassification

    tokenizer = load_tokenizer(target, kind=f"reward model {name!r}", trust_remote_code=trust_remote_code)
    model = _load_pretrained(
        AutoModelForSequenceClassification,
        target,
        kind=f"reward model {name!r}",
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
    )
    if model.config.num_labels != 1:
        raise ModelLoadError(
            f"{argument} {spec!r}: a reward model needs a scalar head (num_labels=1); it has {model.config.num_labels}"
        )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return ModelReward(name=name, model=model.to(_resolve_device(device)).eval(), tokenizer=tokenizer)
