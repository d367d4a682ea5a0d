"""`rmteacher evaluate`: its scoring against the authors' loop, and its wall time against its pure compute.

Run from the repository root (``--quick``: 20 prompts x 4 samples, 2 reward models, for a smoke check):

    .venv/bin/python benchmarks/bench_evaluate.py [--prompts 200] [--samples 10] [--reward-models 3] [--threads 1]
        [--repeats 3] [--warmup 1] [--max-spread 0.1] [--only scoring|end-to-end|startup] [--quick]

1. **Scoring** the sandbox policy's own samples (``--prompts x --samples``) with ``--reward-models`` sequence-
   classification Llamas of the sandbox policy's size (freshly initialized: the cost does not depend on the
   weights), both ways giving the same scores (checked to 1e-4 before timing):
   - the authors' RM-eval loop: per reward model apply the chat template and tokenize again, arrival order, fixed
     batch size, ``torch.no_grad``, at batch 16, 32 and 64 (their configs use 32 or 64);
   - rmteacher's :class:`rmteacher.rewards.ModelReward`: each prompt's shared prefix run once and its key/value
     cache reused for its K completions, length-sorted batches filled to a token budget, ``torch.inference_mode``.
2. **End to end**: the ``rmteacher evaluate`` command in a fresh process (wall time: start-up, imports, loading,
   sampling, scoring, bootstrap, writing the run directory and its figure) against its pure compute (sampling plus
   scoring the samples and the off-policy pairs, in this process, models already loaded); on the sandbox path also
   the same run through the library in this process (no interpreter start-up, imports already paid). On
   - the default sandbox path (``rmteacher evaluate`` with no inputs: Python-function rewards), and
   - model reward models (the reward models of 1. saved to disk, the sandbox's policy, prompts, pairs and ground
     truth). The goal of issue 13: wall time within 2x of the pure compute.
3. **Start-up**: ``rmteacher --help`` in a fresh process (goal: under 0.3 s).

Timing as every benchmark here (``benchmarks/_timing.py``): variants alternate, ``--warmup`` untimed rounds, then
``--repeats`` (>= 3) timed runs each; medians and spreads are printed, and a ratio only when both spreads are under
``--max-spread``. Torch runs ``--threads`` intra-op threads here and in the commands (``--cpu-threads``).
"""

from __future__ import annotations

import _timing

# isort: split
import argparse
import contextlib
import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RMTEACHER = str(Path(sys.executable).with_name("rmteacher"))


def reward_models(tokenizer: Any, count: int) -> list[Any]:
    """``count`` sequence-classification Llamas of the sandbox policy's size, seeded."""
    import torch
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


def authors_scores(model: Any, tokenizer: Any, prompts: list[str], completions: list[str], batch: int) -> np.ndarray:
    """The authors' loop: template and tokenize per reward model and batch, arrival order, fixed batch size."""
    import torch

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


def scoring(task: Any, policy: Any, tokenizer: Any, prompts: list[str], args: argparse.Namespace) -> None:
    from rmteacher.rewards import ModelReward
    from rmteacher.sampling import sample_completions

    samples = sample_completions(
        policy, tokenizer, prompts, samples_per_prompt=args.samples, max_new_tokens=16, progress=False
    )
    rows = [prompts[s.prompt_index] for s in samples]
    completions = [s.text for s in samples]
    models = reward_models(tokenizer, args.reward_models)
    shape = f"{len(rows)} samples ({len(prompts)} prompts x {args.samples}) x {len(models)} reward models"
    print(f"\n## 1. scoring: {shape}")

    def ours() -> list[np.ndarray]:
        return [ModelReward(f"rm{i}", m, tokenizer).score(rows, completions) for i, m in enumerate(models)]

    def authors(batch: int) -> Callable[[], list[np.ndarray]]:
        return lambda: [authors_scores(m, tokenizer, rows, completions, batch) for m in models]

    reference = ours()
    for batch in args.batches:
        worst = max(float(np.max(np.abs(a - b))) for a, b in zip(authors(batch)(), reference, strict=True))
        if worst > 1e-4:
            raise SystemExit(f"the authors' loop at batch {batch} differs by {worst:.2g}; not timing different work")
    print("same scores as the authors' loop at every batch size (max |difference| <= 1e-4)")
    variants: dict[str, Callable[[], Any]] = {f"authors' loop, batch {b}": authors(b) for b in args.batches}
    variants["rmteacher (shared prefix, sorted, budget)"] = ours
    results = _timing.alternate(
        {name: (lambda run=run: run() and None) for name, run in variants.items()},
        repeats=args.repeats,
        warmup=args.warmup,
    )
    measures = {name: r["wall"] for name, r in results.items()}
    _timing.print_measures(measures)
    n = len(rows) * len(models)
    for name, m in measures.items():
        print(f"  {name:44s} {n / m.median:8.0f} samples/s")
    ours_measure = measures["rmteacher (shared prefix, sorted, budget)"]
    for batch in args.batches:
        _timing.print_ratio(
            f"speed-up over the authors' loop at batch {batch}",
            measures[f"authors' loop, batch {batch}"],
            ours_measure,
            max_spread=args.max_spread,
        )


