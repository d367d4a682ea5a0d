"""Sampling K completions per prompt from a policy, batched, seeded, and shardable across processes.

Batches are formed the same way whatever the number of processes (prompts sorted by length, then chunked) and
each batch draws from its own seed, so one process and two processes under ``accelerate launch`` give the same
samples: rank ``r`` of ``w`` takes batches ``r, r + w, ...``.

Stopping is TRL's: a completion ends at the first of the policy's end tokens (:func:`end_token_ids`: every id of
``generation_config.eos_token_id`` and the tokenizer's EOS), so a Llama-3-style policy stops at ``<|eot_id|>`` here
as in RL training. Optional ``stop`` strings end a completion too (the text is cut before the first one). A
completion's text never holds special tokens or end-of-turn text: it is decoded up to its end token, without
special tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from rmteacher.rendering import Prompt, encode_rendered, render_prompt

__all__ = ["Completion", "end_token_ids", "sample_completions"]


@dataclass(frozen=True)
class Completion:
    """One sampled completion.

    ``text``: decoded without special tokens, up to its end token or stop string. ``token_ids``: the generated ids
    up to and including the end token (or the token that completed the stop string) when it ``finished``, all of
    them when it ran into ``max_new_tokens``. ``stop_string``: the stop string that ended it, None when it ended
    otherwise (an end token, ``max_new_tokens``).
    """

    prompt_index: int
    sample_id: int
    text: str
    token_ids: tuple[int, ...]
    finished: bool
    stop_string: str | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


def end_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end a completion: the tokenizer's EOS, then every id of ``model.generation_config.eos_token_id``
    (an int or a list), without repeats; the same set and order as TRL's ``GRPOTrainer``/``RLOOTrainer``.

    Raises:
        ValueError: neither the tokenizer nor the generation config names an end token.
    """
    config = getattr(model, "generation_config", None)
    configured = getattr(config, "eos_token_id", None)
    configured = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    ids = [tokenizer.eos_token_id, *configured] if tokenizer.eos_token_id is not None else configured
    unique = list(dict.fromkeys(int(i) for i in ids))
    if not unique:
        raise ValueError("the policy has no end token (no tokenizer EOS, no generation_config.eos_token_id)")
    return unique


def _cut_at_stop(tokenizer: Any, ids: list[int], text: str, stop: Sequence[str]) -> tuple[str, list[int], str] | None:
    """``(text before the first stop string, ids up to the token that completed it, that stop string)``, or None
    without one. Of stop strings starting at the same place, the first given wins."""
    found = [(text.find(s), i) for i, s in enumerate(stop) if s and s in text]
    if not found:
        return None
    start, first = min(found)
    # The fewest leading tokens whose text holds a stop string (a prefix's text only grows with its length).
    low, high = 1, len(ids)
    while low < high:
        mid = (low + high) // 2
        if any(s and s in tokenizer.decode(ids[:mid], skip_special_tokens=True) for s in stop):
            high = mid
        else:
            low = mid + 1
    return text[:start], ids[:low], stop[first]


def sample_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    *,
    samples_per_prompt: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
    prompts_per_batch: int = 16,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    system_prompt: str | None = None,
    stop: Sequence[str] | None = None,
) -> list[Completion]:
    """Samples ``samples_per_prompt`` completions for each prompt (pure ancestral sampling: no top-k/top-p/min-p,
    no repetition penalty, whatever the model's generation config says).

    Args:
        model: a causal LM (``AutoModelForCausalLM``) in eval mode.
        tokenizer: its tokenizer; prompts are rendered with :func:`rmteacher.rendering.render_prompt` (the chat
            template when there is one) and encoded with :func:`rmteacher.rendering.encode_rendered`.
        prompts: ``[num_prompts]`` strings or conversations (TRL's formats).
        samples_per_prompt: K, the completions per prompt (the paper: 10).
        max_new_tokens: the most tokens a completion may have.
        temperature: sampling temperature (the paper: 1).
        seed: base seed; batch ``b`` samples under ``seed * 1_000_003 + b``. The caller's RNG state is restored.
        prompts_per_batch: prompts per ``generate`` call (the batch holds ``prompts_per_batch * K`` sequences).
        rank, world_size: this process's share of the batches.
        progress: show a progress bar (rank 0 only).
        system_prompt: prepended to every prompt as a system message.
        stop: strings that end a completion (cut before the first one; the completion counts as finished).

    Returns:
        this rank's completions, ``K`` per prompt it handled, ordered by (prompt_index, sample_id).
    """
    import torch

    if samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be >= 1; got {samples_per_prompt}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1; got {max_new_tokens}")
    stop = [s for s in stop or [] if s]
    prompt_ids = encode_rendered(tokenizer, [render_prompt(tokenizer, p, system_prompt=system_prompt) for p in prompts])
    order = sorted(range(len(prompts)), key=lambda i: (len(prompt_ids[i]), i))
    batches = [order[i : i + prompts_per_batch] for i in range(0, len(order), prompts_per_batch)]
    mine = list(range(rank, len(batches), world_size))
    device = next(model.parameters()).device
    ends = end_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ends[0]
    results: list[Completion] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for b in tqdm(mine, desc="sampling", unit="batch", disable=not progress or rank != 0, leave=False):
            indices = batches[b]
            width = max(len(prompt_ids[i]) for i in indices)
            ids = torch.full((len(indices), width), pad, dtype=torch.long)
            mask = torch.zeros((len(indices), width), dtype=torch.long)
            for row, i in enumerate(indices):  # left-padded: every prompt ends where generation starts
                ids[row, width - len(prompt_ids[i]) :] = torch.tensor(prompt_ids[i], dtype=torch.long)
                mask[row, width - len(prompt_ids[i]) :] = 1
            torch.manual_seed(seed * 1_000_003 + b)
            with torch.inference_mode():
                output = model.generate(
                    input_ids=ids.repeat_interleave(samples_per_prompt, 0).to(device),
                    attention_mask=mask.repeat_interleave(samples_per_prompt, 0).to(device),
                    do_sample=True,
                    temperature=temperature,
                    top_k=0,
                    top_p=1.0,
                    min_p=None,
                    repetition_penalty=1.0,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad,
                    eos_token_id=ends,
                    **({"stop_strings": stop, "tokenizer": tokenizer} if stop else {}),
                )
            for row, generated in enumerate(output[:, width:].cpu().tolist()):
                end = next((t for t, token in enumerate(generated) if token in ends), None)
                kept = generated if end is None else generated[:end]
                token_ids = generated if end is None else generated[: end + 1]
                text = tokenizer.decode(kept, skip_special_tokens=True)
                finished = end is not None
                cut = _cut_at_stop(tokenizer, kept, text, stop) if stop else None
                stop_string = None
                if cut is not None:
                    text, token_ids, stop_string, finished = cut[0], cut[1], cut[2], True
                results.append(
                    Completion(
                        prompt_index=indices[row // samples_per_prompt],
                        sample_id=row % samples_per_prompt,
                        text=text,
                        token_ids=tuple(token_ids),
                        finished=finished,
                        stop_string=stop_string,
                    )
                )
    return sorted(results, key=lambda c: (c.prompt_index, c.sample_id))
