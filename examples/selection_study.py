"""Does variance-aware prompt selection teach faster? RL on the selected prompts against RL on all of them.

Run (the sandbox, exact-match reward, 8 seeds, about 6 minutes on one CPU thread):

    OMP_NUM_THREADS=1 PYTHONPATH=. python examples/selection_study.py --out runs/selection-study

Your own task (a policy, a training reward, a ground truth, training and held-out evaluation prompts):

    python examples/selection_study.py --out runs/smollm2-selection --policy ./policy \
        --reward-model verifier=pkg.mod:verifier --ground-truth pkg.mod:verifier \
        --prompts train.jsonl --eval-prompts heldout.jsonl --max-new-tokens 32 --seeds 0 1 2

Protocol: an `rmteacher evaluate` run samples the initial policy K times on a pool of training prompts;
`rmteacher select-prompts` keeps the pool's prompts whose training reward varies (the default rule). Per seed, two RL
runs start from the same policy with the same steps, prompts per step and samples per prompt (so the same number of
rollouts), both normalized by the evaluate run's statistics: one on the whole pool ("all"), one on the selected
prompts ("selected"). Both are evaluated on held-out prompts that no selection saw. Reported per arm: the ground-truth
and training-reward increases at the last step, per step and per wall-clock second (for "selected" also with the
selection's own time added), and one-sided Welch tests over seeds (rmteacher.significance). Writes results.json and
results.md in --out.

``--try-reselect`` tries re-selection mid-training the only way rmteacher offers without forking TRL: evaluate the
policy's checkpoint, select again, and continue the same run with ``rl --resume`` and the new prompts file. It
records what happened.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rmteacher.evaluate import EvaluateConfig, evaluate
from rmteacher.prompt_selection import SelectPromptsConfig, select_prompts
from rmteacher.rundir import read_jsonl
from rmteacher.significance import increase_interval, one_sided_less
from rmteacher.tables import load_prompts, write_json_atomic, write_text_atomic
from rmteacher.training.rl import RLConfig, train_rl

SANDBOX_REWARD = "exact=rmteacher.sandbox.rewards:exact_match"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="study directory (results.json, results.md, runs)")
    parser.add_argument("--policy", help="initial policy (default: the sandbox's)")
    parser.add_argument("--reward-model", help=f"training reward NAME=TARGET (default: {SANDBOX_REWARD})")
    parser.add_argument("--ground-truth", help="ground truth, logged (default: the sandbox's graded ground truth)")
    parser.add_argument("--prompts", type=Path, help="training prompts (default: the sandbox's)")
    parser.add_argument("--eval-prompts", type=Path, help="held-out evaluation prompts (default: the sandbox's)")
    parser.add_argument("--system-prompt", help="system message before every prompt")
    parser.add_argument("--pool", type=int, default=400, help="training prompts in the pool (a seeded subset)")
    parser.add_argument("--selection-samples", type=int, default=8, help="K samples per prompt for the selection")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)), help="RL seeds")
    parser.add_argument("--max-steps", type=int, default=40, help="RL steps per run")
    parser.add_argument("--prompts-per-step", type=int, default=8, help="prompts per RL step")
    parser.add_argument("--samples-per-prompt", type=int, default=4, help="rollouts per prompt per step")
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="RL learning rate")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="most tokens per completion")
    parser.add_argument("--eval-num-prompts", type=int, default=128, help="held-out evaluation prompts")
    parser.add_argument("--eval-samples", type=int, default=4, help="samples per held-out prompt")
    parser.add_argument("--try-reselect", action="store_true", help="try re-selection with rl --resume (see above)")
    return parser.parse_args(argv)


def task_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The task's inputs: all given, or none (the sandbox with its exact-match reward)."""
    given = [args.policy, args.reward_model, args.prompts, args.eval_prompts]
    if all(v is None for v in given):
        from rmteacher import sandbox

        task = sandbox.build(progress=False)
        return {"policy": str(task.policy_dir), "reward_model": SANDBOX_REWARD, "ground_truth": sandbox.GROUND_TRUTH,
                "prompts": task.train_prompts, "eval_prompts": task.eval_prompts}  # fmt: skip
    if any(v is None for v in given):
        sys.exit("selection_study.py: give all of --policy, --reward-model, --prompts, --eval-prompts, or none")
    return {"policy": args.policy, "reward_model": args.reward_model, "ground_truth": args.ground_truth,
            "prompts": args.prompts, "eval_prompts": args.eval_prompts}  # fmt: skip


