"""Reward models in memory one at a time versus all at once, and bfloat16 versus float32 scoring on a CPU.

Run from the repository root (``--quick``: 8 prompts and small reward models, a smoke check):

    .venv/bin/python benchmarks/bench_memory.py [--prompts 32] [--samples 4] [--reward-models 4] [--hidden 512]
        [--layers 4] [--vocab 32768] [--threads 1] [--repeats 3] [--warmup 0] [--max-spread 0.1]
        [--only memory|dtype] [--quick]

1. **Peak memory of** ``rmteacher evaluate`` with ``--reward-models`` sequence-classification Llamas saved to disk
   (fresh weights, ``--vocab`` rows of embeddings as real reward models have, so each weighs about
   ``4 * params`` bytes in float32), on the sandbox's policy, prompts and ground truth. Each run is a fresh process
   running the real command (``rmteacher.cli.main``) and reporting its own peak resident set size
   (``getrusage(RUSAGE_SELF).ru_maxrss``):
   - **one at a time**: the command as it is (load a reward model, score every sample, free it, load the next);
   - **all at once**: the same command with every loaded reward model kept referenced until the end, which is what
     holding all of them in memory together costs (rmteacher before issue 10 loaded them all up front; the peak is
     the same: the policy, every reward model, and one scoring's activations);
   each as saved (float32 checkpoints loaded as float32: transformers maps the safetensors file, so only the pages a
   model reads become resident) and with ``--dtype bfloat16`` (converted on load: every weight is a copy in memory,
   as it is on a GPU). Both variants must write the same metrics (checked). Process wall times are printed too.
2. **Scoring throughput**, bfloat16 versus float32: one of those reward models loaded with ``dtype`` (what
   ``--dtype`` passes), scoring the same samples of the sandbox policy in this process (:class:`ModelReward`;
   their tokenization is cached after the first call, so the forward passes are what is timed). The largest
   difference between the two dtypes' scores is printed with the scores' standard deviation for scale.

Timing as every benchmark here (``benchmarks/_timing.py``): variants alternate, ``--warmup`` untimed rounds, then
``--repeats`` (>= 3) timed runs each; medians and spreads are printed, and a ratio only when both spreads are under
``--max-spread``. Torch runs ``--threads`` intra-op threads here and in the commands (``--cpu-threads``).
"""

from __future__ import annotations

import _timing

# isort: split
import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: What a child process runs: the evaluate command, optionally keeping every loaded reward model referenced.
CHILD = """
import json, resource, sys, time
import rmteacher.evaluate as evaluate
from rmteacher.cli import main

variant, argv = sys.argv[1], json.loads(sys.argv[2])
held = []
if variant == "all":
    load = evaluate.load_reward

    def load_and_keep(*args, **kwargs):
        reward = load(*args, **kwargs)
        held.append(reward)
        return reward

    evaluate.load_reward = load_and_keep
start = time.perf_counter()
code = main(argv)
seconds = time.perf_counter() - start
print(json.dumps({"code": code, "seconds": seconds, "held": len(held),
                  "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def save_reward_models(directory: Path, tokenizer: Any, args: argparse.Namespace) -> list[Path]:
    """``--reward-models`` seeded sequence-classification Llamas saved with the sandbox tokenizer; their paths."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    paths = []
    for i in range(args.reward_models):
        torch.manual_seed(i)
        config = LlamaConfig(
            vocab_size=max(args.vocab, len(tokenizer)),
            hidden_size=args.hidden,
            intermediate_size=args.hidden * 11 // 4,
            num_hidden_layers=args.layers,
            num_attention_heads=8,
            num_key_value_heads=4,
            num_labels=1,
            pad_token_id=tokenizer.pad_token_id,
            max_position_embeddings=512,
        )
        model = LlamaForSequenceClassification(config).eval()
        path = directory / f"rm{i}"
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(path)
    params = sum(p.numel() for p in model.parameters())
    print(f"reward models: {args.reward_models} Llamas of {params / 1e6:.1f}M parameters ({params * 4 / 2**20:.0f} MiB "
          f"in float32; hidden {args.hidden}, {args.layers} layers, vocabulary {config.vocab_size})")  # fmt: skip
    return paths


