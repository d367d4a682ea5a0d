"""The paper's question asked of a real model: does the teacher ranking of `rmteacher evaluate` predict which reward
makes SmolLM2-135M-Instruct better at a verifiable task when it is trained with RL?

Run from the repository root (the full size: about 40 minutes on 2 idle CPU cores; resumable: run it again after an
interruption and the finished stages are skipped):

    python examples/real_model_study.py --policy PATH/SmolLM2-135M-Instruct.Q4_1.gguf --out runs/real_model_study

Smoke test (a few minutes; every stage at toy size, its findings meaningless):

    python examples/real_model_study.py --policy PATH --out runs/real_model_study_quick --quick

``--policy`` is anything ``rmteacher --policy`` loads (a .gguf file, a safetensors directory, a hub id).

The task (:mod:`rmteacher.tasks.constraints`): one sentence about a topic under two or three instruction
constraints (lowercase, a keyword, a word limit, no commas); the ground truth is the share of constraints met.
The candidate teachers: the exact-match ``verifier``, a lenient ``partial_credit``, the hackable ``brevity``, the
paper's perfectly accurate low-variance reward ``ground_truth_scaled`` (the ground truth normalized, then x0.001 on a
seeded half of the prompts) and ``gt_reward`` (the ground truth itself as the training reward).

Stages, each a call of the rmteacher CLI in a fresh process, in ``--out``:

1. ``data/``: training prompts, held-out evaluation prompts and off-policy pairs, generated from ``--data-seed``;
2. ``evaluate/``: ``rmteacher evaluate`` of every candidate on the initial policy's samples of the training
   prompts: Table 1 (reward variance, on- and off-policy accuracy) and the teacher ranking;
3. ``rl/TEACHER/seedS/``: ``rmteacher rl --algo rloo`` with each teacher as the training reward, for each seed,
   logging the ground truth's increase on the held-out prompts (in units of the initial policy's ground-truth std)
   and the KL to the initial policy; a run is finished when its ``result.json`` exists (an unfinished one is started
   over); its final ``policy/`` and TRL's last ``checkpoint-*`` are deleted unless ``--keep-policies`` (2.1 GB a run);
4. ``report.md`` and ``results.json``: the tables and the findings, each the output of a test of
   :mod:`rmteacher.significance` over the seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

TASK = "rmteacher.tasks.constraints"
#: Teacher name -> (the reward function of TASK it trains on, its name in evaluate/, the share of prompts scaled).
#: The low-variance teacher trains on ``gt_reward`` scaled, so that RL normalizes every reward by the statistics
#: ``rmteacher evaluate`` fitted on the initial policy's samples (``--normalization``), as the ranking did.
TEACHERS: dict[str, tuple[str, str, float]] = {
    "verifier": ("verifier", "verifier", 0.0),
    "partial_credit": ("partial_credit", "partial_credit", 0.0),
    "brevity": ("brevity", "brevity", 0.0),
    "ground_truth_scaled": ("ground_truth", "gt_reward", 0.5),
    "gt_reward": ("ground_truth", "gt_reward", 0.0),
}
SCALE_FACTOR = 0.001  # the paper's low-variance construction (Section 4.1)


@dataclass(frozen=True)
class Size:
    """How big every stage is. ``full`` fits about 40 minutes on 2 idle cores (see docs/guides/real-model-study.md)."""

    num_train: int  # training prompts generated (RL draws from them; evaluate uses the first eval_num_prompts)
    num_heldout: int  # held-out prompts for RL's evaluations
    eval_num_prompts: int  # evaluate: prompts
    eval_samples: int  # evaluate: samples per prompt
    max_new_tokens: int  # evaluate and RL
    rl_prompts_per_step: int
    rl_samples_per_prompt: int
    rl_max_steps: int
    rl_eval_prompts: int  # held-out prompts sampled at RL steps 0 and max_steps
    rl_eval_samples: int
    seeds: int
    teachers: tuple[str, ...]


SIZES = {
    "full": Size(
        num_train=128, num_heldout=32, eval_num_prompts=64, eval_samples=8, max_new_tokens=24,
        rl_prompts_per_step=2, rl_samples_per_prompt=4, rl_max_steps=8, rl_eval_prompts=32, rl_eval_samples=2,
        seeds=3, teachers=tuple(TEACHERS),
    ),
    "quick": Size(
        num_train=8, num_heldout=4, eval_num_prompts=4, eval_samples=2, max_new_tokens=8,
        rl_prompts_per_step=1, rl_samples_per_prompt=2, rl_max_steps=1, rl_eval_prompts=2, rl_eval_samples=2,
        seeds=2, teachers=("verifier", "partial_credit", "brevity"),
    ),
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--policy", required=True, help="the policy: a .gguf file, a model directory or a hub id")
    parser.add_argument("--out", type=Path, required=True, help="study directory (reused: finished stages skipped)")
    parser.add_argument("--quick", action="store_true", help="toy sizes for a smoke test (findings meaningless)")
    parser.add_argument("--seeds", type=int, help="RL seeds per teacher (default: the size's, 3 in full)")
    parser.add_argument("--max-steps", type=int, help="RL steps per run (default: the size's, 8 in full)")
    parser.add_argument("--learning-rate", type=float, default=1e-5, help="RL learning rate (default: 1e-5)")
    parser.add_argument("--kl-coef", type=float, default=0.05, help="RL KL coefficient (default: 0.05, the paper's)")
    parser.add_argument("--cpu-threads", type=int, default=2, help="torch threads of every stage (default: 2)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the generated prompts and pairs")
    parser.add_argument("--keep-policies", action="store_true", help="keep each RL run's policy/ and last checkpoint")
    args = parser.parse_args(argv)
    for name in ("seeds", "max_steps"):
        value = getattr(args, name)
        if value is not None and value < (2 if name == "seeds" else 1):
            parser.error(f"--{name.replace('_', '-')} {value}: must be at least {2 if name == 'seeds' else 1}")
    if not 0 < args.learning_rate < 1:
        parser.error(f"--learning-rate {args.learning_rate}: must be in (0, 1)")
    if args.cpu_threads < 1:
        parser.error(f"--cpu-threads {args.cpu_threads}: must be at least 1")
    return args


def size_of(args: argparse.Namespace) -> Size:
    size = SIZES["quick" if args.quick else "full"]
    changes = {k: v for k, v in (("seeds", args.seeds), ("rl_max_steps", args.max_steps)) if v is not None}
    return Size(**{**asdict(size), **changes})


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_cli(arguments: list[str], *, log_file: Path) -> float:
    """``rmteacher ARGUMENTS`` in a fresh process (its output to ``log_file``); returns the wall seconds."""
    command = [sys.executable, "-m", "rmteacher.cli", *arguments]
    start = time.perf_counter()
    with log_file.open("w") as stream:
        completed = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, check=False)
    if completed.returncode != 0:
        tail = log_file.read_text()[-3000:]
        raise SystemExit(f"rmteacher {arguments[0]} failed (exit {completed.returncode}); its log {log_file}:\n{tail}")
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ stages


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)


def make_data(out: Path, size: Size, seed: int) -> dict[str, Path]:
    """Training and held-out prompts and the off-policy pairs; regenerated identically from the seed every time."""
    from rmteacher.tasks.constraints import make_pairs, split_prompts

    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    train, heldout = split_prompts(size.num_train, size.num_heldout, seed=seed)
    paths = {"train": data / "train.jsonl", "heldout": data / "heldout.jsonl", "pairs": data / "pairs.jsonl"}
    write_jsonl(paths["train"], train)
    write_jsonl(paths["heldout"], heldout)
    write_jsonl(paths["pairs"], make_pairs(train, seed=seed + 1))
    return paths


def evaluate(args: argparse.Namespace, size: Size, data: dict[str, Path]) -> dict[str, Any]:
    """Table 1 and the teacher ranking of every candidate under the initial policy (stage 2)."""
    run = args.out / "evaluate"
    if not (run / "metrics.json").exists():
        rewards = [f"{name}={TASK}:{function}" for name, (function, _, fraction) in TEACHERS.items() if not fraction]
        arguments = [
            "evaluate", "--out", str(run), "--policy", args.policy, "--prompts", str(data["train"]),
            "--pairs", str(data["pairs"]), "--ground-truth", f"ground_truth={TASK}:ground_truth",
            *[a for r in rewards for a in ("--reward-model", r)],
            "--num-prompts", str(size.eval_num_prompts), "--samples-per-prompt", str(size.eval_samples),
            "--max-new-tokens", str(size.max_new_tokens), "--seed", str(args.data_seed),
            "--cpu-threads", str(args.cpu_threads), "--no-progress", "--resume",
            "--scale-reward", "ground_truth", "--scale-factor", str(SCALE_FACTOR),
        ]  # fmt: skip
        log(f"evaluate: {size.eval_num_prompts} prompts x {size.eval_samples} samples x {size.max_new_tokens} tokens")
        seconds = run_cli(arguments, log_file=args.out / "evaluate.log")
        log(f"evaluate: done in {seconds:.0f} s")
    metrics: dict[str, Any] = json.loads((run / "metrics.json").read_text())
    return metrics


def rl_run(args: argparse.Namespace, size: Size, data: dict[str, Path], teacher: str, seed: int) -> dict[str, Any]:
    """One RL run (stage 3); its ``result.json`` holds the initial and final evaluations and the wall time."""
    run = args.out / "rl" / teacher / f"seed{seed}"
    result_path = run / "result.json"
    if result_path.exists():
        result: dict[str, Any] = json.loads(result_path.read_text())
        return result
    function, name, fraction = TEACHERS[teacher]
    arguments = [
        "rl", "--out", str(run), "--overwrite", "--algo", "rloo", "--policy", args.policy,
        "--reward-model", f"{name}={TASK}:{function}", "--ground-truth", f"ground_truth={TASK}:ground_truth",
        "--prompts", str(data["train"]), "--eval-prompts", str(data["heldout"]),
        "--normalization", str(args.out / "evaluate"),
        "--prompts-per-step", str(size.rl_prompts_per_step), "--samples-per-prompt", str(size.rl_samples_per_prompt),
        "--max-new-tokens", str(size.max_new_tokens), "--max-steps", str(size.rl_max_steps),
        "--eval-every", str(size.rl_max_steps), "--save-every", str(size.rl_max_steps + 1),
        "--eval-num-prompts", str(size.rl_eval_prompts), "--eval-samples", str(size.rl_eval_samples),
        "--learning-rate", str(args.learning_rate), "--kl-coef", str(args.kl_coef), "--seed", str(seed),
        "--cpu-threads", str(args.cpu_threads), "--no-progress",
    ]  # fmt: skip
    if fraction > 0:
        arguments += ["--scale-fraction", str(fraction), "--scale-factor", str(SCALE_FACTOR)]
    run.parent.mkdir(parents=True, exist_ok=True)
    seconds = run_cli(arguments, log_file=run.parent / f"seed{seed}.log")
    evals = [r for r in read_jsonl(run / "metrics.jsonl") if r.get("event") in ("initial", "eval")]
    result = {"teacher": teacher, "seed": seed, "seconds": seconds, "initial": evals[0], "final": evals[-1]}
    if not args.keep_policies:  # the final policy (0.5 GB) and TRL's last checkpoint with its optimizer (1.6 GB)
        for path in [run / "policy", *run.glob("checkpoint-*")]:
            shutil.rmtree(path, ignore_errors=True)
    result_path.write_text(json.dumps(result, indent=2))
    return result


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ analysis


def table1(metrics: dict[str, Any], teachers: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per teacher (Table 1 under the initial policy) with the ranking's score, plus the ground truth."""
    entries, ranking = metrics["reward_models"], metrics["ranking"]
    rows = []
    for name in [*teachers, "ground_truth"]:
        entry = entries[name]
        rows.append(
            {
                "teacher": name,
                "rank": ranking["order"].index(name) + 1 if name in ranking["order"] else None,
                "score": ranking["score"][name]["estimate"] if name in ranking["score"] else None,
                "reward_variance": entry["reward_variance"]["estimate"],
                "reward_variance_ci": [entry["reward_variance"]["low"], entry["reward_variance"]["high"]],
                "on_policy_accuracy": entry.get("on_policy_accuracy", {}).get("estimate"),
                "off_policy_accuracy": entry.get("off_policy_accuracy", {}).get("estimate"),
                "zero_variance_prompts": entry["zero_variance_prompts"],
            }
        )
    return rows


