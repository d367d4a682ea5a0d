"""`rmteacher train-rm`: the command line of :mod:`rmteacher.training.reward_model` (sandbox defaults, summary).

Run: ``rmteacher train-rm --on-policy-fraction 1.0 --out runs/rm-100`` (the sandbox task), or
``rmteacher train-rm --policy ./sft --prompts prompts.jsonl --pairs pairs.jsonl --ground-truth gt=pkg.mod:fn
--on-policy-fraction 0.5 --out D`` (the prompts table's other columns, e.g. ``answer``, reach the ground truth).
"""

from __future__ import annotations

import dataclasses

from rmteacher.commands.gguf_inputs import convert_gguf_inputs
from rmteacher.commands.sandbox_defaults import sandbox_if_nothing_given
from rmteacher.training.reward_model import TrainRMConfig, train_reward_model

__all__ = ["TrainRMConfig", "run_train_rm"]


def run_train_rm(config: TrainRMConfig) -> str:
    """Trains the reward model and returns the lines to print (empty on ranks > 0)."""
    given = {
        "--policy": config.policy,
        "--init": config.init,
        "--pairs": config.pairs,
        "--prompts": config.prompts,
        "--ground-truth": config.ground_truth,
    }
    task = sandbox_if_nothing_given("train-rm", given, progress=config.progress)
    if task is not None:
        from rmteacher import sandbox

        config = dataclasses.replace(
            config, policy=str(task.policy_dir), pairs=task.pairs, ground_truth=f"ground_truth={sandbox.GROUND_TRUTH}"
        )
    convert_gguf_inputs("train-rm", {"--policy": config.policy, "--init": config.init}, progress=config.progress)
    summary = train_reward_model(config)
    if not summary:
        return ""
    last = summary["last_log"]
    metrics = (
        f"; last logged loss {last['loss']:.4f}, accuracy {last.get('accuracy', float('nan')):.3f}" if last else ""
    )
    return (
        f"train-rm: {summary['pairs']} pairs ({summary['on_policy_pairs']} on-policy, "
        f"{summary['off_policy_pairs']} off-policy; {summary['tied_pairs_dropped']} tied on-policy pairs dropped, "
        f"{summary['pairs_over_max_length']} over --max-length left out), {summary['steps']} steps in "
        f"{summary['seconds']:.1f} s{metrics}\n"
        f"Wrote {config.out}/: model/ (safetensors + tokenizer), preferences.parquet, metrics.jsonl, config.json, "
        "summary.json"
    )