def run_cli(command: list[str], threads: int) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=_timing.child_env(threads))
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def end_to_end(task: Any, policy: Any, tokenizer: Any, prompts_table: Any, args: argparse.Namespace) -> None:
    """``rmteacher evaluate`` in a fresh process against sampling + scoring here, for both reward paths."""
    from rmteacher import sandbox
    from rmteacher.rewards import load_reward
    from rmteacher.sampling import sample_completions
    from rmteacher.tables import load_pairs

    scratch = Path(tempfile.mkdtemp(prefix="bench_evaluate-"))
    rm_dirs = []
    for i, model in enumerate(reward_models(tokenizer, args.reward_models)):
        rm_dirs.append(scratch / f"rm{i}")
        model.save_pretrained(rm_dirs[-1])
        tokenizer.save_pretrained(rm_dirs[-1])
    prompts = prompts_table["prompt"].tolist()
    pairs = load_pairs(task.pairs, _all_prompts(task))
    pairs = pairs[pairs["prompt_id"].isin(prompts_table["prompt_id"])]
    common = ["--num-prompts", str(args.prompts), "--samples-per-prompt", str(args.samples), "--max-new-tokens", "16",
              "--cpu-threads", str(args.threads), "--no-progress"]  # fmt: skip
    models_inputs = ["--policy", str(task.policy_dir), "--prompts", str(task.train_prompts), "--pairs",
                     str(task.pairs), "--ground-truth", sandbox.GROUND_TRUTH,
                     *[f"--reward-model=rm{i}={d}" for i, d in enumerate(rm_dirs)]]  # fmt: skip
    function_specs = [*sandbox.CANDIDATE_REWARDS, f"perfect={sandbox.GROUND_TRUTH}", f"gt={sandbox.GROUND_TRUTH}"]
    rewards = {
        "sandbox": [load_reward(spec) for spec in function_specs],
        "models": [load_reward(f"rm{i}={d}") for i, d in enumerate(rm_dirs)]
        + [load_reward(f"gt={sandbox.GROUND_TRUTH}")],
    }
    counter = iter(range(10**6))

    def cli(inputs: list[str]) -> Callable[[], None]:
        return lambda: run_cli([RMTEACHER, "evaluate", "--out", str(scratch / f"run{next(counter)}"), *common,
                                *inputs], args.threads)  # fmt: skip

    def compute(path: str) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            start = time.perf_counter()
            samples = sample_completions(policy, tokenizer, prompts, samples_per_prompt=args.samples,
                                         max_new_tokens=16, prompts_per_batch=32, progress=False)  # fmt: skip
            sampled = time.perf_counter()
            rows = [prompts[s.prompt_index] for s in samples]
            texts = [s.text for s in samples]
            for reward in rewards[path]:
                reward.score(rows, texts)
                if reward.name != "gt":  # evaluate takes the ground truth's pair scores from the pairs file
                    reward.score(pairs["prompt"].tolist(), pairs["chosen"].tolist())
                    reward.score(pairs["prompt"].tolist(), pairs["rejected"].tolist())
            return {"sampling": sampled - start, "scoring": time.perf_counter() - sampled}

        return run

    def in_process() -> None:
        from rmteacher.commands.evaluate import EvaluateConfig, run_evaluate

        out = scratch / f"run{next(counter)}"
        config = EvaluateConfig(
            out=out, num_prompts=args.prompts, samples_per_prompt=args.samples, cpu_threads=args.threads, progress=False
        )
        with contextlib.redirect_stderr(io.StringIO()):  # its note that the sandbox is used, once per run
            run_evaluate(config)

    variants = {
        "evaluate, sandbox (process)": cli([]),
        "evaluate, sandbox (in this process)": in_process,
        "sampling + scoring, sandbox": compute("sandbox"),
        "evaluate, model RMs (process)": cli(models_inputs),
        "sampling + scoring, model RMs": compute("models"),
    }
    print(f"\n## 2. end to end: `rmteacher evaluate` ({args.prompts} prompts x {args.samples} samples, 16 tokens, "
          f"--cpu-threads {args.threads}) vs its pure compute")  # fmt: skip
    print(f"sandbox path: {len(function_specs) - 1} Python-function rewards + ground truth (+ perfect_scaled); "
          f"model path: {len(rm_dirs)} reward models + ground truth; off-policy pairs scored on both")  # fmt: skip
    results = _timing.alternate(variants, repeats=args.repeats, warmup=args.warmup)
    for path, (process, compute_name) in {
        "sandbox": ("evaluate, sandbox (process)", "sampling + scoring, sandbox"),
        "model RMs": ("evaluate, model RMs (process)", "sampling + scoring, model RMs"),
    }.items():
        parts = results[compute_name]
        measures = {process: results[process]["wall"]}
        if path == "sandbox":  # the same run without a fresh process: no interpreter start-up, imports paid
            measures["evaluate, sandbox (in this process)"] = results["evaluate, sandbox (in this process)"]["wall"]
        measures.update({compute_name: parts["wall"], "  of which sampling": parts["sampling"],
                         "  of which scoring": parts["scoring"]})  # fmt: skip
        _timing.print_measures(measures)
        _timing.print_ratio(
            f"{path}: evaluate wall / pure compute (goal <= 2)",
            results[process]["wall"],
            parts["wall"],
            max_spread=args.max_spread,
        )
        if path == "sandbox":
            _timing.print_ratio(
                "sandbox: evaluate in this process / pure compute",
                results["evaluate, sandbox (in this process)"]["wall"],
                parts["wall"],
                max_spread=args.max_spread,
            )