def analyse(metrics: dict[str, Any], results: list[dict[str, Any]], size: Size) -> dict[str, Any]:
    """The tables and every finding, each the output of a test of :mod:`rmteacher.significance` over seeds."""
    from rmteacher.significance import (
        correlation_with_uncertainty,
        finding_accuracy_not_better,
        finding_low_variance_vs_ground_truth,
        finding_variance_predicts_increase,
        increase_interval,
        verdict,
    )

    teachers = size.teachers
    seeds = sorted({r["seed"] for r in results})
    by = {(r["teacher"], r["seed"]): r for r in results}

    def per_seed(key: str) -> np.ndarray:  # [teachers, seeds]
        return np.array([[by[(t, s)]["final"][key] - by[(t, s)]["initial"][key] for s in seeds] for t in teachers])

    gt_increase, proxy_increase = per_seed("ground_truth_increase"), per_seed("proxy_increase")
    kl = np.array([[by[(t, s)]["final"]["kl"] for s in seeds] for t in teachers])
    rows = table1(metrics, teachers)
    score = np.array([r["score"] for r in rows[:-1]], dtype=float)
    variance = np.array([r["reward_variance"] for r in rows[:-1]], dtype=float)
    accuracy = np.array([r["on_policy_accuracy"] for r in rows[:-1]], dtype=float)
    rl_rows = []
    for i, teacher in enumerate(teachers):
        gt, proxy = increase_interval(gt_increase[i]), increase_interval(proxy_increase[i])
        rl_rows.append(
            {
                "teacher": teacher,
                "ground_truth_increase": gt_increase[i].tolist(),
                "ground_truth_increase_mean": gt.mean,
                "ground_truth_increase_ci": [gt.low, gt.high],
                "proxy_increase_mean": proxy.mean,
                "kl_mean": float(kl[i].mean()),
                "seconds_mean": float(np.mean([by[(teacher, s)]["seconds"] for s in seeds])),
            }
        )
    findings: list[dict[str, Any]] = []
    ranking_test = correlation_with_uncertainty(score, gt_increase, method="spearman")
    result = verdict(ranking_test.p_positive, ranking_test.p_negative)
    criterion = metrics["ranking"]["criterion"]
    findings.append(
        {
            "claim": f"the teacher ranking ({criterion}) predicts the ground-truth increase",
            "verdict": result,
            "sentence": (
                f"The teacher ranking's score ({criterion}) predicts the ground-truth increase over the "
                f"{len(teachers)} teachers: Spearman {ranking_test.estimate:.2f} ({ranking_test.interval_text()}, "
                f"two-level bootstrap over teachers and {len(seeds)} seeds), one-sided "
                f"{ranking_test.permutation_text()} "
                + (f"p = {ranking_test.p_positive:.3g}" if np.isfinite(ranking_test.p_positive) else "p undefined")
                + f": {result}."
            ),
            "test": ranking_test.to_dict(),
        }
    )
    for increase, label in ((gt_increase, "ground-truth increase"), (proxy_increase, "proxy increase")):
        finding = finding_variance_predicts_increase(variance, increase, increase_name=label)
        findings.append({"claim": finding.claim, "verdict": finding.verdict, "sentence": finding.sentence,
                         "test": finding.details})  # fmt: skip
    if np.isfinite(accuracy).all():
        finding = finding_accuracy_not_better(variance, accuracy, gt_increase, increase_name="ground-truth increase")
        findings.append({"claim": finding.claim, "verdict": finding.verdict, "sentence": finding.sentence,
                         "test": finding.details})  # fmt: skip
    if {"ground_truth_scaled", "gt_reward"} <= set(teachers):
        finding = finding_low_variance_vs_ground_truth(
            gt_increase[teachers.index("ground_truth_scaled")], gt_increase[teachers.index("gt_reward")]
        )
        findings.append({"claim": finding.claim, "verdict": finding.verdict, "sentence": finding.sentence,
                         "test": finding.details})  # fmt: skip
    return {"table1": rows, "rl": rl_rows, "findings": findings, "seeds": seeds, "ranking": metrics["ranking"]}


