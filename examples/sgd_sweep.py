"""The learning-rate sweep that chose the study's plain-SGD arm (`rmteacher study --sgd-learning-rate`).

The paper's theory (Theorem 1) is about gradient flow, where a reward's scale is the step's scale; Adam with gradient
clipping, the paper's practice, undoes most of that. The study's SGD arm trains the ground truth, its low-variance
construction and the best trained reward model with plain SGD and no clipping. Its learning rate must be one at
which plain SGD is stable on the sandbox, and the low-variance construction must not decide it: this script runs the
ground truth's own RLOO runs (the teacher with the largest gradients of the arm) at every learning rate of a grid,
several seeds each, for the steps of the study's findings, and reports per learning rate the ground-truth increase
(mean, std and minimum over seeds) and the KL to the initial policy.

The rule (:func:`choose`): the largest learning rate whose every seed raised the ground truth and whose
seed-to-seed std of the increase is at most twice that of the smallest learning rate of the grid. Past it, the
increase is noise-dominated (seeds diverge), which no test over seeds can use.

Run (after a study of build 0 on the sandbox has its ``evaluate`` stage; it reuses the study's normalization):
``python examples/sgd_sweep.py --study runs/study --out runs/sgd-sweep`` (~4 min on 2 CPU cores with 2 workers).
Writes ``<out>/sgd_sweep.md`` and ``sgd_sweep.csv``; each run is a resumable stage under ``<out>/runs``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rmteacher.report.render import read_seed_curves
from rmteacher.study.stages import Sizes, Stages, StudyConfig, rl_run, table_evaluation
from rmteacher.study.workers import StageJob, run_stages
from rmteacher.tables import TRUTH, write_text_atomic

GRID = (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3)
#: A learning rate's seed std of the ground-truth increase may be this many times the smallest learning rate's.
STD_LIMIT = 2.0


def choose(table: pd.DataFrame) -> float:
    """The largest learning rate of ``table`` (one row per learning rate: ``learning_rate``, ``min``, ``std``) whose
    every seed raised the ground truth (``min > 0``) and whose ``std`` is at most :data:`STD_LIMIT` x the smallest
    learning rate's."""
    ordered = table.sort_values("learning_rate")
    limit = STD_LIMIT * float(ordered["std"].iloc[0])
    stable = ordered[(ordered["min"] > 0) & (ordered["std"] <= limit)]
    if stable.empty:
        raise ValueError(f"no learning rate of {list(ordered['learning_rate'])} is stable; sweep smaller ones")
    return float(stable["learning_rate"].max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True, help="a sandbox study's run directory (evaluate done)")
    parser.add_argument("--out", type=Path, default=Path("runs/sgd-sweep"))
    parser.add_argument("--learning-rates", type=float, nargs="+", default=list(GRID))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    evaluate_record = args.study / "evaluate" / "stage.json"
    if not evaluate_record.exists():
        parser.error(f"--study {args.study}: no evaluate/stage.json; run `rmteacher study --out {args.study}` first")
    options = json.loads((args.study / "study.json").read_text())
    fields = set(StudyConfig.__dataclass_fields__)
    # The study's task and RL options; the RL budget is the default study's (its findings' step), whatever the
    # given study ran: the arm this sweep serves runs to that step.
    budget = ("out", "rl_steps", "rl_evals", "table_eval", "seeds")
    config = StudyConfig(**{k: v for k, v in options.items() if k in fields and k not in budget})
    sizes = Sizes.of(config)
    steps = sizes.rl_eval_every * table_evaluation(None, config.rl_evals)
    setup = json.loads((args.study / "setup" / "stage.json").read_text())["result"]
    evaluation = json.loads(evaluate_record.read_text())
    jobs = []
    for lr in args.learning_rates:
        for seed in range(args.seeds):
            inputs = {
                "evaluate": evaluation["fingerprint"],
                "lr": lr,
                "seed": seed,
                "steps": steps,
                "every": sizes.rl_eval_every,
            }
            fn = functools.partial(
                rl_run,
                config,
                sizes,
                policy=setup["policy"],
                teacher=f"{TRUTH}={setup['ground_truth']}",
                ground_truth=setup["ground_truth"],
                prompts=setup["prompts"],
                eval_prompts=setup["eval_prompts"],
                normalization=evaluation["result"]["directory"],
                seed=seed,
                steps=steps,
                optimizer="sgd",
                learning_rate=lr,
            )
            jobs.append(StageJob(f"lr{lr:g}/seed{seed}", inputs, fn))
    run_stages(Stages(args.out / "runs"), jobs, workers=args.workers, desc="SGD sweep", progress=True)
    rows: list[dict[str, Any]] = []
    for lr in args.learning_rates:
        paths = sorted((args.out / "runs" / f"lr{lr:g}").glob("seed*/metrics.jsonl"))
        _, curves = read_seed_curves(paths, ("ground_truth_increase", "kl"))
        final, kl = curves["ground_truth_increase"][:, -1], curves["kl"][:, -1]
        rows.append(
            {
                "learning_rate": lr,
                "seeds": len(paths),
                "mean": float(final.mean()),
                "std": float(final.std(ddof=1)),
                "min": float(final.min()),
                "kl_mean": float(kl.mean()),
                "kl_max": float(np.max(kl)),
            }
        )
    table = pd.DataFrame(rows)
    chosen = choose(table)
    table["chosen"] = table["learning_rate"] == chosen
    write_text_atomic(args.out / "sgd_sweep.csv", table.to_csv(index=False))
    text = (
        f"Ground truth as its own teacher, plain SGD without clipping, {steps} RLOO steps, {args.seeds} seeds, "
        f"study {args.study}: ground-truth increase at step {steps} (initial-std units) and KL to the initial "
        f"policy.\n\n{table.to_markdown(index=False, floatfmt='.4g')}\n\nChosen: {chosen:g} (the largest learning "
        f"rate with every seed's increase > 0 and std <= {STD_LIMIT:g}x the smallest learning rate's).\n"
    )
    write_text_atomic(args.out / "sgd_sweep.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
