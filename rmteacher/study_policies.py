"""`rmteacher study --design policies`: the paper's Section 4.2 on the sandbox task, as resumable stages.

The paper (Section 4.2, camera-ready Table 10) trains several initial policies with the same four reward models and
finds that which reward model teaches best depends on the policy, and follows the reward variance each induces under
that policy rather than its accuracy (Theorem 3: the same reward model can be a good teacher for one policy and a
poor one for another). Here, on the sandbox task:

1. initial policies: the sandbox's (SFT on its mixed demonstrations) and two more fine-tuned the same way on
   differently distributed demonstrations, whose mistakes break the answer's length/letters
   (:func:`rmteacher.sandbox.data.length_mistakes`) or only its order
   (:func:`rmteacher.sandbox.data.order_mistakes`);
2. evaluation of every reward model under every policy (reward variance, on- and off-policy accuracy;
   ``rmteacher evaluate``), whose statistics also normalize the rewards in training, as the paper;
3. RLOO from each policy with each reward model over several seeds (``rmteacher rl``);
4. the Table 10 analogue, the figures and the report (:mod:`rmteacher.report_policies`).

The reward models default to :data:`rmteacher.sandbox.rewards.POLICY_STUDY_REWARDS`: two perfectly accurate ones
curved in opposite ways (``strict``, ``lenient``) and two blind to one aspect of the answer (``letters_only``,
``order_only``); ``--reward-model`` replaces them. Run: ``rmteacher study --design policies --out runs/policies``
(~7 min on 2 CPU cores) or ``... --quick`` (~1 min).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rmteacher.study import Sizes, Stages, StudyConfig, prepare_run_dir, record_timings, rl_run

__all__ = ["POLICIES", "PolicyRecipe", "demonstration_rows", "study_policies"]

#: SFT steps of the two extra policies; the sandbox's own policy had 400 (``rmteacher.sandbox.builder``).
SFT_STEPS, QUICK_SFT_STEPS = 400, 120
#: Evaluations along each RLOO run (after each of the paper's 2 epochs) and their prompts (x 4 samples).
RL_EVALS, RL_EVAL_PROMPTS = 2, 256


@dataclass(frozen=True)
class PolicyRecipe:
    """An initial policy of the design: the demonstrations it is fine-tuned on (None: the sandbox's own policy)."""

    name: str
    mistakes: str | None  # a function name in rmteacher.sandbox.data: (letters, rng) -> completion
    description: str


POLICIES: tuple[PolicyRecipe, ...] = (
    PolicyRecipe("mixed", None, "the sandbox's policy: SFT on mixed mistakes (swaps, drops, copies, sorted prefixes)"),
    PolicyRecipe("length_mistakes", "length_mistakes", "SFT on sorted answers with letters dropped or added"),
    PolicyRecipe("order_mistakes", "order_mistakes", "SFT on the right letters, sometimes in the wrong order"),
)


def demonstration_rows(
    prompts: Sequence[str], mistakes: Callable[[str, random.Random], str], *, seed: str
) -> list[dict[str, str]]:
    """Prompt/completion rows: one demonstration of ``mistakes`` per prompt, from ``random.Random(seed)``."""
    from rmteacher.sandbox.task import prompt_letters

    rng = random.Random(seed)
    return [{"prompt": p, "completion": mistakes(prompt_letters(p), rng)} for p in prompts]


def study_policies(config: StudyConfig) -> dict[str, Any]:
    """Runs every stage that is not complete, then the analysis and the report; returns the analysis."""
    from rmteacher import sandbox
    from rmteacher.evaluate import EvaluateConfig, evaluate
    from rmteacher.report_policies import analyze, write_report
    from rmteacher.sandbox import data as sandbox_data
    from rmteacher.sandbox.rewards import POLICY_STUDY_REWARDS
    from rmteacher.tables import read_table
    from rmteacher.training.runs import cpu_threads, torch_threads
    from rmteacher.training.sft import SFTConfig, run_sft

    if config.policy is not None:
        raise ValueError(
            f"--policy {config.policy!r}: --design policies makes its own initial policies on the sandbox task; "
            "use --design reward-models to study one given policy"
        )
    prepare_run_dir(config)
    sizes = Sizes.of(config)
    stages = Stages(config.out, timings={})
    started = time.perf_counter()
    task = sandbox.build(progress=config.progress)
    ground_truth = config.ground_truth or sandbox.GROUND_TRUTH
    prompts = config.prompts or task.train_prompts
    eval_prompts = config.eval_prompts or task.eval_prompts
    pairs = config.pairs or task.pairs
    candidates = list(config.reward_model or POLICY_STUDY_REWARDS)
    sft_steps = QUICK_SFT_STEPS if config.quick else SFT_STEPS
    # The paper's Section 4.2 evaluates once per epoch of 2, and Table 10 reports the end of training. Two
    # evaluations on 256 prompts cost what six on 64 do, and halve the measurement noise of the final increase
    # (about 0.08 initial-std units with 64 prompts x 4 samples), which is the size of the differences measured.
    rl_eval_every = max(1, sizes.rl_steps // RL_EVALS)
    rl_eval_prompts = sizes.rl_eval_prompts if config.quick else RL_EVAL_PROMPTS

    # One torch thread: sandbox-sized models train several times faster than on two busy cores (sft.torch_threads).
    with torch_threads(cpu_threads(1)):
        # 1. Initial policies, fine-tuned on differently distributed demonstrations (the paper: Pythia/Llama SFT).
        policies: dict[str, str] = {}
        for recipe in POLICIES:
            sft_inputs = {"sandbox": task.key, "mistakes": recipe.mistakes, "steps": sft_steps}

            def make_policy(directory: Path, recipe: PolicyRecipe = recipe) -> dict[str, Any]:
                if recipe.mistakes is None:
                    return {"model": str(task.policy_dir)}
                demo_prompts = read_table(task.demonstrations)["prompt"].astype(str).tolist()
                rows = demonstration_rows(
                    demo_prompts, getattr(sandbox_data, recipe.mistakes), seed=f"{task.seed}:{recipe.name}"
                )
                data = directory / "demonstrations.jsonl"
                data.write_text("".join(json.dumps(row) + "\n" for row in rows))
                # The sandbox recipe (a fresh tiny Llama, lr 5e-3, cosine), as its own policy was made.
                run_sft(SFTConfig(out=directory / "sft", data=data, max_steps=sft_steps, save_steps=0, progress=False))
                shutil.rmtree(directory / "sft" / "checkpoints", ignore_errors=True)
                return {"model": str(directory / "sft" / "model")}

            policies[recipe.name] = stages.run(f"policies/{recipe.name}", sft_inputs, make_policy)["model"]

        # 2. Every reward model under every policy: the Table 10 rows Var and on-policy accuracy, and the
        #    normalization statistics training uses (each reward model normalized per policy, as the paper).
        evaluations: dict[str, dict[str, Any]] = {}
        for name, policy in policies.items():
            evaluate_inputs: dict[str, Any] = {
                "policy": policy,
                "candidates": candidates,
                "ground_truth": ground_truth,
                "prompts": str(prompts),
                "pairs": str(pairs),
                "num_prompts": sizes.eval_num_prompts,
                "samples": sizes.eval_samples,
                "max_new_tokens": config.max_new_tokens,
            }

            def run_evaluation(directory: Path, policy: str = policy) -> dict[str, Any]:
                evaluate(
                    EvaluateConfig(
                        out=directory,
                        policy=policy,
                        reward_model=candidates,
                        ground_truth=ground_truth,
                        prompts=Path(prompts),
                        pairs=Path(pairs),
                        num_prompts=sizes.eval_num_prompts,
                        samples_per_prompt=sizes.eval_samples,
                        max_new_tokens=config.max_new_tokens,
                        trust_remote_code=config.trust_remote_code,
                        progress=False,
                    )
                )
                return {"directory": str(directory)}

            evaluations[name] = stages.run(f"evaluate/{name}", evaluate_inputs, run_evaluation)

        # 3. RLOO from each policy with each reward model, several seeds (the paper: 2 epochs, 3 runs).
        runs = [(p, spec, seed) for p in policies for spec in candidates for seed in range(sizes.seeds)]
        for policy_name, spec, seed in tqdm(runs, desc="RLOO runs", disable=not config.progress):
            rm_name = spec.split("=", 1)[0]
            rl_inputs: dict[str, Any] = {
                "evaluate": evaluations[policy_name]["fingerprint"],
                "teacher": spec,
                "seed": seed,
                "steps": sizes.rl_steps,
                "every": rl_eval_every,
                "lr": config.learning_rate,
                "kl": config.kl_coef,
                "eval_prompts": rl_eval_prompts,
            }

            def train_policy(
                directory: Path, policy_name: str = policy_name, spec: str = spec, seed: int = seed
            ) -> dict[str, Any]:
                return rl_run(
                    config,
                    sizes,
                    directory,
                    policy=policies[policy_name],
                    teacher=spec,
                    ground_truth=ground_truth,
                    prompts=str(prompts),
                    eval_prompts=str(eval_prompts),
                    normalization=evaluations[policy_name]["directory"],
                    seed=seed,
                    eval_every=rl_eval_every,
                    eval_num_prompts=rl_eval_prompts,
                )

            stages.run(f"rl/{policy_name}/{rm_name}/seed{seed}", rl_inputs, train_policy)

    # 4. Analysis and report, from the saved results only (`rmteacher report` redoes just this).
    record_timings(config.out, started)
    analysis = analyze(config.out)
    write_report(config.out, analysis)
    return analysis
