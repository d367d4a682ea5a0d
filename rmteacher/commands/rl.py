"""`rmteacher rl`: the command line of :mod:`rmteacher.training.rl` (sandbox defaults, the printed summary).

Run: ``rmteacher rl --out runs/rl`` (the sandbox task: its policy trained on its ground truth) or
``rmteacher rl --algo grpo --policy ./sft --reward-model rm=./rm --ground-truth gt=./gold --prompts train.jsonl
--eval-prompts eval.jsonl --normalization runs/eval --out runs/rl`` (``accelerate launch`` for several processes).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rmteacher.commands.gguf_inputs import convert_gguf_inputs
from rmteacher.commands.sandbox_defaults import sandbox_if_nothing_given
from rmteacher.training.rl import RLConfig, train_rl

__all__ = ["RLConfig", "run_rl", "summary_lines"]


def run_rl(config: RLConfig) -> str:
    """Trains and returns a summary to print (empty on ranks > 0)."""
    from accelerate import PartialState

    given = {
        "--policy": config.policy,
        "--reward-model": config.reward_model,
        "--ground-truth": config.ground_truth,
        "--prompts": config.prompts,
        "--eval-prompts": config.eval_prompts,
    }
    task = sandbox_if_nothing_given("rl", given, progress=config.progress)
    if task is not None:
        from rmteacher import sandbox

        config = dataclasses.replace(
            config,
            policy=str(task.policy_dir),
            reward_model=f"perfect={sandbox.GROUND_TRUTH}",
            ground_truth=sandbox.GROUND_TRUTH,
            prompts=task.train_prompts,
            eval_prompts=task.eval_prompts,
        )
    convert_gguf_inputs("rl", {"--policy": config.policy}, progress=config.progress)
    result = train_rl(config, sandbox=task is not None)
    if not PartialState().is_main_process:
        return ""
    return summary_lines(config, result)


def summary_lines(config: RLConfig, result: dict[str, Any]) -> str:
    """The printed summary of a run: what :func:`train_rl` returned (its ``summary.json``)."""
    final, initial = result["final"], result["initial"]
    lines = [
        f"{config.algo.upper()} for {config.max_steps} steps; rewards normalized by the initial policy's statistics.",
        f"proxy reward increase: {final['proxy_increase']:+.3f} (step 0 -> {final['step']})",
    ]
    if "ground_truth_increase" in final:
        lines.append(f"ground-truth reward increase: {final['ground_truth_increase']:+.3f}")
    lines.append(f"KL to the initial policy: {final['kl']:.3f} (at step 0: {initial['kl']:.3f})")
    if result["defaults"]:
        taken = [f"--{name.replace('_', '-')} {d['value']} ({d['source']})" for name, d in result["defaults"].items()]
        lines.append("not given, so: " + "; ".join(taken))
    zero = result["zero_variance"]
    if zero["of_groups"]:
        lines.append(
            f"zero-variance prompt groups (the proxy equal on all of a prompt's samples, so no gradient): "
            f"{zero['groups']} of {zero['of_groups']} ({zero['share']:.0%}), {zero['rollouts']} of "
            f"{zero['of_rollouts']} rollouts"
        )
    unfinished = result["unfinished"]
    if unfinished["mean_clipped_ratio"] is not None:
        lines.append(
            f"completions cut at --max-new-tokens {unfinished['max_new_tokens']}: "
            f"{unfinished['mean_clipped_ratio']:.0%} on average over the steps"
            + (" (warned: raise --max-new-tokens)" if unfinished["warning_step"] is not None else "")
        )
    if result["flat_warning_step"] is not None:
        lines.append(f"flat objective warning at step {result['flat_warning_step']} (see the log)")
    lines.append(
        f"Wrote {config.out}/: summary.json, metrics.jsonl, config.json (resolved options), initial.json, policy/, "
        "checkpoints, TensorBoard"
    )
    return "\n".join(lines)