def _all_prompts(task: Any) -> Any:
    from rmteacher.tables import load_prompts

    return load_prompts(task.train_prompts, "prompt")


def startup(args: argparse.Namespace) -> None:
    print("\n## 3. start-up: `rmteacher --help` in a fresh process (goal: under 0.3 s)")
    results = _timing.alternate(
        {"rmteacher --help": lambda: run_cli([RMTEACHER, "--help"], args.threads)},
        repeats=max(args.repeats, 5),
        warmup=1,
        progress=False,
    )
    _timing.print_measures({"rmteacher --help": results["rmteacher --help"]["wall"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=200, help="prompts (evaluate's default: 200)")
    parser.add_argument("--samples", type=int, default=10, help="samples per prompt (the paper: 10)")
    parser.add_argument("--reward-models", type=int, default=3, help="model reward models")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64], help="the authors' rm batch sizes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, here and --cpu-threads of commands")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (>= 3), alternating")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--max-spread", type=float, default=_timing.MAX_SPREAD, help="withhold ratios above this")
    parser.add_argument("--only", choices=["scoring", "end-to-end", "startup"], help="run one section")
    parser.add_argument("--quick", action="store_true", help="20 prompts x 4 samples, 2 reward models, no warm-up")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.samples, args.reward_models, args.warmup = 20, 4, 2, 0
    threads = _timing.pin_torch_threads(args.threads)

    from rmteacher import sandbox
    from rmteacher.loading import load_policy

    task = sandbox.build(progress=False)  # build (or find) the cache before timing anything
    policy, tokenizer = load_policy(str(task.policy_dir))
    table = _all_prompts(task)
    # The prompts `rmteacher evaluate` chooses: its seeded subset (seed 237), in file order.
    table = table.iloc[np.sort(np.random.RandomState(237).permutation(len(table))[: args.prompts])]
    _timing.header(
        "bench_evaluate: scoring, end to end, start-up",
        threads=threads,
        settings=f"{args.prompts} prompts x {args.samples} samples, {args.reward_models} reward models, "
        f"{args.repeats} timed runs after {args.warmup} warm-up",
    )
    if args.only in (None, "scoring"):
        scoring(task, policy, tokenizer, table["prompt"].tolist(), args)
    if args.only in (None, "end-to-end"):
        end_to_end(task, policy, tokenizer, table, args)
    if args.only in (None, "startup"):
        startup(args)
    _timing.footer()


if __name__ == "__main__":
    main()
