"""Sampling K completions per prompt from a policy, batched, seeded, and shardable across processes.

Batches are formed the same way whatever the number of processes (prompts sorted by length, then chunked) and
each batch draws from its own seed, so one process and two processes under ``accelerate launch`` give the same
samples: rank ``r`` of ``w`` takes batches ``r, r + w, ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from rmteacher.models import render_conversation

__all__ = ["Completion", "sample_completions"]


@dataclass(frozen=True)
class Completion:
    """One sampled completion: its text, its generated token ids (EOS included when it ended), whether it ended."""

    prompt_index: int
    sample_id: int
    text: str
    token_ids: tuple[int, ...]
    finished: bool

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


def sample_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    samples_per_prompt: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
    prompts_per_batch: int = 16,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
) -> list[Completion]:
    """Samples ``samples_per_prompt`` completions for each prompt (pure ancestral sampling: no top-k/top-p).

    Args:
        model: a causal LM (``AutoModelForCausalLM``) in eval mode.
        tokenizer: its tokenizer; the chat template, when there is one, renders each prompt.
        prompts: raw user texts.
        samples_per_prompt: K, the completions per prompt (the paper: 10).
        max_new_tokens: the most tokens a completion may have.
        temperature: sampling temperature (the paper: 1).
        seed: base seed; batch ``b`` samples under ``seed * 1_000_003 + b``.
        prompts_per_batch: prompts per ``generate`` call (the batch holds ``prompts_per_batch * K`` sequences).
        rank, world_size: this process's share of the batches.
        progress: show a progress bar (rank 0 only).

    Returns:
        this rank's completions, ``K`` per prompt it handled, ordered by (prompt_index, sample_id).
    """
    import torch

    if samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be >= 1; got {samples_per_prompt}")
    rendered = [render_conversation(tokenizer, p) for p in prompts]
    lengths = [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: (lengths[i], i))
    batches = [order[i : i + prompts_per_batch] for i in range(0, len(order), prompts_per_batch)]
    mine = list(range(rank, len(batches), world_size))
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    results: list[Completion] = []
    for b in tqdm(mine, desc="sampling", unit="batch", disable=not progress or rank != 0, leave=False):
        indices = batches[b]
        encoded = tokenizer(
            [rendered[i] for i in indices],
            add_special_tokens=False,
            return_tensors="pt",
            padding=True,
            padding_side="left",
        ).to(device)
        torch.manual_seed(seed * 1_000_003 + b)
        with torch.inference_mode():
            output = model.generate(
                input_ids=encoded["input_ids"].repeat_interleave(samples_per_prompt, 0),
                attention_mask=encoded["attention_mask"].repeat_interleave(samples_per_prompt, 0),
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=eos,
            )
        generated = output[:, encoded["input_ids"].shape[1] :].cpu()
        for row, ids in enumerate(generated.tolist()):
            finished = eos in ids
            kept = ids[: ids.index(eos)] if finished else ids
            results.append(
                Completion(
                    prompt_index=indices[row // samples_per_prompt],
                    sample_id=row % samples_per_prompt,
                    text=tokenizer.decode(kept, skip_special_tokens=True),
                    token_ids=tuple(ids[: len(kept) + 1] if finished else kept),
                    finished=finished,
                )
            )
    return sorted(results, key=lambda c: (c.prompt_index, c.sample_id))
