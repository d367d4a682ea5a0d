"""The sandbox policy: a tiny Llama causal LM, and sampling it to measure the ground-truth reward it earns.

A standard ``transformers`` architecture (not a bespoke module) so the sandbox exercises the same loading,
generation and TRL code paths as a real policy. Sizes are picked so SFT takes seconds on two CPU cores and the
model still learns most of the task.

Why Llama and not Qwen2: transformers 5 lists ``qwen2`` among model types whose saved tokenizer class it distrusts,
so ``AutoTokenizer.from_pretrained(policy_dir)`` would build a byte-level Qwen2 tokenizer from our vocabulary
instead of loading ``tokenizer.json`` (it silently drops spaces). For ``llama`` it loads the saved tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rmteacher.sandbox.task import ground_truth

__all__ = ["new_policy", "num_parameters", "sample_completions"]


def new_policy(tokenizer: Any, *, seed: int) -> Any:
    """A randomly initialized ``LlamaForCausalLM`` (about 190k parameters) for ``tokenizer``'s vocabulary.

    Three layers of width 64 with tied embeddings; pad/eos/bos ids and the generation config come from the
    tokenizer so ``generate`` stops at EOS without extra arguments.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=tokenizer.model_max_length,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=16,
    )
    return model


def num_parameters(model: Any) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return int(sum(p.numel() for p in model.parameters()))


def sample_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    samples_per_prompt: int,
    max_new_tokens: int = 16,
    seed: int = 0,
    batch_size: int = 256,
) -> list[list[str]]:
    """``samples_per_prompt`` completions per prompt at temperature 1, as texts.

    The one sampler, :func:`rmteacher.sampling.sample_completions` (chat template, stopping, decoding), in the shape
    the sandbox's measurements use.

    Args:
        prompts: ``[num_prompts]`` raw user texts; the chat template is applied by the sampler.
        batch_size: sequences per ``generate`` call (``batch_size // samples_per_prompt`` prompts).

    Returns:
        ``[num_prompts][samples_per_prompt]`` completion texts.
    """
    from rmteacher.sampling import sample_completions as sample

    model.eval()
    completions = sample(
        model,
        tokenizer,
        list(prompts),
        samples_per_prompt=samples_per_prompt,
        max_new_tokens=max_new_tokens,
        seed=seed,
        prompts_per_batch=max(1, batch_size // samples_per_prompt),
        progress=False,
    )  # ordered by (prompt, sample)
    texts = [c.text for c in completions]
    return [texts[i : i + samples_per_prompt] for i in range(0, len(texts), samples_per_prompt)]


def ground_truth_matrix(prompts: Sequence[str], completions: Sequence[Sequence[str]]) -> np.ndarray:
    """Ground-truth rewards ``[num_prompts, samples_per_prompt]`` of :func:`sample_completions`' output."""
    return np.array([ground_truth([p] * len(cs), list(cs)) for p, cs in zip(prompts, completions, strict=True)])