def _number(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def report(analysis: dict[str, Any], args: argparse.Namespace, size: Size, extra: dict[str, Any]) -> str:
    lines = [
        "# The paper's question on a real model: one sentence under instruction constraints",
        "",
        f"Policy `{args.policy}`; size {'quick (smoke test: findings meaningless)' if args.quick else 'full'}; "
        f"RL: RLOO, {size.rl_max_steps} steps of {size.rl_prompts_per_step} prompts x {size.rl_samples_per_prompt} "
        f"samples x {size.max_new_tokens} tokens, learning rate {args.learning_rate:g}, KL coefficient "
        f"{args.kl_coef:g}, seeds {analysis['seeds']}; held-out evaluation on {size.rl_eval_prompts} prompts x "
        f"{size.rl_eval_samples} samples. Evaluate: {size.eval_num_prompts} training prompts x {size.eval_samples} "
        f"samples. Finished on the end token in evaluate: {_number(extra.get('finished_share'), 2)}; wall time of "
        f"the RL runs: {extra['rl_seconds']:.0f} s.",
        "",
        "## Table 1 under the initial policy, and the teacher ranking",
        "",
        "| teacher | rank (of all 5) | ranking score | reward variance (95% CI) | on-policy acc. | off-policy acc. | "
        "prompts with zero variance |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in analysis["table1"]:
        low, high = r["reward_variance_ci"]
        lines.append(
            f"| {r['teacher']} | {r['rank'] or '-'} | {_number(r['score'])} | {_number(r['reward_variance'])} "
            f"({_number(low)}-{_number(high)}) | {_number(r['on_policy_accuracy'])} | "
            f"{_number(r['off_policy_accuracy'])} | {_number(r['zero_variance_prompts'], 2)} |"
        )
    lines += [
        "",
        f"The ranking's criterion: `{analysis['ranking']['criterion']}`; order: "
        f"{', '.join(analysis['ranking']['order'])}.",
        "",
        "## RL with each teacher: increase of the ground truth on held-out prompts (initial std units)",
        "",
        "| teacher | ground-truth increase per seed | mean (95% CI over seeds) | proxy increase (mean) | KL (mean) | "
        "s per run |",
        "|---|---|---|---|---|---|",
    ]
    for r in analysis["rl"]:
        low, high = r["ground_truth_increase_ci"]
        seeds = ", ".join(f"{v:+.3f}" for v in r["ground_truth_increase"])
        lines.append(
            f"| {r['teacher']} | {seeds} | {r['ground_truth_increase_mean']:+.3f} ({_number(low)} to "
            f"{_number(high)}) | {r['proxy_increase_mean']:+.3f} | {r['kl_mean']:.3f} | {r['seconds_mean']:.0f} |"
        )
    lines += ["", "## Findings (tests of rmteacher.significance over seeds)", ""]
    lines += [f"- **{f['verdict']}**: {f['sentence']}" for f in analysis["findings"]]
    return "\n".join(lines) + "\n"


def study_identity(args: argparse.Namespace, size: Size) -> dict[str, Any]:
    """What the finished stages depend on: all but ``--seeds`` (more seeds add runs), threads, ``--keep-policies``."""
    ignored = ("out", "seeds", "keep_policies", "quick", "cpu_threads")
    options = {k: v for k, v in vars(args).items() if k not in ignored}
    return {"options": options, "size": {k: v for k, v in asdict(size).items() if k != "seeds"}}


def check_same_study(path: Path, identity: dict[str, Any]) -> None:
    """Writes ``study.json``, or stops (exit 2) when ``--out`` holds a study made with other settings, whose finished
    runs would otherwise be mixed silently with this one's."""
    identity = json.loads(json.dumps(identity, default=list))  # tuples as lists, as they read back
    if path.exists():
        before = json.loads(path.read_text())
        if before != identity:
            changed = sorted(
                f"{part}.{key}"
                for part in ("options", "size")
                for key in {*before.get(part, {}), *identity[part]}
                if before.get(part, {}).get(key) != identity[part].get(key)
            )
            print(f"error: --out {path.parent} holds a study with other settings ({', '.join(changed)}); "
                  "give a new --out or the same settings", file=sys.stderr)  # fmt: skip
            raise SystemExit(2)
    path.write_text(json.dumps(identity, indent=2))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    size = size_of(args)
    args.out.mkdir(parents=True, exist_ok=True)
    check_same_study(args.out / "study.json", study_identity(args, size))
    data = make_data(args.out, size, args.data_seed)
    metrics = evaluate(args, size, data)
    results = []
    total = len(size.teachers) * size.seeds
    for seed in range(size.seeds):  # seeds outermost: a partial study has every teacher at the first seeds
        for teacher in size.teachers:
            done = (args.out / "rl" / teacher / f"seed{seed}" / "result.json").exists()
            log(f"rl {len(results) + 1}/{total}: {teacher} seed {seed}" + (" (finished before)" if done else ""))
            result = rl_run(args, size, data, teacher, seed)
            if not done:
                final = result["final"]
                log(f"  {result['seconds']:.0f} s; ground-truth increase {final['ground_truth_increase']:+.3f}, "
                    f"KL {final['kl']:.3f}")  # fmt: skip
            results.append(result)
    analysis = analyse(metrics, results, size)
    extra = {"finished_share": metrics.get("finished_share"),
             "rl_seconds": sum(r["seconds"] for r in results)}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps({**analysis, **extra}, indent=2, default=float))
    (args.out / "report.md").write_text(report(analysis, args, size, extra))
    log(f"report: {args.out / 'report.md'}")
    for finding in analysis["findings"]:
        print(f"- {finding['sentence']}")


if __name__ == "__main__":
    main()