def write_pool(prompts: Path, size: int, out: Path) -> Path:
    """A seeded subset of the training prompts, written with all their columns (the arm "all" trains on it)."""
    table = load_prompts(prompts)
    rows = np.sort(np.random.RandomState(0).permutation(len(table))[: min(size, len(table))])
    path = out / "pool.jsonl"
    table.iloc[rows].to_json(path, orient="records", lines=True, force_ascii=False)
    return path


def rl_run(inputs: dict[str, Any], args: argparse.Namespace, prompts: Path, out: Path, seed: int,
           normalization: Path, max_steps: int | None = None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    steps = max_steps or args.max_steps
    config = RLConfig(
        out=out, policy=inputs["policy"], reward_model=inputs["reward_model"], ground_truth=inputs["ground_truth"],
        prompts=prompts, eval_prompts=inputs["eval_prompts"], system_prompt=args.system_prompt,
        normalization=normalization, samples_per_prompt=args.samples_per_prompt,
        prompts_per_step=args.prompts_per_step, learning_rate=args.learning_rate, max_new_tokens=args.max_new_tokens,
        max_steps=steps, eval_every=args.max_steps, save_every=args.max_steps,
        eval_num_prompts=args.eval_num_prompts, eval_samples=args.eval_samples, seed=seed, progress=False, **extra,
    )  # fmt: skip
    start = time.perf_counter()
    result = train_rl(config)
    seconds = time.perf_counter() - start
    final, initial = result["final"], result["initial"]
    train = [r for r in read_jsonl(out / "metrics.jsonl") if r.get("event") == "train" and "reward" in r]
    zero = [r.get("reward_variance/zero_variance_prompts") for r in train]
    return {
        "seed": seed,
        "seconds": seconds,
        "steps": final["step"],
        "ground_truth_increase": final.get("ground_truth_increase", float("nan")),
        "ground_truth_raw_increase": final.get("ground_truth_raw_mean", np.nan)
        - initial.get("ground_truth_raw_mean", np.nan),
        "reward_raw_increase": final["proxy_raw_mean"] - initial["proxy_raw_mean"],
        "reward_raw_final": final["proxy_raw_mean"],
        "zero_variance_share_in_training": float(np.mean([z for z in zero if z is not None])) if zero else None,
    }


def compare(runs: dict[str, list[dict[str, Any]]], key: str, selection_seconds: float) -> dict[str, Any]:
    """Per arm: the increase, per step and per second (selected: with and without the selection's time), and tests."""
    out: dict[str, Any] = {}
    for arm, rows in runs.items():
        values = np.array([r[key] for r in rows])
        steps = np.array([r["steps"] for r in rows])
        seconds = np.array([r["seconds"] for r in rows])
        out[arm] = {
            "increase": increase_interval(values).to_dict(),
            "per_step": increase_interval(values / steps).to_dict(),
            "per_second": increase_interval(values / seconds).to_dict(),
        }
        if arm == "selected":
            out[arm]["per_second_with_selection"] = increase_interval(values / (seconds + selection_seconds)).to_dict()
    a, b = (np.array([r[key] for r in runs[arm]]) for arm in ("all", "selected"))
    test = one_sided_less(a, b)
    out["test_all_less_than_selected"] = {"test": test.test_name(), "p_value": test.p_value,
                                          "p_opposite": test.p_opposite}  # fmt: skip
    return out


def try_reselect(inputs: dict[str, Any], args: argparse.Namespace, pool: Path, first: Path, out: Path,
                 normalization: Path) -> dict[str, Any]:  # fmt: skip
    """Evaluate the run's policy on the pool, select again, and continue the run with ``--resume`` and the new
    prompts. Returns what happened (rmteacher refuses a changed identity on resume; the message is recorded)."""
    policy = str(first / "policy")
    evaluate(EvaluateConfig(out=out / "reselect-eval", policy=policy, reward_model=[inputs["reward_model"]],
                            prompts=pool, num_prompts=args.pool, samples_per_prompt=args.selection_samples,
                            max_new_tokens=args.max_new_tokens, progress=False, overwrite=True))  # fmt: skip
    name = inputs["reward_model"].partition("=")[0]
    again = out / "reselected.jsonl"
    summary = select_prompts(SelectPromptsConfig(reward=name, out=again, eval_run=out / "reselect-eval"))
    try:
        rl_run(inputs, args, again, first, args.seeds[0], normalization, max_steps=2 * args.max_steps, resume=True)
    except (ValueError, OSError) as error:
        return {"worked": False, "reselected_prompts": summary["kept"], "error": str(error)}
    return {"worked": True, "reselected_prompts": summary["kept"]}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Prompt selection study",
        "",
        f"Pool: {results['pool']} training prompts; selected: {results['selected']} (zero-variance rule, K = "
        f"{results['selection_samples']}); selection took {results['selection_seconds']:.1f} s. Seeds: "
        f"{results['seeds']}. {results['max_steps']} steps x {results['prompts_per_step']} prompts x "
        f"{results['samples_per_prompt']} rollouts per arm.",
        "",
        "| seed | arm | ground-truth increase (normalized) | training reward increase (raw) | zero-variance share "
        "in training | seconds |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for arm, rows in results["runs"].items():
        for r in rows:
            lines.append(
                f"| {r['seed']} | {arm} | {r['ground_truth_increase']:+.3f} | {r['reward_raw_increase']:+.4f} | "
                f"{r['zero_variance_share_in_training']:.2f} | {r['seconds']:.1f} |"
            )
    for key, title in (("ground_truth_increase", "Ground truth (normalized)"),
                       ("reward_raw_increase", "Training reward (raw)")):  # fmt: skip
        c = results["comparison"][key]
        lines += ["", f"## {title}", "", "| arm | increase | per step | per second | per second incl. selection |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for arm in ("all", "selected"):
            row = c[arm]
            with_selection = row.get("per_second_with_selection", row["per_second"])
            lines.append(
                f"| {arm} | {_ci(row['increase'])} | {_ci(row['per_step'], 5)} | {_ci(row['per_second'], 5)} | "
                f"{_ci(with_selection, 5)} |"
            )
        t = c["test_all_less_than_selected"]
        lines += ["", f"{t['test']}, H1 all < selected: p = {t['p_value']:.3g}; H1 all > selected: p = "
                  f"{t['p_opposite']:.3g}"]  # fmt: skip
    if "reselect" in results:
        lines += ["", "## Re-selection with rl --resume", "", "```", json.dumps(results["reselect"], indent=2), "```"]
    return "\n".join(lines) + "\n"


def _ci(interval: dict[str, Any], digits: int = 3) -> str:
    if not interval["defined"]:  # one seed: no interval
        return f"{interval['mean']:+.{digits}f}"
    return f"{interval['mean']:+.{digits}f} [{interval['low']:+.{digits}f}, {interval['high']:+.{digits}f}]"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = task_inputs(args)
    pool = write_pool(inputs["prompts"], args.pool, args.out)

    # 1. Select once, on the pool (never on the held-out prompts); its time counts against the selected arm.
    start = time.perf_counter()
    eval_run = args.out / "eval"
    evaluate(EvaluateConfig(out=eval_run, policy=inputs["policy"], reward_model=[inputs["reward_model"]],
                            ground_truth=inputs["ground_truth"], prompts=pool, num_prompts=args.pool,
                            samples_per_prompt=args.selection_samples, max_new_tokens=args.max_new_tokens,
                            system_prompt=args.system_prompt, progress=False, overwrite=True))  # fmt: skip
    name = inputs["reward_model"].partition("=")[0]
    selected = args.out / "selected.jsonl"
    summary = select_prompts(SelectPromptsConfig(reward=name, out=selected, eval_run=eval_run))
    selection_seconds = time.perf_counter() - start
    print(
        f"selected {summary['kept']} of {summary['num_prompts']} prompts in {selection_seconds:.1f} s", file=sys.stderr
    )

    # 2. RL, both arms, every seed.
    runs: dict[str, list[dict[str, Any]]] = {"all": [], "selected": []}
    for seed in args.seeds:
        for arm, prompts in (("all", pool), ("selected", selected)):
            row = rl_run(inputs, args, prompts, args.out / f"{arm}-seed{seed}", seed, eval_run, overwrite=True)
            runs[arm].append(row)
            print(f"seed {seed} {arm}: ground truth {row['ground_truth_increase']:+.3f}, training reward "
                  f"{row['reward_raw_increase']:+.4f}, {row['seconds']:.1f} s", file=sys.stderr)  # fmt: skip

    results: dict[str, Any] = {
        "pool": summary["num_prompts"], "selected": summary["kept"], "selection_samples": args.selection_samples,
        "selection_seconds": selection_seconds, "selection_summary": summary, "seeds": args.seeds,
        "max_steps": args.max_steps, "prompts_per_step": args.prompts_per_step,
        "samples_per_prompt": args.samples_per_prompt, "inputs": {k: str(v) for k, v in inputs.items()}, "runs": runs,
        "comparison": {key: compare(runs, key, selection_seconds)
                       for key in ("ground_truth_increase", "reward_raw_increase")},
    }  # fmt: skip
    if args.try_reselect:
        first = args.out / f"selected-seed{args.seeds[0]}"
        results["reselect"] = try_reselect(inputs, args, pool, first, args.out, eval_run)
    write_json_atomic(args.out / "results.json", results)
    write_text_atomic(args.out / "results.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
