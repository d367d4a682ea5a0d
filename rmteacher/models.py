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
    """A sequence-classification reward model with a scalar head, scored in length-sorted batches."""

    name: str
    model: Any
    tokenizer: Any
    max_tokens_per_batch: int = 16384
    max_length: int | None = None

    def score(self, prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> np.ndarray:
        import torch

        texts = [render_conversation(self.tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
        encoded = self.tokenizer(
            texts, add_special_tokens=False, truncation=self.max_length is not None, max_length=self.max_length
        )["input_ids"]
        # Sort by length so each batch pads little, and fill batches up to a token budget rather than a fixed
        # count: short sequences go in big batches, long ones in small ones.
        order = np.argsort([len(ids) for ids in encoded], kind="stable")
        out = np.empty(len(texts))
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        start = 0
        with torch.inference_mode():
            while start < len(order):
                longest = len(encoded[order[start]])
                stop = start + 1
                while stop < len(order) and len(encoded[order[stop]]) * (stop + 1 - start) <= self.max_tokens_per_batch:
                    longest = len(encoded[order[stop]])
                    stop += 1
                batch = [encoded[i] for i in order[start:stop]]
                ids = torch.full((len(batch), longest), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), longest), dtype=torch.long)
                for row, seq in enumerate(batch):  # right padding: the head reads the last non-pad token
                    ids[row, : len(seq)] = torch.tensor(seq)
                    mask[row, : len(seq)] = 1
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                out[order[start:stop]] = logits[:, 0].float().cpu().numpy()
                start = stop
        return out


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
