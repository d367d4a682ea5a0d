"""`rmteacher rl` against a bare TRL RLOOTrainer with the same config, timed end to end with the same logging.

Run from the repository root (``--quick``: 8 steps, for a smoke check):

    .venv/bin/python benchmarks/bench_rl.py [--steps 40] [--threads 1] [--repeats 3] [--warmup 1] [--quick]

Both train the sandbox policy with RLOO (the paper's algorithm) for ``--steps`` steps on the sandbox's training
prompts, 8 prompts x 4 completions x at most 16 new tokens, learning rate 5e-5, KL 0.05, one torch thread, and the
same TRL arguments: ``logging_steps=1``, ``report_to=["tensorboard"]``, a checkpoint every 20 steps (the arguments
are compared key by key with what `rmteacher rl` passes before anything is timed).

- bare: ``RLOOTrainer`` with the sandbox's ground truth as its one plain reward function.
- rmteacher: :func:`rmteacher.training.rl.train_rl` with the sandbox inputs `rmteacher rl` uses by default (the
  ground truth as the training reward, normalized by the initial policy's statistics, and again with weight 0 as
  the logged ground truth), the within-prompt variance logging, ``metrics.jsonl`` and the policy evaluations at
  step 0 (before training) and at the last step (``--eval-every`` past the end, so no others).

Each run is its own process. Measured: the process (start-up, imports, loading, for rmteacher the step-0
evaluation and saving the final policy), ``trainer.train()`` from ``on_train_begin`` to ``on_train_end``
(steps, logging, TensorBoard, checkpoints; for rmteacher the last step's evaluation), the median step, and the
last step's excess over the median step (rmteacher's final evaluation). Variants alternate through
``benchmarks/_timing.py``; ratios only when both spreads are under ``--max-spread``. The goal of issue 13: the
training loop's overhead at most 10%.
"""

from __future__ import annotations

import _timing

# isort: split
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

SETTINGS = {"prompts_per_step": 8, "samples_per_prompt": 4, "max_new_tokens": 16, "learning_rate": 5e-5,
            "kl_coef": 0.05, "save_every": 20}  # fmt: skip


def train_timer() -> Any:
    """A callback recording the training loop's and each step's wall time; add it last, so it sees the others."""
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[float] = []
            self.train = 0.0
            self._train_start = self._step_start = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._train_start = time.perf_counter()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._step_start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.steps.append(time.perf_counter() - self._step_start)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.train = time.perf_counter() - self._train_start

    return Timer()


def ours_config(steps: int, out: Path, threads: int) -> Any:
    """`rmteacher rl`'s config with the sandbox inputs its command line fills in when none is given."""
    from rmteacher import sandbox
    from rmteacher.training.rl import RLConfig

    task = sandbox.build(progress=False)
    return RLConfig(
        out=out, algo="rloo", max_steps=steps, eval_every=10 * steps, cpu_threads=threads, progress=False,
        policy=str(task.policy_dir), reward_model=f"perfect={sandbox.GROUND_TRUTH}",
        ground_truth=sandbox.GROUND_TRUTH, prompts=task.train_prompts, eval_prompts=task.eval_prompts, **SETTINGS,
    )  # fmt: skip


def bare_arguments(steps: int, out: Path) -> Any:
    """TRL's RLOOConfig written out as a TRL user would, with every setting `rmteacher rl` makes explicit."""
    from trl import RLOOConfig

    return RLOOConfig(
        output_dir=str(out), max_steps=steps, seed=0, data_seed=0, logging_steps=1, report_to=["tensorboard"],
        save_strategy="steps", save_steps=SETTINGS["save_every"],
        per_device_train_batch_size=SETTINGS["prompts_per_step"] * SETTINGS["samples_per_prompt"],
        gradient_accumulation_steps=1, num_generations=SETTINGS["samples_per_prompt"],
        max_completion_length=SETTINGS["max_new_tokens"], temperature=1.0, top_p=1.0,
        learning_rate=SETTINGS["learning_rate"], lr_scheduler_type="constant", beta=SETTINGS["kl_coef"],
        bf16=False, activation_checkpointing=False, use_cpu=True, disable_tqdm=True, use_vllm=False,
    )  # fmt: skip


def check_same_arguments(steps: int) -> None:
    """Fails unless the bare arguments equal rmteacher's but for the output directory and reward weights."""
    from rmteacher.training.rl import trl_arguments

    with tempfile.TemporaryDirectory() as directory:
        ours = trl_arguments(ours_config(steps, Path(directory), 1), num_rewards=1).to_dict()
        bare = bare_arguments(steps, Path(directory)).to_dict()
    keys = (set(ours) | set(bare)) - {"reward_weights"}  # rmteacher's [1, 0]: its second reward is logged only
    differ = {k: (bare.get(k), ours.get(k)) for k in keys if bare.get(k) != ours.get(k)}
    if differ:
        raise SystemExit(f"the bare TRL arguments differ from rmteacher's (bare, ours): {differ}")


