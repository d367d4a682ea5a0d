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
    """``samples_per_prompt`` completions per prompt at temperature 1, decoded without special tokens.

    Args:
        prompts: ``[num_prompts]`` raw user texts; the chat template is applied here.

    Returns:
        ``[num_prompts][samples_per_prompt]`` completion texts.
    """
    import torch

    templated = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    repeated = [t for t in templated for _ in range(samples_per_prompt)]  # [num_prompts * samples_per_prompt]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    texts: list[str] = []
    try:
        model.eval()
        with torch.inference_mode():
            for start in range(0, len(repeated), batch_size):
                batch = tokenizer(
                    repeated[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    padding_side="left",
                    add_special_tokens=False,
                ).to(model.device)
                out = model.generate(
                    **batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens
                )
                texts += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        torch.random.set_rng_state(generator_state)  # sampling here leaves the caller's RNG stream untouched
    return [texts[i : i + samples_per_prompt] for i in range(0, len(texts), samples_per_prompt)]


def ground_truth_matrix(prompts: Sequence[str], completions: Sequence[Sequence[str]]) -> np.ndarray:
    """Ground-truth rewards ``[num_prompts, samples_per_prompt]`` of :func:`sample_completions`' output."""
    return np.array([ground_truth([p] * len(cs), list(cs)) for p, cs in zip(prompts, completions, strict=True)])
