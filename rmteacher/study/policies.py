"""The paper's Section 4.2 on the sandbox task, as resumable stages (:mod:`rmteacher.study.stages`).

The paper (Section 4.2, camera-ready Table 10) trains several initial policies with the same four reward models and
finds that which reward model teaches best depends on the policy, and follows the reward variance each induces under
that policy rather than its accuracy (Theorem 3: the same reward model can be a good teacher for one policy and a
poor one for another). Here, on the sandbox task:

1. initial policies: the sandbox's (SFT on its mixed demonstrations) and two more fine-tuned the same way on
   differently distributed demonstrations, whose mistakes break the answer's length/letters
   (:func:`rmteacher.sandbox.data.length_mistakes`) or only its order
   (:func:`rmteacher.sandbox.data.order_mistakes`); ``policies.json`` in the run directory lists them;
2. evaluation of every reward model under every policy (reward variance, on- and off-policy accuracy;
   ``rmteacher evaluate``), whose statistics also normalize the rewards in training, as the paper;
3. RLOO from each policy with each reward model over several seeds (``rmteacher rl``);
4. the Table 10 analogue, the figures and the report (:mod:`rmteacher.report.policies`).

The reward models default to :data:`rmteacher.sandbox.rewards.POLICY_STUDY_REWARDS`: two perfectly accurate ones
curved in opposite ways (``strict``, ``lenient``) and two blind to one aspect of the answer (``letters_only``,
``order_only``); ``--reward-model`` replaces them. Run: ``rmteacher study --design policies --out runs/policies``
(~12 min on 2 CPU cores) or ``... --quick`` (~1 min); from Python, :func:`study_policies` with explicit inputs.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmteacher.study.stages import (
    Sizes,
    Stages,
    StudyConfig,
    dtype_input,
    prepare_run_dir,
    record_machine,
    record_timings,
    require_inputs,
    rl_run,
)
from rmteacher.study.workers import Launcher, StageJob, run_stages, study_workers
from rmteacher.tables import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from rmteacher.sandbox import SandboxTask

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
    PolicyRecipe(
        "mixed", None, "the sandbox's policy: SFT on ordering mistakes (swaps, copies, sorted prefixes) without vowels"
    ),
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


def fine_tune(rows: Sequence[dict[str, str]], *, steps: int, seed: int, scratch: Path, out: Path) -> None:
    """A fresh sandbox policy fine-tuned on prompt/completion ``rows`` with the sandbox's recipe, as its own initial
    policy was made (a tiny Llama from scratch, lr 5e-3, cosine); saves model and tokenizer to ``out``."""
    from rmteacher.sandbox.builder import SFT_RECIPE
    from rmteacher.sandbox.policy import new_policy
    from rmteacher.sandbox.tokenizer import build_tokenizer
    from rmteacher.training.sft import SFTOptions, sft

    tokenizer = build_tokenizer()
    conversations = [  # TRL's conversational format, rendered with the sandbox's chat template
        {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "completion": [{"role": "assistant", "content": row["completion"]}],
        }
        for row in rows
    ]
    options = SFTOptions(**SFT_RECIPE, max_steps=steps, seed=seed, output_dir=scratch, progress=False)
    model = sft(new_policy(tokenizer, seed=seed), tokenizer, conversations, options=options)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.rmtree(scratch, ignore_errors=True)


def study_policies(
    config: StudyConfig,
    *,
    task: SandboxTask,
    prompts: Path,
    eval_prompts: Path,
    pairs: Path,
    ground_truth: str,
) -> dict[str, Any]:
    """Runs every stage that is not complete, then the analysis and the report; returns the analysis.

    Args:
        config: the options; its ``policy``/``prompts``/... fields are not read (the inputs below are).
        task: the built sandbox, whose policy and demonstrations make the initial policies.
        prompts: policy-gradient prompts S.
        eval_prompts: prompts to evaluate policies along training.
        pairs: off-policy preference pairs (off-policy accuracy).
        ground_truth: the ground-truth reward ``PATH_OR_CALLABLE``.

    Raises:
        ValueError: a missing input.
    """
    from rmteacher.evaluate import EvaluateConfig, evaluate
    from rmteacher.loading import parse_reward_spec
    from rmteacher.report.policies import analyze, write_report
    from rmteacher.sandbox import data as sandbox_data
    from rmteacher.sandbox.rewards import POLICY_STUDY_REWARDS
    from rmteacher.tables import read_table
    from rmteacher.threads import cpu_threads, torch_threads

    require_inputs(
        "study_policies", task=task, prompts=prompts, eval_prompts=eval_prompts, pairs=pairs, ground_truth=ground_truth
    )
    prepare_run_dir(config)
    sizes = Sizes.of(config)
    stages = Stages(config.out)
    started = time.perf_counter()
    workers, _ = study_workers(config.workers, quick=config.quick, policy=str(task.policy_dir))
    record_machine(config.out, cpu_threads=config.cpu_threads, workers=workers)
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
                write_text_atomic(directory / "demonstrations.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
                model = directory / "sft" / "model"
                fine_tune(rows, steps=sft_steps, seed=task.seed, scratch=directory / "sft-scratch", out=model)
                return {"model": str(model)}

            policies[recipe.name] = stages.run(f"policies/{recipe.name}", sft_inputs, make_policy)["model"]
        # The report reads the policies, in the design's order, from the run directory.
        write_json_atomic(
            config.out / "policies.json",
            {"policies": [{"name": r.name, "description": r.description, "model": policies[r.name]} for r in POLICIES]},
        )

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
                "prompt_column": config.prompt_column,
                "system_prompt": config.system_prompt,
                **dtype_input(config),
            }

            def run_evaluation(directory: Path, policy: str = policy) -> dict[str, Any]:
                evaluate(
                    EvaluateConfig(
                        out=directory,
                        policy=policy,
                        reward_model=candidates,
                        ground_truth=ground_truth,
                        prompts=Path(prompts),
                        prompt_column=config.prompt_column,
                        system_prompt=config.system_prompt,
                        pairs=Path(pairs),
                        num_prompts=sizes.eval_num_prompts,
                        samples_per_prompt=sizes.eval_samples,
                        max_new_tokens=config.max_new_tokens,
                        dtype=config.dtype,
                        device_map=config.device_map,
                        cpu_threads=config.cpu_threads,
                        trust_remote_code=config.trust_remote_code,
                        progress=False,
                    )
                )
                return {"directory": str(directory)}

            evaluations[name] = stages.run(f"evaluate/{name}", evaluate_inputs, run_evaluation)

        # 3. RLOO from each policy with each reward model, several seeds (the paper: 2 epochs, 3 runs). A run is
        #    named as `rmteacher evaluate` names the reward model (parse_reward_spec), where the report looks for it.
        #    Independent runs: in worker processes (rmteacher.study.workers).
        seeds = range(sizes.seeds)
        jobs = []
        for policy_name, spec, seed in [(p, spec, seed) for p in policies for spec in candidates for seed in seeds]:
            rl_inputs: dict[str, Any] = {
                "evaluate": evaluations[policy_name]["fingerprint"],
                "teacher": spec,
                "seed": seed,
                "steps": sizes.rl_steps,
                "every": rl_eval_every,
                "lr": config.learning_rate,
                "kl": config.kl_coef,
                "eval_prompts": rl_eval_prompts,
                **dtype_input(config),
            }
            train_policy = functools.partial(
                rl_run,
                config,
                sizes,
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
            rm_name, _ = parse_reward_spec(spec)
            jobs.append(StageJob(f"rl/{policy_name}/{rm_name}/seed{seed}", rl_inputs, train_policy))
        run_stages(
            stages, jobs, workers=workers, desc="RLOO runs", progress=config.progress, launcher=Launcher.of(config)
        )

    # 4. Analysis and report, from the saved results only (`rmteacher report` redoes just this).
    record_timings(config.out, started)
    analysis = analyze(config.out)
    write_report(config.out, analysis)
    return analysis
