"""Rewards: scoring (prompt, completion) pairs with a reward model or a reward function.

A reward is either a Hugging Face sequence-classification model with a scalar head (a local directory or a hub id
the user has; :class:`ModelReward`) or a Python callable named ``module:function`` in TRL's reward-function form
``f(prompts, completions, **kwargs) -> list[float]`` (:class:`CallableReward`). Models load as
:mod:`rmteacher.loading` loads checkpoints: safetensors only, ``trust_remote_code`` off unless asked for.

Every reward model renders each (prompt, completion) with its *own* chat template and tokenizer
(:mod:`rmteacher.rendering`), so a reward model whose tokenizer or template differs from the policy's is handled the
same way as one that shares it. Reward functions get what TRL gives them.
"""

from __future__ import annotations

import gc
import importlib
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rmteacher.devices import resolve_device
from rmteacher.gguf import is_gguf_path
from rmteacher.loading import (
    CALLABLE_SPEC,
    Dtype,
    ModelLoadError,
    default_max_length,
    load_pretrained,
    load_tokenizer,
    parse_reward_spec,
    placement,
)
from rmteacher.rendering import Prompt, encode_conversations, is_conversational, prompt_key

__all__ = ["CallableReward", "ModelReward", "Reward", "RewardError", "load_reward"]


class RewardError(ValueError):
    """A reward that returned a non-finite value or raised (the message names the reward, prompt and sample)."""


class Reward(Protocol):
    """Scores (prompt, completion) pairs. ``name`` names it in tables and error messages."""

    name: str

    def score(self, prompts: Sequence[Prompt], completions: Sequence[Any], **kwargs: Any) -> np.ndarray:
        """Returns ``[len(prompts)]`` rewards; ``kwargs`` (dataset columns, one value per sample) reach reward
        functions."""
        ...

    def free(self) -> None:
        """Releases what the reward holds (a model's memory), so the next one can be loaded; :meth:`score` may
        fail afterwards."""
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

    def free(self) -> None:
        """Nothing to release: a function holds no model."""


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
        encoded = list(encode_conversations(self.tokenizer, prompts, completions, self.system_prompt))
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
            groups.setdefault(prompt_key(prompt), []).append(i)
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
            except (TypeError, ValueError, AttributeError) as error:  # a model without a usable key/value cache
                # Same numbers, more work: said once per reward model, which then scores whole sequences.
                self.share_prefix = False
                warnings.warn(
                    f"reward model {self.name!r} ({type(self.model).__name__}): scoring on a shared prompt prefix "
                    f"failed ({type(error).__name__}: {error}); it scores whole sequences from now on (the same "
                    "scores, slower)",
                    stacklevel=2,
                )
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
    :func:`rmteacher.loading.load_policy` (``device``, ``dtype``, ``device_map``), with ``max_length``,
    ``max_tokens_per_batch``, ``share_prefix`` and ``system_prompt`` as in :class:`ModelReward`. Call ``.free()``
    on a reward (or use a model reward as a context manager) before loading the next, to hold one reward model in
    memory at a time.
    """
    name, target = parse_reward_spec(spec, argument=argument)
    if CALLABLE_SPEC.match(target) and not Path(target).exists():
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
    if is_gguf_path(target):
        raise ModelLoadError(
            f"{argument} {spec!r}: a GGUF file holds a causal LM, not a reward model with a scalar head; train one "
            f"from it with `rmteacher train-rm --init {target}`"
        )
    from transformers import AutoModelForSequenceClassification

    kind = f"reward model {name!r}"
    where = placement(f"{argument} {spec!r}", device, dtype, device_map)
    tokenizer = load_tokenizer(target, kind=kind, trust_remote_code=trust_remote_code)
    model = load_pretrained(
        AutoModelForSequenceClassification,
        target,
        kind=kind,
        trust_remote_code=trust_remote_code,
        weights=True,
        use_safetensors=True,
        **where,
    )
    if model.config.num_labels != 1:
        raise ModelLoadError(
            f"{argument} {spec!r}: a reward model needs a scalar head (num_labels=1); it has {model.config.num_labels}"
        )
    if device_map is None:
        model = model.to(resolve_device(device))
    return ModelReward(
        name=name,
        model=model.eval(),
        tokenizer=tokenizer,
        max_tokens_per_batch=max_tokens_per_batch,
        max_length=max_length,
        share_prefix=share_prefix,
        system_prompt=system_prompt,
    )
