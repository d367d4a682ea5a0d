"""`rmteacher evaluate`: the command line of :mod:`rmteacher.evaluate` (sandbox defaults, the printed table).

Run: ``rmteacher evaluate --out runs/eval`` (the built-in sandbox task) or with your models, e.g.
``rmteacher evaluate --policy ./sft --reward-model a=./rm-a --ground-truth gt=pkg.mod:fn --prompts p.jsonl --out DIR``.
"""

from __future__ import annotations

import dataclasses
import sys

from rmteacher.commands.gguf_inputs import convert_gguf_inputs
from rmteacher.commands.sandbox_defaults import sandbox_if_nothing_given
from rmteacher.evaluate import EvaluateConfig, evaluate

__all__ = ["EvaluateConfig", "run_evaluate", "with_sandbox_defaults"]

#: --max-new-tokens of the built-in sandbox task when not given.
SANDBOX_MAX_NEW_TOKENS = 16


def with_sandbox_defaults(config: EvaluateConfig) -> EvaluateConfig:
    """``config`` unchanged when any task input is given; else the sandbox's policy, prompts, pairs, ground truth and
    candidates: its reward functions of different quality, ``perfect`` (the ground truth itself) and, unless
    ``--scale-reward`` says otherwise, ``perfect_scaled``, the paper's perfectly accurate, low-variance reward.
    ``--max-new-tokens`` defaults to the sandbox's 16 (its answers are at most 8 letters)."""
    given = {
        "--policy": config.policy,
        "--reward-model": config.reward_model,
        "--ground-truth": config.ground_truth,
        "--prompts": config.prompts,
        "--pairs": config.pairs,
        "--samples": config.samples,
    }
    task = sandbox_if_nothing_given("evaluate", given, progress=config.progress)
    if task is None:
        return config
    from rmteacher import sandbox

    return dataclasses.replace(
        config,
        policy=str(task.policy_dir),
        reward_model=[*sandbox.CANDIDATE_REWARDS, f"perfect={sandbox.GROUND_TRUTH}"],
        ground_truth=sandbox.GROUND_TRUTH,
        prompts=task.train_prompts,
        pairs=task.pairs,
        scale_reward=config.scale_reward or ["perfect"],
        max_new_tokens=config.max_new_tokens or SANDBOX_MAX_NEW_TOKENS,
    )


def run_evaluate(config: EvaluateConfig) -> str:
    """Runs the evaluation; returns the markdown table to print (empty on ranks > 0). What the ranking is by goes
    to stderr in one line (with ``metrics.md`` and ``metrics.json``'s ``ranking_basis``)."""
    from accelerate import PartialState

    from rmteacher.report.evaluate import render_markdown

    config = with_sandbox_defaults(config)
    convert_gguf_inputs("evaluate", {"--policy": config.policy}, progress=config.progress)
    result = evaluate(config)
    if not PartialState().is_main_process:
        return ""
    print(f"rmteacher evaluate: {result['ranking_basis']}", file=sys.stderr)
    return (
        render_markdown(result)
        + f"\nWrote {config.out}/: metrics.md, metrics.json, samples.parquet, config.json, variance_vs_accuracy.png"
    )
