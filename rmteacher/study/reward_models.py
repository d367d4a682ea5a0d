"""The paper's Section 4.1 end to end, as resumable stages (:mod:`rmteacher.study.stages`), ending in a report.

1. the inputs: an initial policy, its prompts, evaluation prompts, off-policy pairs and the ground truth;
2. five reward models trained on 100/75/50/25/0% on-policy preference mixes (``rmteacher train-rm``), unless
   ``--reward-model`` gives candidates;
3. evaluation of every reward model, the perfectly accurate low-variance one (the ground truth normalized, then
   x0.001 on a seeded half of the prompts) and the ground truth under the initial policy (Table 1 analogue);
4. RLOO from the initial policy with each of them, over several seeds, evaluated along training;
5. the theory's setting: the ground truth, its low-variance construction and the best trained reward model again
   with plain SGD and no gradient clipping (``--sgd-learning-rate``), to the findings' step;
6. the analysis: reward increase per model (mean over seeds), the correlation table over the proxy reward
   models, ground truth excluded (Table 2 analogue), curves (Figures 2 and 4 analogues), and the report
   (:mod:`rmteacher.report.reward_models`).

Run: ``rmteacher study`` (the built-in sandbox task, ~5 min on 2 CPU cores) or ``rmteacher study --quick``; from
Python, :func:`study_reward_models` with explicit inputs.
"""

from __future__ import annotations

import functools
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from rmteacher.study.stages import (
    SANDBOX_SGD_LEARNING_RATE,
    Sizes,
    Stages,
    StudyConfig,
    dtype_input,
    prepare_run_dir,
    record_machine,
    record_timings,
    require_inputs,
    rl_run,
    table_evaluation,
)
from rmteacher.study.workers import Launcher, StageJob, run_stages, study_workers
from rmteacher.tables import LOW_VARIANCE, TRUTH

__all__ = ["FRACTIONS", "study_reward_models", "train_candidate"]

#: The paper's on-policy shares of the five trained reward models.
FRACTIONS = (1.0, 0.75, 0.5, 0.25, 0.0)


