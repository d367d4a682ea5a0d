"""What both study designs share: the options, the budgets, fingerprinted resumable stages and one RLOO run.

Every stage writes into its own directory of the run with a ``stage.json`` recording a fingerprint of its inputs;
a stage whose fingerprint matches is skipped, one whose inputs changed is redone, and ``--resume`` finishes only
what is missing; the independent stages run in worker processes (:mod:`rmteacher.study.workers`), and
``machine.json`` records the machine each invocation ran on (:func:`record_machine`). The designs themselves are
:mod:`rmteacher.study.reward_models` (Section 4.1) and :mod:`rmteacher.study.policies` (Section 4.2). Run:
``rmteacher study --help``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rmteacher.options import check_options, option
from rmteacher.tables import write_json_atomic
from rmteacher.threads import CPU_THREADS_HELP

__all__ = [
    "DEFAULT_TABLE_EVAL",
    "INPUTS",
    "RAY_MISSING",
    "SANDBOX_SGD_LEARNING_RATE",
    "Sizes",
    "Stages",
    "StudyConfig",
    "check_run_dir",
    "discard_models",
    "dtype_input",
    "prepare_run_dir",
    "record_machine",
    "record_timings",
    "require_inputs",
    "rl_run",
    "table_evaluation",
]

#: The options naming what a study runs on; `rmteacher study` takes the built-in sandbox's when none is given.
INPUTS = ("policy", "prompts", "eval_prompts", "pairs", "ground_truth")
#: The evaluation along training that the findings and Table 2 use when --table-eval is not given (README, "Three
#: sandbox builds": after the first, 10 steps of 60, the ground truth's own increase was within its seed spread).
DEFAULT_TABLE_EVAL = 2
#: The error of `--launcher ray` where Ray is not installed (Ray is an optional extra).
RAY_MISSING = "--launcher ray needs Ray: pip install 'rmteacher[ray]'"
#: The plain-SGD arm's learning rate on the built-in sandbox: the largest of examples/sgd_sweep.py's grid at which
#: every seed of the ground truth's own run improved and the seed spread stayed within twice the smallest rate's
#: (build 0, docs/results/sandbox-study.md, "The theory's setting").
SANDBOX_SGD_LEARNING_RATE = 5e-4


def table_evaluation(table_eval: int | None, rl_evals: int) -> int:
    """The evaluation a study's findings use: ``--table-eval`` when given, else :data:`DEFAULT_TABLE_EVAL` or the
    last evaluation when there are fewer."""
    return table_eval if table_eval is not None else min(DEFAULT_TABLE_EVAL, rl_evals)


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
    seeds: int | None = option(
        None,
        help="RL runs per reward model (default: 12, --quick: 1; the paper: 3); the findings' tests are over seeds",
    )
    policy: str | None = option(None, help="initial policy directory or hub id (default: the sandbox's SFT policy)")
    ground_truth: str | None = option(None, help="ground-truth reward PATH_OR_CALLABLE (default: the sandbox's)")
    reward_model: list[str] = option(
        default_factory=list,
        help="candidate reward models NAME=PATH_OR_CALLABLE instead of training five on on/off-policy mixes",
    )
    prompts: Path | None = option(None, help="policy-gradient prompts S (default: the sandbox's train prompts)")
    eval_prompts: Path | None = option(None, help="prompts to evaluate policies along training (default: sandbox)")
    pairs: Path | None = option(None, help="off-policy preference pairs (default: the sandbox's)")
    prompt_column: str = option("prompt", help="column of --prompts/--eval-prompts holding the prompt")
    system_prompt: str | None = option(
        None, help="system message put before every prompt, for the policy and every reward model"
    )
    eval_num_prompts: int | None = option(None, help="prompts x samples for Table 1 (default 200, the paper: 500)")
    eval_samples: int = option(10, help="samples per prompt for Table 1 (the paper: 10)")
    rl_steps: int | None = option(None, help="RLOO steps per run (default 60, --quick 12)")
    rl_evals: int = option(6, help="evaluations along training (the paper: one per epoch, 6 epochs)")
    table_eval: int | None = option(
        None,
        help="which evaluation the findings and the correlation table use (the paper: after epoch 1 of 6; default "
        f"here: the {DEFAULT_TABLE_EVAL}nd, step 20 of 60, where the ground truth's own increase first exceeds its "
        "seed-to-seed spread; the last one when --rl-evals is smaller)",
    )
    max_new_tokens: int = option(
        16, help="most tokens per completion (default: 16, the study's own, as rl's on the sandbox; the paper: 512)"
    )
    learning_rate: float = option(
        5e-5,
        help="RLOO learning rate (default: 5e-5, the study's own, tuned for the sandbox as rl's there; with your "
        "--policy consider TRL's 1e-6; the paper: 1e-7 at 1B parameters)",
    )
    kl_coef: float = option(0.05, help="RLOO KL coefficient (the paper: 0.05)")
    sgd_learning_rate: float | None = option(
        None,
        help="learning rate of the plain-SGD arm: the ground truth, its low-variance construction and the best "
        "trained reward model once more with SGD and no gradient clipping (the theory's setting), to the findings' "
        f"step; default: {SANDBOX_SGD_LEARNING_RATE:g} on the built-in sandbox (the sweep of "
        "examples/sgd_sweep.py on build 0), no SGD arm with your --policy; 0: no SGD arm",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = option(
        None,
        help="weights' dtype of the policy and model reward models in the evaluate and RL stages; auto: each "
        "checkpoint's (default: as evaluate and rl: each checkpoint's in evaluate; in RL the policy in float32, as "
        "TRL trains it, reward models in their checkpoint's)",
    )
    device_map: str | None = option(
        None, help="passed to from_pretrained in the evaluate and RL stages, e.g. auto for a model larger than a device"
    )
    sandbox_seed: int = option(
        0,
        help="which build of the built-in sandbox (its seed: data, SFT policy, measurement); the README's "
        "three-build table uses 0, 1 and 2",
    )
    cpu_threads: int = option(1, help=CPU_THREADS_HELP)
    workers: int | None = option(
        None,
        help="worker processes running the independent RL runs and reward-model trainings, each with --cpu-threads "
        "torch threads; results are bit-identical to --workers 1; 0: one per usable core, at most one per 1 GiB + "
        "12x the policy's weights of available memory. Default: 0's rule, but 1 with --quick, whose 2-s runs cost "
        "less than a worker's start-up (docs/guides/study.md, Measured)",
    )
    launcher: Literal["local", "ray"] = option(
        "local",
        help="where the independent runs go: local: --workers processes on this machine; ray: tasks on a Ray cluster "
        "(pip install 'rmteacher[ray]'), each with --cpu-threads CPUs and one GPU where the cluster has GPUs; --out "
        "must be on a filesystem every node sees, at the same path (docs/guides/study.md)",
    )
    ray_address: str | None = option(
        None,
        help="the Ray cluster of --launcher ray: auto (the one `ray start` began on this machine), HOST:PORT or "
        "ray://HOST:10001 (default: Ray's RAY_ADDRESS environment variable, else a new local Ray instance with "
        "--workers x --cpu-threads CPUs, stopped when the batch ends)",
    )
    trust_remote_code: bool = option(False, help="allow models' own Python code (e.g. ArmoRM as ground truth)")
    resume: bool = option(False, help="finish an interrupted study: complete stages are kept, the rest is done")
    overwrite: bool = option(False, help="delete what --out holds and start over")
    progress: bool = option(True, help="progress bars on stderr")

    def __post_init__(self) -> None:
        # Table 2 correlates over the proxies, those given and the low-variance one; Table 10 within each policy over
        # its reward models (rmteacher.analysis.correlation_table needs 3).
        fewest, over = (
            (3, "each policy's reward models") if self.design == "policies" else (2, "them and the low-variance one")
        )
        check_options(
            [
                (self.seeds is None or self.seeds >= 1, f"--seeds must be >= 1; got {self.seeds}"),
                (self.sandbox_seed >= 0, f"--sandbox-seed must be >= 0; got {self.sandbox_seed}"),
                (
                    self.workers is None or self.workers >= 0,
                    f"--workers must be >= 0 (0: one per usable core); got {self.workers}",
                ),
                (self.cpu_threads >= 0, f"--cpu-threads must be >= 0 (0: torch's default); got {self.cpu_threads}"),
                (self.rl_steps is None or self.rl_steps >= 2, f"--rl-steps must be >= 2; got {self.rl_steps}"),
                (self.rl_evals >= 1, f"--rl-evals must be >= 1; got {self.rl_evals}"),
                (
                    self.sgd_learning_rate is None
                    or (math.isfinite(self.sgd_learning_rate) and self.sgd_learning_rate >= 0),
                    f"--sgd-learning-rate must be a finite number >= 0 (0: no SGD arm); got {self.sgd_learning_rate}",
                ),
                (
                    self.design != "policies" or self.sgd_learning_rate is None,
                    f"--sgd-learning-rate {self.sgd_learning_rate}: the SGD arm is part of --design reward-models "
                    "(Section 4.1's low-variance claims); --design policies has none",
                ),
                (
                    self.table_eval is None or 1 <= self.table_eval <= self.rl_evals,
                    f"--table-eval must be in [1, --rl-evals={self.rl_evals}]; got {self.table_eval}",
                ),
                (self.eval_samples >= 2, f"--eval-samples must be >= 2; got {self.eval_samples}"),
                (
                    self.eval_num_prompts is None or self.eval_num_prompts >= 2,
                    f"--eval-num-prompts must be >= 2; got {self.eval_num_prompts}",
                ),
                (
                    self.design != "policies" or self.policy is None,
                    f"--policy {self.policy!r}: --design policies makes its own initial policies on the sandbox "
                    "task; use --design reward-models to study one given policy",
                ),
                (
                    self.design != "policies" or self.system_prompt is None,
                    f"--system-prompt {self.system_prompt!r}: --design policies runs on the sandbox's own policies, "
                    "whose chat template has no system role; use --design reward-models with your --policy",
                ),
                (
                    not self.reward_model or len(self.reward_model) >= fewest,
                    f"--reward-model: {len(self.reward_model)} given; --design {self.design} correlates over {over}, "
                    f"and a correlation needs 3: give at least {fewest}",
                ),
                (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one"),
                (
                    self.ray_address is None or self.launcher == "ray",
                    f"--ray-address {self.ray_address!r} is only used with --launcher ray; add it or leave the "
                    "address out",
                ),
                # Checked here, before the run directory exists or any stage runs (find_spec imports nothing).
                (self.launcher != "ray" or importlib.util.find_spec("ray") is not None, RAY_MISSING),
            ]
        )


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
            # Twelve seeds and 128 evaluation prompts: the seed-to-seed std of the ground-truth increase after 20
            # steps is 0.012-0.030 against gaps of about 0.02 between teachers, which 8 seeds left at p = 0.05-0.45 on
            # three builds and two machines (issue 19); twelve are what two workers fit in 15 minutes on 2 cores
            # with the SGD arm (docs/guides/study.md, Measured).
            seeds=config.seeds or (1 if config.quick else 12),
            eval_num_prompts=config.eval_num_prompts or (60 if config.quick else 200),
            eval_samples=config.eval_samples,
            rm_max_steps=40 if config.quick else -1,
            rl_steps=steps,
            rl_eval_every=max(1, steps // config.rl_evals),
            rl_eval_prompts=16 if config.quick else 128,
            rl_eval_samples=4,
        )


def require_inputs(pipeline: str, **inputs: object) -> None:
    """Raises ``ValueError`` naming the inputs a study pipeline was called without (None or empty)."""
    missing = [name for name, value in inputs.items() if value is None or value == ""]
    if missing:
        raise ValueError(
            f"{pipeline}: missing input(s) {', '.join(missing)}; the library takes them explicitly "
            "(`rmteacher study` resolves the built-in sandbox task's when none is given)"
        )


# --------------------------------------------------------------------------------------------------- stages


def _fingerprint(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Stages:
    """Runs stages once: a stage with a ``stage.json`` of the same input fingerprint is skipped."""

    root: Path

    def complete(self, name: str, inputs: dict[str, Any]) -> bool:
        """Whether the stage ``name`` has a record of these inputs (:meth:`run` would skip it)."""
        record_path = self.root / name / "stage.json"
        return record_path.exists() and json.loads(record_path.read_text())["fingerprint"] == _fingerprint(inputs)

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
        write_json_atomic(
            record_path, {"fingerprint": fingerprint, "inputs": inputs, "result": result, "seconds": round(seconds, 2)}
        )
        return dict(result, fingerprint=fingerprint)


def dtype_input(config: StudyConfig) -> dict[str, Any]:
    """The study's ``--dtype`` as an input of the stages whose results it changes (evaluate, RL); empty when not
    given, so that the stages of a study run without it keep their fingerprints. ``--device-map`` only places the
    models and is not an input."""
    return {} if config.dtype is None else {"dtype": config.dtype}


# ----------------------------------------------------------------------------------------------- run directory


def _options(config: StudyConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}


def check_run_dir(config: StudyConfig) -> None:
    """Raises ``ValueError`` if ``--out`` cannot hold this study as asked; writes nothing.

    The same study again just skips its complete stages; other options need --resume (keep what still matches, redo
    the rest) or --overwrite.
    """
    out = config.out
    if config.overwrite or not out.exists() or not any(out.iterdir()):
        return
    manifest = out / "study.json"
    if not manifest.exists():
        raise ValueError(f"--out {out}: not empty and not a study; pass --overwrite or another --out")
    previous, options = json.loads(manifest.read_text()), _options(config)
    # How, not what: no result depends on them.
    transient = ("resume", "overwrite", "progress", "workers", "launcher", "ray_address")
    changed = sorted(k for k in options if k not in transient and previous.get(k) != options[k])
    if changed and not config.resume:
        raise ValueError(
            f"--out {out}: holds a study with different {', '.join(changed)}; pass --resume to keep its complete "
            "stages and redo the changed ones, or --overwrite"
        )


def prepare_run_dir(config: StudyConfig) -> None:
    """Checks ``--out`` (:func:`check_run_dir`), empties it with ``--overwrite`` and writes ``study.json``."""
    check_run_dir(config)
    if config.overwrite and config.out.exists():
        shutil.rmtree(config.out)
    config.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(config.out / "study.json", _options(config))


def record_machine(out: Path, *, cpu_threads: int, workers: int) -> None:
    """Adds this invocation's machine (:func:`rmteacher.machine.describe_machine`) to ``machine.json`` unless it is
    the last one recorded there: a study resumed on another machine lists both, in order."""
    from rmteacher.machine import describe_machine

    path = out / "machine.json"
    machines = json.loads(path.read_text())["machines"] if path.exists() else []
    this = describe_machine(torch_threads=cpu_threads, workers=workers)

    def undated(machine: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in machine.items() if k != "date"}

    if not machines or undated(machines[-1]) != undated(this):
        write_json_atomic(path, {"machines": [*machines, this]})


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


# ------------------------------------------------------------------------------------------------------ RLOO


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
    steps: int | None = None,
    optimizer: Literal["adamw", "sgd"] = "adamw",
    learning_rate: float | None = None,
) -> dict[str, Any]:
    """One RLOO run of a study with the study's shared settings; ``scaled`` is the paper's low-variance construction
    (x0.001 after normalization on a seeded half of the prompts, Section 4.1). Keeps the curves, not the models.

    ``optimizer="sgd"`` is the theory's setting (Theorem 1 is about gradient flow): plain SGD at ``learning_rate``
    without gradient clipping, which would cap exactly the small gradients the theory is about; AdamW keeps TRL's
    clipping at 1. ``steps`` and ``learning_rate`` default to the study's."""
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
            prompt_column=config.prompt_column,
            system_prompt=config.system_prompt,
            normalization=Path(normalization),
            scale_fraction=0.5 if scaled else 0.0,
            scale_factor=1e-3 if scaled else 1.0,
            kl_coef=config.kl_coef,
            learning_rate=learning_rate if learning_rate is not None else config.learning_rate,
            optimizer=optimizer,
            max_grad_norm=0.0 if optimizer == "sgd" else 1.0,
            max_new_tokens=config.max_new_tokens,
            max_steps=steps or sizes.rl_steps,
            eval_every=eval_every or sizes.rl_eval_every,
            save_every=steps or sizes.rl_steps,
            eval_num_prompts=eval_num_prompts or sizes.rl_eval_prompts,
            eval_samples=sizes.rl_eval_samples,
            seed=seed,
            dtype=config.dtype,
            device_map=config.device_map,
            cpu_threads=config.cpu_threads,
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
