"""Scoring throughput of `rmteacher evaluate` against the authors' way of scoring, side by side in one run.

Run: ``.venv/bin/python benchmarks/bench_evaluate.py [--prompts 200] [--samples 10] [--reward-models 3]``

Both score the same samples (the sandbox policy's own, ``--prompts x --samples``) with the same reward models
(sequence-classification Llama models of the sandbox policy's size, freshly initialized: scoring cost does not
depend on the weights) and must give the same numbers.

- baseline, as the authors' RM-eval code: per reward model, apply the chat template and tokenize again, score in
  arrival order, fixed batch size (``--baseline-batch``, default 16), ``torch.no_grad``.
- rmteacher: :class:`rmteacher.models.ModelReward`: each prompt's shared prefix run once and its key/value cache
  reused for the prompt's K completions, length-sorted batches filled to a token budget, ``torch.inference_mode``.

Peak memory is the process's peak RSS (``resource.getrusage``) after each phase; the baseline runs first, so
the second number is an upper bound for rmteacher's.
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import numpy as np
import torch


def reward_models(tokenizer: Any, count: int) -> list[Any]:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    models = []
    for i in range(count):
        torch.manual_seed(i)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            num_labels=1,
            pad_token_id=tokenizer.pad_token_id,
        )
        models.append(LlamaForSequenceClassification(config).eval())
    return models


def baseline_scores(model: Any, tokenizer: Any, prompts: list[str], completions: list[str], batch: int) -> np.ndarray:
    """The authors' loop: template and tokenize per reward model and batch, arrival order, fixed batch size."""
    out = []
    tokenizer.padding_side = "right"
    with torch.no_grad():
        for start in range(0, len(prompts), batch):
            texts = [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}, {"role": "assistant", "content": c}], tokenize=False
                )
                for p, c in zip(prompts[start : start + batch], completions[start : start + batch], strict=True)
            ]
            encoded = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
            out.append(model(**encoded).logits[:, 0].float().numpy())
    return np.concatenate(out)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--reward-models", type=int, default=3)
    parser.add_argument("--baseline-batch", type=int, default=16)
    args = parser.parse_args()

    from rmteacher import sandbox
    from rmteacher.models import ModelReward, load_policy
    from rmteacher.sampling import sample_completions
    from rmteacher.tables import load_prompts

    task = sandbox.build()
    policy, tokenizer = load_policy(str(task.policy_dir))
    prompts_table = load_prompts(task.train_prompts, "prompt").iloc[: args.prompts]
    samples = sample_completions(
        policy, tokenizer, prompts_table["prompt"].tolist(), samples_per_prompt=args.samples, max_new_tokens=16
    )
    prompts = [prompts_table["prompt"].iloc[s.prompt_index] for s in samples]
    completions = [s.text for s in samples]
    models = reward_models(tokenizer, args.reward_models)
    n = len(prompts) * len(models)
    print(f"torch threads: {torch.get_num_threads()}; {len(prompts)} samples x {len(models)} reward models")

    start = time.perf_counter()
    baseline = [baseline_scores(m, tokenizer, prompts, completions, args.baseline_batch) for m in models]
    baseline_seconds = time.perf_counter() - start
    baseline_rss = peak_rss_mb()

    start = time.perf_counter()
    ours = [ModelReward(f"rm{i}", m, tokenizer).score(prompts, completions) for i, m in enumerate(models)]
    ours_seconds = time.perf_counter() - start
    ours_rss = peak_rss_mb()

    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(baseline, ours, strict=True))
    print(f"max |score difference|: {worst:.2e} (same numbers: {worst < 1e-4})")
    print(f"baseline   (authors' loop, batch {args.baseline_batch}): {baseline_seconds:7.2f} s  "
          f"{n / baseline_seconds:9.0f} samples/s  peak RSS {baseline_rss:.0f} MB")  # fmt: skip
    print(f"rmteacher  (shared prefix, sorted, budget):   {ours_seconds:7.2f} s  "
          f"{n / ours_seconds:9.0f} samples/s  peak RSS {ours_rss:.0f} MB")  # fmt: skip
    print(f"speed-up: {baseline_seconds / ours_seconds:.2f}x")


if __name__ == "__main__":
    main()