def study_reward_models(
    config: StudyConfig,
    *,
    policy: str,
    prompts: Path,
    eval_prompts: Path,
    ground_truth: str,
    pairs: Path | None = None,
    sandbox_key: str | None = None,
) -> dict[str, Any]:
    """Runs every stage that is not complete, then the analysis and the report; returns the analysis.

    Args:
        config: the options; its ``policy``/``prompts``/... fields are not read (the inputs below are).
        policy: the initial policy (directory or hub id).
        prompts: policy-gradient prompts S.
        eval_prompts: prompts to evaluate policies along training.
        ground_truth: the ground-truth reward ``PATH_OR_CALLABLE``.
        pairs: off-policy preference pairs; needed to train reward models (without ``config.reward_model``).
        sandbox_key: the built-in sandbox's cache key when the inputs are its, so that a rebuilt sandbox redoes
            the stages.

    Raises:
        ValueError: a missing input, or no ``pairs`` to train reward models on.
    """
    from rmteacher.evaluate import EvaluateConfig, evaluate
    from rmteacher.loading import parse_reward_spec
    from rmteacher.report.reward_models import SGD_ARM, analyze, best_trained, write_report

    require_inputs(
        "study_reward_models", policy=policy, prompts=prompts, eval_prompts=eval_prompts, ground_truth=ground_truth
    )
    if pairs is None and not config.reward_model:
        raise ValueError("--pairs is needed to train reward models on on/off-policy mixes (or give --reward-model)")
    if config.system_prompt is not None:
        check_policy_renders(policy, Path(prompts), config)
    prepare_run_dir(config)
    sizes = Sizes.of(config)
    stages = Stages(config.out)
    started = time.perf_counter()

    # 1. The inputs, recorded: every later stage's fingerprint chains off this one.
    inputs = {
        "policy": policy,
        "prompts": str(prompts),
        "eval_prompts": str(eval_prompts),
        "pairs": None if pairs is None else str(pairs),
        "ground_truth": ground_truth,
        "prompt_column": config.prompt_column,
        "system_prompt": config.system_prompt,
        "sandbox_key": sandbox_key,
    }
    data = stages.run("setup", inputs, lambda directory: inputs)

    # 2. Reward models: five on on/off-policy mixes (train-rm), or the candidates given.
    candidates: dict[str, str] = {}
    workers, _ = study_workers(config.workers, quick=config.quick, policy=policy)
    record_machine(config.out, cpu_threads=config.cpu_threads, workers=workers)
    if config.reward_model:
        candidates = dict(parse_reward_spec(spec) for spec in config.reward_model)
    else:
        trainings = [
            StageJob(
                f"reward_models/rm_{round(fraction * 100)}",
                {"setup": data["fingerprint"], "fraction": fraction, "max_steps": sizes.rm_max_steps},
                functools.partial(train_candidate, config=config, data=data, fraction=fraction, sizes=sizes),
            )
            for fraction in FRACTIONS
        ]
        trained = run_stages(
            stages,
            trainings,
            workers=workers,
            desc="reward models",
            progress=config.progress,
            launcher=Launcher.of(config),
        )
        candidates = {name.removeprefix("reward_models/"): result["model"] for name, result in trained.items()}

    # 3. Table 1: every reward model under the initial policy, the scaled ground truth and the ground truth.
    evaluate_inputs = {
        "setup": data["fingerprint"],
        "candidates": candidates,
        "num_prompts": sizes.eval_num_prompts,
        "samples": sizes.eval_samples,
        "max_new_tokens": config.max_new_tokens,
        **dtype_input(config),
    }

    def run_evaluation(directory: Path) -> dict[str, Any]:
        evaluate(
            EvaluateConfig(
                out=directory,
                policy=data["policy"],
                reward_model=[f"{n}={t}" for n, t in candidates.items()],
                ground_truth=data["ground_truth"],
                prompts=Path(data["prompts"]),
                prompt_column=config.prompt_column,
                system_prompt=config.system_prompt,
                pairs=None if data["pairs"] is None else Path(data["pairs"]),
                num_prompts=sizes.eval_num_prompts,
                samples_per_prompt=sizes.eval_samples,
                max_new_tokens=config.max_new_tokens,
                scale_reward=[TRUTH],
                dtype=config.dtype,
                device_map=config.device_map,
                cpu_threads=config.cpu_threads,
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

    def rl_job(
        folder: str, name: str, seed: int, *, steps: int, lr: float, optimizer: Literal["adamw", "sgd"] = "adamw"
    ) -> StageJob:
        """One RLOO run of ``teachers[name]`` as a stage; "optimizer" enters the fingerprint only for SGD, so the
        AdamW runs of studies made before the SGD arm keep theirs."""
        inputs = {
            "evaluate": evaluation["fingerprint"],
            "teacher": teachers[name],
            "seed": seed,
            "steps": steps,
            "every": sizes.rl_eval_every,
            **({"optimizer": optimizer} if optimizer != "adamw" else {}),
            "lr": lr,
            "kl": config.kl_coef,
            "eval_prompts": sizes.rl_eval_prompts,
            **dtype_input(config),
        }
        run = functools.partial(
            rl_run,
            config,
            sizes,
            policy=data["policy"],
            teacher=teachers[name],
            ground_truth=data["ground_truth"],
            prompts=data["prompts"],
            eval_prompts=data["eval_prompts"],
            normalization=evaluation["directory"],
            seed=seed,
            scaled=name == LOW_VARIANCE,
            steps=steps,
            optimizer=optimizer,
            learning_rate=lr,
        )
        return StageJob(f"{folder}/{name}/seed{seed}", inputs, run)

    runs = [
        rl_job("rl", name, seed, steps=sizes.rl_steps, lr=config.learning_rate)
        for name in teachers
        for seed in range(sizes.seeds)
    ]
    run_stages(stages, runs, workers=workers, desc="RLOO runs", progress=config.progress, launcher=Launcher.of(config))
    table_eval = table_evaluation(config.table_eval, config.rl_evals)

    # 5. The theory's setting: plain SGD without clipping, to the findings' step, for the two low-variance claims
    #    (the ground truth, its low-variance construction, and the trained reward model the Adam runs ranked best).
    sgd_rate = config.sgd_learning_rate
    if sgd_rate is None:
        sgd_rate = SANDBOX_SGD_LEARNING_RATE if sandbox_key is not None else 0.0
    if sgd_rate > 0:
        best = best_trained(config.out, list(candidates), table_eval) if candidates else None
        arm = [LOW_VARIANCE, TRUTH, *([best] if best is not None else [])]
        sgd_runs = [
            rl_job(SGD_ARM, name, seed, steps=sizes.rl_eval_every * table_eval, lr=sgd_rate, optimizer="sgd")
            for name in arm
            for seed in range(sizes.seeds)
        ]
        stale = config.out / SGD_ARM
        if stale.exists():  # a resumed study whose best trained model changed: its old runs would be read
            for directory in stale.iterdir():
                if directory.name not in arm:
                    shutil.rmtree(directory)
        run_stages(
            stages, sgd_runs, workers=workers, desc="SGD runs", progress=config.progress, launcher=Launcher.of(config)
        )
    elif (config.out / SGD_ARM).exists():
        shutil.rmtree(config.out / SGD_ARM)  # --sgd-learning-rate 0 on a resumed study: no stale arm in the report

    # 6. Analysis and report: computed from the saved results only (`rmteacher report` redoes just this).
    record_timings(config.out, started)
    analysis = analyze(config.out, table_eval=table_eval)
    write_report(config.out, analysis)
    return analysis


def train_candidate(
    directory: Path, *, config: StudyConfig, sizes: Sizes, data: dict[str, Any], fraction: float
) -> dict[str, Any]:
    """Trains the reward model of one on-policy ``fraction`` (``rmteacher train-rm``) into ``directory``: one stage,
    run in a worker process when the study has several (:mod:`rmteacher.study.workers`)."""
    from rmteacher.training.reward_model import TrainRMConfig, train_reward_model

    summary = train_reward_model(
        TrainRMConfig(
            out=directory,
            on_policy_fraction=fraction,
            policy=data["policy"],
            pairs=Path(data["pairs"]),
            prompts=Path(data["prompts"]),
            prompt_column=config.prompt_column,
            ground_truth=data["ground_truth"],
            max_steps=sizes.rm_max_steps,
            system_prompt=config.system_prompt,
            max_new_tokens=config.max_new_tokens,
            cpu_threads=config.cpu_threads,
            trust_remote_code=config.trust_remote_code,
            progress=False,
        )
    )
    return {"model": str(directory / "model"), "summary": summary}


def check_policy_renders(policy: str, prompts: Path, config: StudyConfig) -> None:
    """Renders the first prompt with ``--system-prompt`` through the policy's chat template before any stage runs,
    so that a template rejecting a system message stops the study here, not after the reward models are trained.

    Raises:
        ValueError: the template's own message, naming the tokenizer and the roles.
    """
    from rmteacher.loading import load_tokenizer
    from rmteacher.rendering import render_prompt
    from rmteacher.tables import load_prompts

    first = load_prompts(prompts, config.prompt_column)["prompt"].iloc[0]
    tokenizer = load_tokenizer(policy, kind="policy", trust_remote_code=config.trust_remote_code)
    render_prompt(tokenizer, first, system_prompt=config.system_prompt)