def run_bare(steps: int, out: Path, threads: int) -> Any:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import RLOOTrainer

    from rmteacher import sandbox
    from rmteacher.tables import load_prompts

    task = sandbox.build(progress=False)
    policy = AutoModelForCausalLM.from_pretrained(task.policy_dir)
    tokenizer = AutoTokenizer.from_pretrained(task.policy_dir)
    prompts = load_prompts(task.train_prompts, "prompt")["prompt"]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts])
    timer = train_timer()
    trainer = RLOOTrainer(model=policy, reward_funcs=[sandbox.ground_truth], args=bare_arguments(steps, out),
                          train_dataset=dataset, processing_class=tokenizer, callbacks=[timer])  # fmt: skip
    trainer.train()
    return timer


def run_ours(steps: int, out: Path, threads: int) -> Any:
    from rmteacher.training.rl import train_rl

    timer = train_timer()
    train_rl(ours_config(steps, out, threads), callbacks=[timer])
    return timer


def child(variant: str, steps: int, threads: int) -> None:
    """One run in this process; prints its timings as one JSON line."""
    _timing.pin_torch_threads(threads)
    with tempfile.TemporaryDirectory() as directory:
        timer = (run_bare if variant == "bare" else run_ours)(steps, Path(directory) / variant, threads)
        if not any((Path(directory) / variant / "runs").rglob("events.out.tfevents*")):
            raise SystemExit(f"{variant}: no TensorBoard events written")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"steps": timer.steps, "train": timer.train, "peak_rss_mb": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in both (rl's --cpu-threads)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (>= 3), alternating")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--max-spread", type=float, default=_timing.MAX_SPREAD, help="withhold ratios above this")
    parser.add_argument("--quick", action="store_true", help="8 steps, no warm-up")
    parser.add_argument("--child", choices=["bare", "ours"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup = 8, 0
    if args.child:
        child(args.child, args.steps, args.threads)
        return
    if args.steps < 6:
        parser.error(f"--steps must be >= 6 (a median step past the first ones); got {args.steps}")
    from rmteacher import sandbox

    sandbox.build(progress=False)  # build (or find) the cache before timing anything
    check_same_arguments(args.steps)
    peaks: dict[str, list[float]] = {"bare": [], "ours": []}

    def variant(name: str) -> Any:
        def run() -> dict[str, float]:
            command = [sys.executable, __file__, "--child", name, "--steps", str(args.steps),
                       "--threads", str(args.threads)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, env=_timing.child_env(args.threads))
            if done.returncode != 0:
                raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
            record = json.loads(done.stdout.strip().splitlines()[-1])
            peaks[name].append(record["peak_rss_mb"])
            steps = record["steps"]
            middle = statistics.median(steps[2:-1])  # past the first steps' warm-up, before the last
            return {"train": record["train"], "step": middle, "last step excess": steps[-1] - middle}

        return run

    shape = (f"RLOO, sandbox policy, {SETTINGS['prompts_per_step']} prompts x {SETTINGS['samples_per_prompt']} "
             f"completions x {SETTINGS['max_new_tokens']} tokens, {args.steps} steps")  # fmt: skip
    _timing.header("bench_rl: rmteacher rl vs bare TRL RLOOTrainer", threads=args.threads, settings=shape)
    results = _timing.alternate({"bare": variant("bare"), "ours": variant("ours")}, repeats=args.repeats,
                                warmup=args.warmup)  # fmt: skip
    bare, ours = results["bare"], results["ours"]
    labels = {"wall": "process", "train": "trainer.train()", "step": "median step",
              "last step excess": "final evaluation"}  # fmt: skip
    for quantity, label in labels.items():
        measures = {f"{label}, bare RLOOTrainer": bare[quantity], f"{label}, rmteacher rl": ours[quantity]}
        if quantity == "last step excess":
            measures = {"final evaluation, rmteacher rl (last - median step)": ours[quantity]}
        _timing.print_measures(measures)
    print(f"  peak RSS: bare {max(peaks['bare']):.0f} MB, rmteacher rl {max(peaks['ours']):.0f} MB")
    for quantity in ("train", "step", "wall"):
        _timing.print_ratio(
            f"overhead of rmteacher rl, {labels[quantity]}", ours[quantity], bare[quantity],
            max_spread=args.max_spread, form="overhead",
        )  # fmt: skip
    without_eval = _timing.Measure(
        "rmteacher rl train() less its final evaluation",
        [t - e for t, e in zip(ours["train"].runs, ours["last step excess"].runs, strict=True)],
    )
    _timing.print_ratio(
        "overhead of rmteacher rl, trainer.train() less the final evaluation", without_eval, bare["train"],
        max_spread=args.max_spread, form="overhead",
    )  # fmt: skip
    _timing.footer()


if __name__ == "__main__":
    main()
