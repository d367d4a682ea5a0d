"""`rmteacher study`: the paper's experiments end to end, ending in a report.

Resolves what the study runs on once (the options given, or the built-in sandbox task's when none is given, said
on stderr), picks the design once and runs its pipeline: :func:`rmteacher.study.study_reward_models` (Section 4.1)
or :func:`rmteacher.study.study_policies` (Section 4.2). Run: ``rmteacher study --quick`` or
``rmteacher study --design policies --quick``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rmteacher.commands.gguf_inputs import convert_gguf_inputs
from rmteacher.commands.sandbox_defaults import sandbox_if_nothing_given
from rmteacher.study import INPUTS, StudyConfig, study_policies, study_reward_models
from rmteacher.study.stages import check_run_dir
from rmteacher.study.workers import study_workers

if TYPE_CHECKING:
    from rmteacher.sandbox import SandboxTask

__all__ = ["REQUIRED", "StudyConfig", "StudyInputs", "resolve_inputs", "run_study"]

#: The inputs each design needs when they are given rather than the sandbox's.
REQUIRED: dict[str, tuple[str, ...]] = {
    # --pairs only to train reward models on on/off-policy mixes (without --reward-model); the pipeline says so.
    "reward-models": ("policy", "prompts", "eval_prompts", "ground_truth"),
    # The initial policies are made from the sandbox's (--policy is refused by StudyConfig).
    "policies": ("prompts", "eval_prompts", "pairs", "ground_truth"),
}


@dataclass(frozen=True)
class StudyInputs:
    """What a study runs on, resolved once: the options given, or the built-in sandbox task's."""

    prompts: Path
    eval_prompts: Path
    ground_truth: str
    pairs: Path | None
    policy: str | None  # None under --design policies, which makes its own initial policies
    task: SandboxTask | None  # the built sandbox, where it is used


def _flags(names: tuple[str, ...] | list[str]) -> str:
    return "/".join("--" + name.replace("_", "-") for name in names)


def resolve_inputs(config: StudyConfig) -> StudyInputs:
    """The inputs given (all the design's :data:`REQUIRED` ones), or with none given the built-in sandbox task's.

    Builds the sandbox where it is used (with no inputs given, and always under --design policies, whose initial
    policies are made from it) and says so in one line on stderr.

    Raises:
        ValueError: some inputs given but not all of the design's required ones (no partial fallback).
    """
    given = [name for name in INPUTS if getattr(config, name) is not None]  # --design policies: --policy refused
    required = REQUIRED[config.design]
    missing = [name for name in required if getattr(config, name) is None]
    if given and missing:
        raise ValueError(
            f"{_flags(given)} given without {_flags(missing)}: give all of {_flags(required)}, or none of "
            f"{_flags(INPUTS)} to use the built-in sandbox task"
        )
    if given and config.sandbox_seed != 0 and config.design != "policies":
        raise ValueError(
            f"--sandbox-seed {config.sandbox_seed} chooses a build of the built-in sandbox, which is not used when "
            f"{_flags(given)} are given; leave it out"
        )
    from rmteacher import sandbox  # the sandbox's files are built on first use (cached; about 35 s)

    flags = {_flags([name]): getattr(config, name) for name in INPUTS}
    task = sandbox_if_nothing_given("study", flags, progress=config.progress, seed=config.sandbox_seed)
    if task is not None:
        return StudyInputs(
            prompts=task.train_prompts,
            eval_prompts=task.eval_prompts,
            ground_truth=sandbox.GROUND_TRUTH,
            pairs=task.pairs,
            policy=None if config.design == "policies" else str(task.policy_dir),
            task=task,
        )
    if config.design == "policies":
        print("rmteacher study: --design policies makes its policies on the built-in sandbox task", file=sys.stderr)
        task = sandbox.build(seed=config.sandbox_seed, progress=config.progress)
    from rmteacher.loading import parse_reward_spec

    # Given by REQUIRED, whichever the design.
    assert config.prompts is not None and config.eval_prompts is not None and config.ground_truth is not None
    return StudyInputs(
        prompts=config.prompts,
        eval_prompts=config.eval_prompts,
        # The study's tables and RL runs call the ground truth `ground_truth` (evaluate would keep a NAME= given).
        ground_truth=parse_reward_spec(config.ground_truth, argument="--ground-truth")[1],
        pairs=config.pairs,
        policy=config.policy,
        task=task,
    )


def run_study(config: StudyConfig) -> str:
    """Runs the study's incomplete stages, the analysis and the report; returns the findings and where it all is."""
    check_run_dir(config)  # refuse a wrong --out before building anything
    inputs = resolve_inputs(config)
    convert_gguf_inputs("study", {"--policy": inputs.policy}, progress=config.progress)
    policy = inputs.policy if inputs.task is None else str(inputs.task.policy_dir)
    workers, rule = study_workers(config.workers, quick=config.quick, policy=policy)
    if not config.workers:
        print(f"rmteacher study: {workers} worker process(es) ({rule}); --workers sets it", file=sys.stderr)
    config = replace(config, workers=workers)
    if config.design == "policies":
        assert inputs.task is not None and inputs.pairs is not None  # resolve_inputs: the sandbox, REQUIRED
        analysis = study_policies(
            config,
            task=inputs.task,
            prompts=inputs.prompts,
            eval_prompts=inputs.eval_prompts,
            pairs=inputs.pairs,
            ground_truth=inputs.ground_truth,
        )
    else:
        assert inputs.policy is not None  # REQUIRED, or the sandbox's
        analysis = study_reward_models(
            config,
            policy=inputs.policy,
            prompts=inputs.prompts,
            eval_prompts=inputs.eval_prompts,
            ground_truth=inputs.ground_truth,
            pairs=inputs.pairs,
            sandbox_key=None if inputs.task is None else inputs.task.key,
        )
    timings = json.loads((config.out / "timings.json").read_text())
    lines = [
        "# rmteacher study",
        "",
        *analysis["findings"],
        "",
        "Stage times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()),
        f"Report: {config.out / 'report.md'} and {config.out / 'report.html'}",
    ]
    return "\n".join(lines)