#: The memory variants: (label, which loading, extra evaluate options).
MEMORY_VARIANTS = (
    ("one at a time", "one", ()),
    ("all at once", "all", ()),
    ("one at a time, --dtype bfloat16", "one", ("--dtype", "bfloat16")),
    ("all at once, --dtype bfloat16", "all", ("--dtype", "bfloat16")),
)


def peak_memory(task: Any, paths: list[Path], work: Path, args: argparse.Namespace) -> None:
    from rmteacher import sandbox

    print(f"\n## 1. peak RSS of `rmteacher evaluate`: {args.prompts} prompts x {args.samples} samples, "
          f"{len(paths)} reward models")  # fmt: skip
    count = 0
    peaks: dict[str, list[float]] = {label: [] for label, _, _ in MEMORY_VARIANTS}
    metrics: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in MEMORY_VARIANTS}

    def run(label: str, variant: str, options: tuple[str, ...]) -> dict[str, float]:
        nonlocal count
        count += 1
        out = work / f"eval-{count}"
        models = [arg for i, path in enumerate(paths) for arg in ("--reward-model", f"rm{i}={path}")]
        argv = ["evaluate", "--out", str(out), "--policy", str(task.policy_dir), "--prompts", str(task.eval_prompts),
                "--ground-truth", sandbox.GROUND_TRUTH, "--num-prompts", str(args.prompts), "--samples-per-prompt",
                str(args.samples), "--max-new-tokens", "16", "--num-resamples", "200", "--cpu-threads",
                str(args.threads), "--no-progress", *options, *models]  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", CHILD, variant, json.dumps(argv)],
            capture_output=True,
            text=True,
            env=_timing.child_env(args.threads),
        )
        if done.returncode != 0:
            raise SystemExit(f"{label} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        if report["code"] != 0 or report["held"] != (len(paths) + 1 if variant == "all" else 0):  # + ground truth
            raise SystemExit(f"{label} did not run as intended: {report}\n{done.stderr[-3000:]}")
        peaks[label].append(report["max_rss_mib"])
        metrics[label].append(json.loads((out / "metrics.json").read_text())["reward_models"])
        shutil.rmtree(out)
        return {"evaluate": report["seconds"]}

    results = _timing.alternate(
        {label: (lambda a=(label, variant, options): run(*a)) for label, variant, options in MEMORY_VARIANTS},
        repeats=args.repeats,
        warmup=args.warmup,
    )
    for dtype in ("", ", --dtype bfloat16"):  # the same numbers whichever way the models are held
        runs = metrics[f"one at a time{dtype}"] + metrics[f"all at once{dtype}"]
        for other in runs:
            for name, entry in runs[0].items():
                a, b = entry["reward_variance"]["estimate"], other[name]["reward_variance"]["estimate"]
                if abs(a - b) > 1e-9:
                    raise SystemExit(f"reward {name}{dtype}: variance {a} vs {b}; the variants did different work")
    print("same metrics in every run of one at a time and all at once (for each dtype)")
    memory = {label: _timing.Measure(f"{label} [peak RSS]", [mib / 1024 for mib in peaks[label]]) for label in peaks}
    for measure in memory.values():
        runs_text = ", ".join(f"{v * 1024:.0f}" for v in measure.runs)
        print(f"  {measure.label:50s} median {measure.median * 1024:6.0f} MiB  spread {measure.spread:6.1%}  "
              f"(runs, MiB: {runs_text})")  # fmt: skip
    for dtype in ("", ", --dtype bfloat16"):
        one, every = memory[f"one at a time{dtype}"], memory[f"all at once{dtype}"]
        print(f"  all at once - one at a time{dtype}: {(every.median - one.median) * 1024:+.0f} MiB")
        _timing.print_ratio(f"peak RSS, all at once / one at a time{dtype}", every, one, max_spread=args.max_spread)
    walls = {f"{name} [process wall]": r["wall"] for name, r in results.items()}
    _timing.print_measures(walls)


def dtype_throughput(task: Any, path: Path, args: argparse.Namespace) -> None:
    import torch

    from rmteacher.loading import load_policy
    from rmteacher.rewards import load_reward
    from rmteacher.sampling import sample_completions
    from rmteacher.tables import load_prompts

    prompts = load_prompts(task.eval_prompts)["prompt"].tolist()[: args.prompts]
    policy, tokenizer = load_policy(str(task.policy_dir), device="cpu")
    samples = sample_completions(
        policy, tokenizer, prompts, samples_per_prompt=args.samples, max_new_tokens=16, progress=False
    )
    rows, texts = [prompts[s.prompt_index] for s in samples], [s.text for s in samples]
    rewards = {dtype: load_reward(f"rm={path}", device="cpu", dtype=dtype) for dtype in ("float32", "bfloat16")}
    for dtype, reward in rewards.items():
        assert next(reward.model.parameters()).dtype == getattr(torch, dtype)  # type: ignore[attr-defined]
    print(f"\n## 2. scoring throughput, bfloat16 vs float32: {len(rows)} samples, one reward model, CPU")
    scores = {dtype: reward.score(rows, texts) for dtype, reward in rewards.items()}  # also fills the token cache
    gap = float(np.max(np.abs(scores["bfloat16"] - scores["float32"])))
    print(f"  max |bfloat16 - float32| score: {gap:.3g} (float32 scores' std {float(np.std(scores['float32'])):.3g})")

    def scorer(reward: Any) -> Any:
        def run() -> None:
            reward.score(rows, texts)

        return run

    results = _timing.alternate(
        {dtype: scorer(reward) for dtype, reward in rewards.items()},
        repeats=args.repeats,
        warmup=max(args.warmup, 1),
    )
    walls = {dtype: r["wall"] for dtype, r in results.items()}
    _timing.print_measures({f"--dtype {dtype}": m for dtype, m in walls.items()})
    for dtype, measure in walls.items():
        print(f"  --dtype {dtype:36s} {len(rows) / measure.median:8.0f} samples/s")
    _timing.print_ratio("bfloat16 time / float32 time", walls["bfloat16"], walls["float32"],
                        max_spread=args.max_spread)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--reward-models", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--max-spread", type=float, default=_timing.MAX_SPREAD)
    parser.add_argument("--only", choices=("memory", "dtype"), help="run one of the two parts")
    parser.add_argument("--quick", action="store_true", help="8 prompts, small models: a smoke check")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.hidden, args.layers, args.vocab = 8, 128, 2, 8192
    threads = _timing.pin_torch_threads(args.threads)
    settings = (
        f"{args.prompts} prompts x {args.samples} samples, {args.reward_models} reward models (hidden {args.hidden}, "
        f"{args.layers} layers, vocabulary {args.vocab}), {args.repeats} runs"
    )
    _timing.header("bench_memory: reward models one at a time vs all at once; bfloat16 vs float32", threads=threads,
                   settings=settings)  # fmt: skip
    from rmteacher import sandbox
    from rmteacher.loading import load_tokenizer

    start = time.perf_counter()
    task = sandbox.build(progress=False)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch:
        work = Path(scratch)
        tokenizer = load_tokenizer(str(task.policy_dir), kind="policy")
        paths = save_reward_models(work, tokenizer, args)
        if args.only in (None, "memory"):
            peak_memory(task, paths, work, args)
        if args.only in (None, "dtype"):
            dtype_throughput(task, paths[0], args)
    print(f"\nbenchmark wall time: {time.perf_counter() - start:.0f} s; this process's peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")  # fmt: skip
    _timing.footer()


if __name__ == "__main__":
    main()
