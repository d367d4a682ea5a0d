"""Per-step overhead of `rmteacher rl` against a bare TRL GRPOTrainer, side by side in one run.

Run: ``.venv/bin/python benchmarks/bench_rl.py [--steps 40] [--repeats 2]``

Both train the sandbox policy with GRPO on the same prompts, batch (8 prompts x 4 completions), lengths (16 new
tokens), learning rate and KL coefficient. The bare trainer gets the sandbox's ground truth as a plain reward
function; `rmteacher rl` gets the same reward through its normalization, a second weight-0 ground-truth reward and
the within-prompt variance logging. Periodic evaluation is off for the timed steps (``--eval-every`` past the end),
because it is a separate, scheduled cost; it is timed on its own below.

Each variant runs in its own process (so peak RSS is its own), alternating, ``--repeats`` times. A step is timed
from ``on_step_begin`` to ``on_step_end`` (generation, rewards, forward/backward, optimizer); the figure is the
median over steps 5 .. steps-1 (the last step of `rmteacher rl` runs the final evaluation).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETTINGS = {
    "prompts_per_step": 8,
    "samples_per_prompt": 4,
    "max_new_tokens": 16,
    "learning_rate": 5e-5,
    "kl_coef": 0.05,
}


def step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.times.append(time.perf_counter() - self._start)

    return StepTimer()


def run_bare(steps: int, out: Path) -> list[float]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rmteacher import sandbox
    from rmteacher.models import load_policy
    from rmteacher.tables import load_prompts

    task = sandbox.build(progress=False)
    policy, tokenizer = load_policy(str(task.policy_dir))
    prompts = load_prompts(task.train_prompts, "prompt")
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts["prompt"]])
    args = GRPOConfig(
        output_dir=str(out), max_steps=steps, seed=0, logging_steps=1, save_strategy="no", report_to=[],
        per_device_train_batch_size=SETTINGS["prompts_per_step"] * SETTINGS["samples_per_prompt"],
        num_generations=SETTINGS["samples_per_prompt"], max_completion_length=SETTINGS["max_new_tokens"],
        learning_rate=SETTINGS["learning_rate"], beta=SETTINGS["kl_coef"], lr_scheduler_type="constant",
        bf16=False, activation_checkpointing=False, use_cpu=True, disable_tqdm=True, top_p=1.0,
    )  # fmt: skip
    timer = step_timer()
    trainer = GRPOTrainer(model=policy, reward_funcs=[sandbox.ground_truth], args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[timer])  # fmt: skip
    trainer.train()
    return list(timer.times)


def run_ours(steps: int, out: Path) -> tuple[list[float], float]:
    from rmteacher.training.rl import RLConfig, train_rl

    timer = step_timer()
    config = RLConfig(out=out, algo="grpo", max_steps=steps, eval_every=10 * steps, save_every=10 * steps,
                      progress=False, **SETTINGS)  # fmt: skip
    start = time.perf_counter()
    train_rl(config, callbacks=[timer])
    total = time.perf_counter() - start
    return list(timer.times), total


def child(variant: str, steps: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        if variant == "bare":
            times, total = run_bare(steps, Path(directory) / "bare"), float("nan")
        else:
            times, total = run_ours(steps, Path(directory) / "ours")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "peak_rss_mb": peak, "total": total}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=["bare", "ours"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps)
        return
    import torch

    from rmteacher import sandbox

    sandbox.build(progress=False)  # build (or find) the cache before timing anything
    results: dict[str, list[dict[str, Any]]] = {"bare": [], "ours": []}
    for _ in range(args.repeats):
        for variant in ("bare", "ours"):
            done = subprocess.run([sys.executable, __file__, "--child", variant, "--steps", str(args.steps)],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            results[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
    medians = {v: [statistics.median(r["times"][5 : args.steps - 1]) for r in runs] for v, runs in results.items()}
    shape = f"{SETTINGS['prompts_per_step']} prompts x {SETTINGS['samples_per_prompt']} completions"
    print(f"GRPO, sandbox policy, {shape} x {SETTINGS['max_new_tokens']} tokens, {args.steps} steps, "
          f"{args.repeats} runs each, torch threads {torch.get_num_threads()}")  # fmt: skip
    for variant, label in (("bare", "bare GRPOTrainer + plain reward"), ("ours", "rmteacher rl (grpo)")):
        runs = ", ".join(f"{m * 1000:.1f}" for m in medians[variant])
        peak = max(r["peak_rss_mb"] for r in results[variant])
        print(f"  {label:34s} median step {statistics.median(medians[variant]) * 1000:6.1f} ms (runs: {runs}); "
              f"peak RSS {peak:.0f} MB")  # fmt: skip
    overhead = statistics.median(medians["ours"]) / statistics.median(medians["bare"]) - 1
    print(f"  per-step overhead of rmteacher rl: {overhead:+.1%}")
    final_eval = [r["times"][-1] - statistics.median(r["times"][5:-1]) for r in results["ours"]]
    print(f"  one evaluation (64 prompts x 4 samples, with KL): about {statistics.median(final_eval):.2f} s")


if __name__ == "__main__":
    main()
