"""`rmteacher study`: the paper's Section 4.1 end to end, as resumable stages, ending in a report.

1. the initial policy (the sandbox's, made by SFT; or ``--policy``);
2. five reward models trained on 100/75/50/25/0% on-policy preference mixes (``rmteacher train-rm``), unless
   ``--reward-model`` gives candidates;
3. evaluation of every reward model, the perfectly accurate low-variance one (the ground truth normalized, then
   x0.001 on a seeded half of the prompts) and the ground truth under the initial policy (Table 1 analogue);
4. RLOO from the initial policy with each of them, over several seeds, evaluated along training;
5. the analysis: reward increase per model (mean over seeds), the correlation table over the proxy reward
   models, ground truth excluded (Table 2 analogue), curves (Figures 2 and 4 analogues), and the report.

Every stage writes into its own directory of the run with a ``stage.json`` recording a fingerprint of its inputs;
a stage whose fingerprint matches is skipped, one whose inputs changed is redone, and ``--resume`` finishes only
what is missing. Run: ``rmteacher study`` (sandbox, ~5 min on 2 CPU cores) or ``rmteacher study --quick``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from rmteacher.options import option
from rmteacher.tables import write_json_atomic

__all__ = [
    "FRACTIONS",
    "Sizes",
    "Stages",
    "StudyConfig",
    "discard_models",
    "record_timings",
    "rl_run",
    "run_study",
    "study",
]

#: The paper's on-policy shares of the five trained reward models.
FRACTIONS = (1.0, 0.75, 0.5, 0.25, 0.0)
LOW_VARIANCE = "ground_truth_scaled"  # the perfectly accurate, low-variance reward model's column in evaluate
TRUTH = "ground_truth"


@dataclass
class StudyConfig:
    """Options of `rmteacher study` (defaults: the sandbox task, sized for a 2-core CPU)."""

    out: Path = option(Path("runs/study"), help="run directory")
    design: Literal["reward-models", "policies"] = option(
        "reward-models",
        help="reward-models: Section 4.1 (trained on on/off-policy mixes); policies: Section 4.2 (several initial "
        "policies x reward models, Table 10; RL evaluated after each half of training on 256 prompts, --rl-evals "
        "unused)",
    )
    quick: bool = option(False, help="the same pipeline on a small budget (a smoke test, ~3 min)")
    seeds: int | None = option(None, help="RL runs per reward model (default: 3, --quick: 1; the paper: 3)")
    policy: str | None = option(None, help="initial policy directory or hub id (default: the sandbox's SFT policy)")
    ground_truth: str | None = option(None, help="ground-truth reward PATH_OR_CALLABLE (default: the sandbox's)")
    reward_model: list[str] = option(
        default_factory=list,
        help="candidate reward models NAME=PATH_OR_CALLABLE instead of training five on on/off-policy mixes",
    )
    prompts: Path | None = option(None, help="policy-gradient prompts S (default: the sandbox's train prompts)")
    eval_prompts: Path | None = option(None, help="prompts to evaluate policies along training (default: sandbox)")
    pairs: Path | None = option(None, help="off-policy preference pairs (default: the sandbox's)")
    eval_num_prompts: int | None = option(None, help="prompts x samples for Table 1 (default 200, the paper: 500)")
    eval_samples: int = option(10, help="samples per prompt for Table 1 (the paper: 10)")
    rl_steps: int | None = option(None, help="RLOO steps per run (default 60, --quick 12)")
    rl_evals: int = option(6, help="evaluations along training (the paper: one per epoch, 6 epochs)")
    table_eval: int = option(1, help="which evaluation the correlation table uses (the paper: after epoch 1 of 6)")
    max_new_tokens: int = option(16, help="most tokens per completion (the paper: 512)")
    learning_rate: float = option(5e-5, help="RLOO learning rate (the paper: 1e-7 at 1B parameters)")
    kl_coef: float = option(0.05, help="RLOO KL coefficient (the paper: 0.05)")
    trust_remote_code: bool = option(False, help="allow models' own Python code (e.g. ArmoRM as ground truth)")
    resume: bool = option(False, help="finish an interrupted study: complete stages are kept, the rest is done")
    overwrite: bool = option(False, help="delete what --out holds and start over")
    progress: bool = option(True, help="progress bars on stderr")

    def __post_init__(self) -> None:
        checks = [
            (self.seeds is None or self.seeds >= 1, f"--seeds must be >= 1; got {self.seeds}"),
            (self.rl_steps is None or self.rl_steps >= 2, f"--rl-steps must be >= 2; got {self.rl_steps}"),
            (self.rl_evals >= 1, f"--rl-evals must be >= 1; got {self.rl_evals}"),
            (
                1 <= self.table_eval <= self.rl_evals,
                f"--table-eval must be in [1, --rl-evals={self.rl_evals}]; got {self.table_eval}",
            ),
            (self.eval_samples >= 2, f"--eval-samples must be >= 2; got {self.eval_samples}"),
            (
                self.eval_num_prompts is None or self.eval_num_prompts >= 2,
                f"--eval-num-prompts must be >= 2; got {self.eval_num_prompts}",
            ),
            (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass(frozen=True)
class Sizes:
    """The budget of every stage, from --quick and the explicit options."""

    seeds: int
    eval_num_prompts: int
    eval_samples: int
    rm_max_steps: int  # -1: train-rm's default epochs
    rl_steps: int
    rl_eval_every: int
    rl_eval_prompts: int
    rl_eval_samples: int

    @classmethod
    def of(cls, config: StudyConfig) -> Sizes:
        steps = config.rl_steps or (12 if config.quick else 60)
        return cls(
            seeds=config.seeds or (1 if config.quick else 3),
            eval_num_prompts=config.eval_num_prompts or (60 if config.quick else 200),
            eval_samples=config.eval_samples,
            rm_max_steps=40 if config.quick else -1,
            rl_steps=steps,
            rl_eval_every=max(1, steps // config.rl_evals),
            rl_eval_prompts=16 if config.quick else 64,
            rl_eval_samples=4,
        )


# --------------------------------------------------------------------------------------------------- stages


def _fingerprint(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Stages:
    """Runs stages once: a stage with a ``stage.json`` of the same input fingerprint is skipped."""

    root: Path
    timings: dict[str, float]

    def run(self, name: str, inputs: dict[str, Any], fn: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        directory = self.root / name
        record_path = directory / "stage.json"
        fingerprint = _fingerprint(inputs)
        if record_path.exists():
            record = json.loads(record_path.read_text())
            if record["fingerprint"] == fingerprint:
                return dict(record["result"], fingerprint=fingerprint)
        if directory.exists():  # incomplete, or made from other inputs: redo it
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        start = time.perf_counter()
        result = fn(directory)
        seconds = time.perf_counter() - start
        self.timings[name] = seconds
        write_json_atomic(
            record_path, {"fingerprint": fingerprint, "inputs": inputs, "result": result, "seconds": round(seconds, 2)}
        )
        return dict(result, fingerprint=fingerprint)


def prepare_run_dir(config: StudyConfig) -> None:
    out = config.out
    if config.overwrite and out.exists():
        shutil.rmtree(out)
    manifest = out / "study.json"
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    transient = ("resume", "overwrite", "progress")
    if out.exists() and any(out.iterdir()):
        if not manifest.exists():
            raise ValueError(f"--out {out}: not empty and not a study; pass --overwrite or another --out")
        previous = json.loads(manifest.read_text())
        changed = sorted(k for k in options if k not in transient and previous.get(k) != options[k])
        # The same study again just skips its complete stages; other options need --resume (keep what still
        # matches, redo the rest) or --overwrite.
        if changed and not config.resume:
            raise ValueError(
                f"--out {out}: holds a study with different {', '.join(changed)}; pass --resume to keep its complete "
                "stages and redo the changed ones, or --overwrite"
            )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(manifest, options)


def study(config: StudyConfig) -> dict[str, Any]:
    """Runs every stage that is not complete, then the analysis and the report; returns the analysis."""
    if config.design == "policies":
        from rmteacher.study_policies import study_policies

        return study_policies(config)
    from rmteacher.evaluate import EvaluateConfig, evaluate
    from rmteacher.report import analyze, write_report
    from rmteacher.training.reward_model import TrainRMConfig, train_reward_model

    prepare_run_dir(config)
    sizes = Sizes.of(config)
    stages = Stages(config.out, timings={})
    started = time.perf_counter()

    # 1. The initial policy and the task's data.
    def setup(directory: Path) -> dict[str, Any]:
        if config.policy and config.prompts and config.eval_prompts and config.ground_truth:
            return {
                "policy": config.policy,
                "prompts": str(config.prompts),
                "eval_prompts": str(config.eval_prompts),
                "pairs": None if config.pairs is None else str(config.pairs),
                "ground_truth": config.ground_truth,
            }
        from rmteacher import sandbox

        task = sandbox.build(progress=config.progress)
        return {
            "policy": config.policy or str(task.policy_dir),
            "prompts": str(config.prompts or task.train_prompts),
            "eval_prompts": str(config.eval_prompts or task.eval_prompts),
            "pairs": str(config.pairs or task.pairs),
            "ground_truth": config.ground_truth or sandbox.GROUND_TRUTH,
            "sandbox_key": task.key,
        }

    setup_inputs = {k: getattr(config, k) for k in ("policy", "prompts", "eval_prompts", "pairs", "ground_truth")}
    data = stages.run("setup", setup_inputs, setup)

    # 2. Reward models: five on on/off-policy mixes (train-rm), or the candidates given.
    candidates: dict[str, str] = {}
    if config.reward_model:
        from rmteacher.models import parse_reward_spec

        candidates = dict(parse_reward_spec(spec) for spec in config.reward_model)
    else:
        if data["pairs"] is None:
            raise ValueError("--pairs is needed to train reward models on on/off-policy mixes (or give --reward-model)")
        for fraction in tqdm(FRACTIONS, desc="reward models", disable=not config.progress, leave=False):
            name = f"rm_{round(fraction * 100)}"
            train_inputs = {"setup": data["fingerprint"], "fraction": fraction, "max_steps": sizes.rm_max_steps}

            def train(directory: Path, fraction: float = fraction) -> dict[str, Any]:
                summary = train_reward_model(
                    TrainRMConfig(
                        out=directory,
                        on_policy_fraction=fraction,
                        policy=data["policy"],
                        pairs=Path(data["pairs"]),
                        ground_truth=data["ground_truth"],
                        max_steps=sizes.rm_max_steps,
                        max_new_tokens=config.max_new_tokens,
                        trust_remote_code=config.trust_remote_code,
                        progress=False,
                    )
                )
                return {"model": str(directory / "model"), "summary": summary}

            candidates[name] = stages.run(f"reward_models/{name}", train_inputs, train)["model"]

    # 3. Table 1: every reward model under the initial policy, the scaled ground truth and the ground truth.
    evaluate_inputs = {
        "setup": data["fingerprint"],
        "candidates": candidates,
        "num_prompts": sizes.eval_num_prompts,
        "samples": sizes.eval_samples,
        "max_new_tokens": config.max_new_tokens,
    }

    def run_evaluation(directory: Path) -> dict[str, Any]:
        evaluate(
            EvaluateConfig(
                out=directory,
                policy=data["policy"],
                reward_model=[f"{n}={t}" for n, t in candidates.items()],
                ground_truth=data["ground_truth"],
                prompts=Path(data["prompts"]),
                pairs=None if data["pairs"] is None else Path(data["pairs"]),
                num_prompts=sizes.eval_num_prompts,
                samples_per_prompt=sizes.eval_samples,
                max_new_tokens=config.max_new_tokens,
                scale_reward=[TRUTH],
                trust_remote_code=config.trust_remote_code,
                progress=config.progress,
            )
        )
        return {"directory": str(directory)}

    evaluation = stages.run("evaluate", evaluate_inputs, run_evaluation)

    # 4. RLOO with each reward model (the scaled one is the ground truth with --scale-fraction 0.5 --scale-factor
    #    0.001 after normalization, as the paper), several seeds, evaluated along training.
    teachers = {
        **{n: f"{n}={t}" for n, t in candidates.items()},
        LOW_VARIANCE: f"{TRUTH}={data['ground_truth']}",
        TRUTH: f"{TRUTH}={data['ground_truth']}",
    }
    runs = [(name, seed) for name in teachers for seed in range(sizes.seeds)]
    for name, seed in tqdm(runs, desc="RLOO runs", disable=not config.progress):
        rl_inputs = {
            "evaluate": evaluation["fingerprint"],
            "teacher": teachers[name],
            "seed": seed,
            "steps": sizes.rl_steps,
            "every": sizes.rl_eval_every,
            "lr": config.learning_rate,
            "kl": config.kl_coef,
            "eval_prompts": sizes.rl_eval_prompts,
        }

        def train_policy(directory: Path, name: str = name, seed: int = seed) -> dict[str, Any]:
            return rl_run(
                config,
                sizes,
                directory,
                policy=data["policy"],
                teacher=teachers[name],
                ground_truth=data["ground_truth"],
                prompts=data["prompts"],
                eval_prompts=data["eval_prompts"],
                normalization=evaluation["directory"],
                seed=seed,
                scaled=name == LOW_VARIANCE,
            )

        stages.run(f"rl/{name}/seed{seed}", rl_inputs, train_policy)

    # 5. Analysis and report: computed from the saved results only (`rmteacher report` redoes just this).
    record_timings(config.out, started)
    analysis = analyze(config.out, table_eval=config.table_eval)
    write_report(config.out, analysis)
    return analysis


def rl_run(
    config: StudyConfig,
    sizes: Sizes,
    directory: Path,
    *,
    policy: str,
    teacher: str,
    ground_truth: str,
    prompts: str,
    eval_prompts: str,
    normalization: str,
    seed: int,
    scaled: bool = False,
    eval_every: int | None = None,
    eval_num_prompts: int | None = None,
) -> dict[str, Any]:
    """One RLOO run of a study with the study's shared settings; ``scaled`` is the paper's low-variance construction
    (x0.001 after normalization on a seeded half of the prompts). Keeps the curves, not the models."""
    from rmteacher.training.rl import RLConfig, train_rl

    result = train_rl(
        RLConfig(
            out=directory,
            algo="rloo",
            policy=policy,
            reward_model=teacher,
            ground_truth=ground_truth,
            prompts=Path(prompts),
            eval_prompts=Path(eval_prompts),
            normalization=Path(normalization),
            scale_fraction=0.5 if scaled else 0.0,
            scale_factor=1e-3 if scaled else 1.0,
            kl_coef=config.kl_coef,
            learning_rate=config.learning_rate,
            max_new_tokens=config.max_new_tokens,
            max_steps=sizes.rl_steps,
            eval_every=eval_every or sizes.rl_eval_every,
            save_every=sizes.rl_steps,
            eval_num_prompts=eval_num_prompts or sizes.rl_eval_prompts,
            eval_samples=sizes.rl_eval_samples,
            seed=seed,
            trust_remote_code=config.trust_remote_code,
            progress=False,
        )
    )
    discard_models(directory)
    return {"final": result["final"]}


def discard_models(directory: Path) -> None:
    """A study's RL run keeps its curves (``metrics.jsonl``), not its policy and checkpoints (tens of models)."""
    shutil.rmtree(directory / "policy", ignore_errors=True)
    for checkpoint in directory.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)


def record_timings(out: Path, started: float) -> None:
    """Writes ``timings.json``: each kind of stage's seconds (when it ran) and this invocation's total."""
    timings = _stage_times(out)
    timings["total (this invocation)"] = round(time.perf_counter() - started, 1)
    write_json_atomic(out / "timings.json", timings)


def _stage_times(out: Path) -> dict[str, float]:
    """Seconds each stage took when it ran (a skipped stage keeps its first time), grouped by kind."""
    totals: dict[str, float] = {}
    for record in sorted(out.rglob("stage.json")):
        name = record.parent.relative_to(out).parts[0]
        totals[name] = round(totals.get(name, 0.0) + json.loads(record.read_text())["seconds"], 1)
    return totals


def run_study(config: StudyConfig) -> str:
    """The CLI's entry: runs the study and returns the findings and where the report is."""
    analysis = study(config)
    lines = [
        "# rmteacher study",
        "",
        *analysis["findings"],
        "",
        "Stage times (s): "
        + ", ".join(f"{k} {v}" for k, v in json.loads((config.out / "timings.json").read_text()).items()),
        f"Report: {config.out / 'report.md'} and {config.out / 'report.html'}",
    ]
    return "\n".join(lines)
