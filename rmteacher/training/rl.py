"""`rmteacher rl`: RLOO or GRPO on TRL's trainers, tracking the ground truth and the landscape.

The trainers are TRL's own (``RLOOTrainer``, ``GRPOTrainer``), configured and fed reward functions and callbacks;
nothing of their loop is overridden. What rmteacher adds:

- the training reward is the chosen reward model or callable *normalized* by the initial policy's statistics
  (from an ``rmteacher evaluate`` run, or fitted on the fly), optionally multiplied by a factor on a seeded share
  of the prompts *after* normalization (the paper's perfectly accurate, low-variance reward model, Section 4.1);
- the ground truth rides along as a second reward function with weight 0: logged, never trained on;
- every step logs the within-prompt reward variance (:class:`rmteacher.trl.RewardVarianceCallback`), and every
  ``--eval-every`` steps the policy is sampled on a fixed evaluation set for the proxy and ground-truth reward
  increase and the KL to the initial policy; all of it goes to ``metrics.jsonl`` and TensorBoard.

Run: ``rmteacher rl --out runs/rl`` (the sandbox task) or ``rmteacher rl --algo grpo --policy ./sft
--reward-model rm=./rm --ground-truth gt=./gold --prompts train.jsonl --eval-prompts eval.jsonl
--normalization runs/eval --out runs/rl`` (``accelerate launch`` for several processes).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rmteacher.metrics import NormalizationStats, fit_normalization, select_prompts
from rmteacher.models import Reward, RewardError, load_policy, load_reward, parse_reward_spec, render_conversation
from rmteacher.options import check_options, option
from rmteacher.sampling import Completion, sample_completions
from rmteacher.tables import write_json_atomic

__all__ = ["PolicyEvaluator", "RLConfig", "run_rl", "train_rl"]

PROXY, TRUTH = "proxy", "ground_truth"


@dataclass
class RLConfig:
    """Options of `rmteacher rl`. Defaults are sized for the sandbox on a CPU; the paper's values are in the help."""

    out: Path = option(help="run directory: config.json, metrics.jsonl, TensorBoard logs, checkpoints, policy/")
    algo: Literal["rloo", "grpo"] = option("rloo", help="TRL trainer: RLOOTrainer or GRPOTrainer (the paper: RLOO)")
    policy: str | None = option(None, help="initial policy directory or hub id (default: the sandbox policy)")
    reward_model: str | None = option(
        None, help="training reward NAME=PATH_OR_CALLABLE (default: the sandbox's ground truth as `perfect`)"
    )
    ground_truth: str | None = option(
        None, help="ground-truth reward, logged with weight 0 (default: the sandbox's); 'none' to skip"
    )
    prompts: Path | None = option(
        None, help="training prompts S, JSONL/CSV/Parquet with a prompt column (default: sandbox)"
    )
    eval_prompts: Path | None = option(None, help="fixed evaluation prompts (default: the sandbox's eval prompts)")
    normalization: Path | None = option(
        None,
        help="an `rmteacher evaluate` run directory of this policy whose statistics normalize the rewards "
        "(default: fitted on the initial policy's samples of the evaluation prompts, said in the log)",
    )
    scale_fraction: float = option(0.0, help="share of training prompts whose normalized reward is scaled (paper: 0.5)")
    scale_factor: float = option(1.0, help="the factor for those prompts (the paper: 0.001)")
    scale_seed: int = option(8122, help="seed choosing the scaled prompts (the paper: 8122)")
    kl_coef: float = option(0.05, help="KL coefficient beta (the paper: 0.05 for RLOO; its GRPO had none in effect)")
    samples_per_prompt: int = option(4, help="completions per prompt, k (the paper: 2)")
    prompts_per_step: int = option(8, help="prompts per optimizer step (the paper: 32)")
    learning_rate: float = option(5e-5, help="Adam learning rate, constant (the paper: 1e-7 for 1B models)")
    max_new_tokens: int = option(16, help="most tokens per completion (the paper: 512)")
    temperature: float = option(1.0, help="sampling temperature (the paper: 1)")
    max_steps: int = option(60, help="optimizer steps")
    eval_every: int = option(20, help="evaluate the policy every this many steps (and at steps 0 and the last)")
    eval_num_prompts: int = option(64, help="evaluation prompts (the paper: 500)")
    eval_samples: int = option(4, help="samples per evaluation prompt (the paper: 10)")
    save_every: int = option(20, help="checkpoint every this many steps")
    loss_type: str | None = option(None, help="GRPO loss_type passed to TRL (default: TRL's)")
    use_vllm: bool = option(False, help="TRL's vLLM generation (GPU only; needs `pip install trl[vllm]`)")
    seed: int = option(0, help="seed of training, evaluation sampling and data order")
    trust_remote_code: bool = option(False, help="allow models' own Python code")
    resume: bool = option(
        False, help="continue an interrupted run from its last checkpoint (or start if --out is empty); logs appended"
    )
    overwrite: bool = option(False, help="delete what --out holds and start over")
    progress: bool = option(True, help="progress bars on stderr")

    def __post_init__(self) -> None:
        checks = [
            (0.0 <= self.scale_fraction <= 1.0, f"--scale-fraction must be in [0, 1]; got {self.scale_fraction}"),
            (self.scale_factor > 0, f"--scale-factor must be > 0; got {self.scale_factor}"),
            (self.kl_coef >= 0, f"--kl-coef must be >= 0; got {self.kl_coef}"),
            (self.samples_per_prompt >= 2, f"--samples-per-prompt must be >= 2 (a baseline needs two); got "
             f"{self.samples_per_prompt}"),
            (self.prompts_per_step >= 1, f"--prompts-per-step must be >= 1; got {self.prompts_per_step}"),
            (self.learning_rate > 0, f"--learning-rate must be > 0; got {self.learning_rate}"),
            (self.max_new_tokens >= 1, f"--max-new-tokens must be >= 1; got {self.max_new_tokens}"),
            (self.temperature > 0, f"--temperature must be > 0; got {self.temperature}"),
            (self.max_steps >= 1, f"--max-steps must be >= 1; got {self.max_steps}"),
            (self.eval_every >= 1, f"--eval-every must be >= 1; got {self.eval_every}"),
            (self.eval_num_prompts >= 1, f"--eval-num-prompts must be >= 1; got {self.eval_num_prompts}"),
            (self.eval_samples >= 2, f"--eval-samples must be >= 2; got {self.eval_samples}"),
            (self.save_every >= 1, f"--save-every must be >= 1; got {self.save_every}"),
            (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one"),
        ]  # fmt: skip
        check_options(checks)


# ---------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class RLInputs:
    policy: str
    reward_model: str  # NAME=TARGET
    ground_truth: str | None
    prompts: Path
    eval_prompts: Path


def resolve_inputs(config: RLConfig) -> RLInputs:
    """Fills what the user left out from the sandbox task (built once and cached)."""
    given = config.policy and config.reward_model and config.prompts and config.eval_prompts
    truth = None if (config.ground_truth or "").lower() == "none" else config.ground_truth
    if given:
        assert config.policy and config.reward_model and config.prompts and config.eval_prompts
        return RLInputs(config.policy, config.reward_model, truth, config.prompts, config.eval_prompts)
    from rmteacher import sandbox

    task = sandbox.build(progress=config.progress)
    if config.ground_truth is None:
        truth = sandbox.GROUND_TRUTH
    return RLInputs(
        policy=config.policy or str(task.policy_dir),
        reward_model=config.reward_model or f"perfect={sandbox.GROUND_TRUTH}",
        ground_truth=truth,
        prompts=config.prompts or task.train_prompts,
        eval_prompts=config.eval_prompts or task.eval_prompts,
    )


def load_normalization(run_dir: Path, policy: str, name: str, target: str) -> NormalizationStats:
    """Reads a reward's normalization statistics from an ``rmteacher evaluate`` run, checking it is the same setup.

    Raises:
        ValueError: when the run evaluated another policy, or has no reward of that name, or it was another model.
    """
    metrics_path, config_path = run_dir / "metrics.json", run_dir / "config.json"
    if not metrics_path.exists() or not config_path.exists():
        raise ValueError(f"--normalization {run_dir}: not an `rmteacher evaluate` run (metrics.json not found)")
    metrics = json.loads(metrics_path.read_text())
    evaluated_policy = json.loads(config_path.read_text())["resolved_inputs"]["policy"]
    if evaluated_policy != policy:
        raise ValueError(
            f"--normalization {run_dir}: statistics of policy {evaluated_policy!r}, but this run trains {policy!r}; "
            "the normalization must come from the initial policy being trained"
        )
    specs = metrics.get("specs", {})
    if name not in metrics["reward_models"]:
        raise ValueError(
            f"--normalization {run_dir}: no reward model {name!r}; it has {', '.join(metrics['reward_models'])}"
        )
    if specs.get(name, target) != target:
        raise ValueError(
            f"--normalization {run_dir}: reward model {name!r} there is {specs[name]!r}, but this run trains with "
            f"{target!r}"
        )
    stats = metrics["reward_models"][name]["normalization"]
    return NormalizationStats(**stats)


# ---------------------------------------------------------------------------------------------------- rewards


def _text(message_or_text: Any) -> str:
    """A prompt or completion as TRL passes it (a string, or a list of chat messages) as plain text."""
    if isinstance(message_or_text, str):
        return message_or_text
    return str(message_or_text[-1]["content"])


def training_reward(
    reward: Reward, stats: NormalizationStats, *, factor: float, name: str
) -> Callable[..., list[float]]:
    """TRL reward function: ``(r - mean) / std``, times ``factor`` on prompts flagged ``scaled`` (after normalizing).

    A non-finite reward stops training with the step, prompt and sample named; the last checkpoint stays.
    """

    def reward_fn(
        prompts: Sequence[Any],
        completions: Sequence[Any],
        prompt_id: Sequence[Any],
        scaled: Sequence[bool],
        **kwargs: Any,
    ) -> list[float]:
        raw = reward.score([_text(p) for p in prompts], [_text(c) for c in completions], **kwargs)
        bad = ~np.isfinite(raw)
        if bad.any():
            i = int(np.argmax(bad))
            state = kwargs.get("trainer_state")
            step = "?" if state is None else state.global_step + 1
            raise RewardError(
                f"reward {reward.name!r} returned {raw[i]} at step {step} for prompt_id={prompt_id[i]!r} "
                f"(completion {_text(completions[i])!r}); training stopped, the last checkpoint is kept"
            )
        values = (raw - stats.mean) / stats.std
        values = np.where(np.asarray(scaled, dtype=bool), values * factor, values)
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            log_metric(f"{name}/raw_mean", float(raw.mean()))
        return [float(v) for v in values]

    reward_fn.__name__ = name
    return reward_fn


# ------------------------------------------------------------------------------------------------ evaluation


@dataclass
class PolicyEvaluator:
    """Samples the policy on a fixed prompt set and measures proxy and ground-truth reward and the KL to the start.

    Rewards are normalized by the initial statistics (and the proxy scaled like in training), so the increase is in
    units of the initial policy's reward std, the paper's Figure 2. The KL is the k1 estimate
    ``mean over samples of sum_t (log pi(y_t) - log pi_0(y_t))`` on the sampled tokens, Figure 4's x axis.
    The sampling seed is the same at every evaluation (common random numbers) and the global RNG is restored.
    """

    tokenizer: Any
    reference: Any
    prompts: list[str]
    scaled: np.ndarray  # [num_prompts] bool
    proxy: Reward
    truth: Reward | None
    samples_per_prompt: int
    max_new_tokens: int
    temperature: float
    scale_factor: float
    seed: int

    def sample(self, model: Any) -> tuple[list[Completion], np.ndarray, np.ndarray | None]:
        """Samples and returns (completions, proxy raw [P, K], truth raw [P, K] or None)."""
        import torch

        training = model.training
        model.eval()
        with torch.random.fork_rng(devices=[]):
            completions = sample_completions(
                model, self.tokenizer, self.prompts, samples_per_prompt=self.samples_per_prompt,
                max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=self.seed, progress=False,
            )  # fmt: skip
        model.train(training)
        prompts = [self.prompts[c.prompt_index] for c in completions]
        texts = [c.text for c in completions]
        shape = (len(self.prompts), self.samples_per_prompt)
        proxy = self._score(self.proxy, prompts, texts).reshape(shape)
        truth = None if self.truth is None else self._score(self.truth, prompts, texts).reshape(shape)
        return completions, proxy, truth

    def _score(self, reward: Reward, prompts: list[str], texts: list[str]) -> np.ndarray:
        values = reward.score(prompts, texts)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.argmax(bad))
            raise RewardError(
                f"reward {reward.name!r} returned {values[i]} on evaluation prompt {prompts[i]!r}, sample "
                f"{i % self.samples_per_prompt} (completion {texts[i]!r}); rewards must be finite"
            )
        return values

    def kl(self, model: Any, completions: list[Completion]) -> float:
        """k1 estimate of KL(pi || pi_0) per sequence on the sampled completions."""
        import torch

        device = next(model.parameters()).device
        prompt_ids = [
            self.tokenizer(render_conversation(self.tokenizer, p), add_special_tokens=False)["input_ids"]
            for p in self.prompts
        ]
        sequences = [(prompt_ids[c.prompt_index], list(c.token_ids)) for c in completions if c.token_ids]
        total, count = 0.0, 0
        for start in range(0, len(sequences), 64):
            batch = sequences[start : start + 64]
            width = max(len(p) + len(c) for p, c in batch)
            ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            target = torch.zeros_like(ids, dtype=torch.bool)
            for row, (p, c) in enumerate(batch):
                ids[row, : len(p) + len(c)] = torch.tensor(p + c)
                mask[row, : len(p) + len(c)] = 1
                target[row, len(p) : len(p) + len(c)] = True
            ids, mask, target = ids.to(device), mask.to(device), target.to(device)
            with torch.inference_mode():
                logps = []
                for m in (model, self.reference):
                    logits = m(input_ids=ids, attention_mask=mask).logits[:, :-1].float() / self.temperature
                    logps.append(torch.log_softmax(logits, -1).gather(2, ids[:, 1:, None]).squeeze(2))
            per_token = (logps[0] - logps[1]) * target[:, 1:]
            total += float(per_token.sum())
            count += len(batch)
        return total / max(count, 1)

    def __call__(
        self,
        model: Any,
        stats: dict[str, NormalizationStats],
        sampled: tuple[list[Completion], np.ndarray, np.ndarray | None] | None = None,
    ) -> dict[str, float]:
        """The evaluation record; ``sampled`` reuses a :meth:`sample` of the same model."""
        completions, proxy, truth = sampled if sampled is not None else self.sample(model)
        proxy_norm = (proxy - stats[PROXY].mean) / stats[PROXY].std
        proxy_norm[self.scaled] *= self.scale_factor
        record = {"proxy_mean": float(proxy_norm.mean()), "proxy_raw_mean": float(proxy.mean())}
        if truth is not None:
            record["ground_truth_mean"] = float(((truth - stats[TRUTH].mean) / stats[TRUTH].std).mean())
            record["ground_truth_raw_mean"] = float(truth.mean())
        record["kl"] = self.kl(model, completions)
        record["mean_length"] = float(np.mean([c.num_tokens for c in completions]))
        return record


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def make_callbacks(
    out: Path, evaluator: PolicyEvaluator, stats: dict[str, NormalizationStats], initial: dict[str, float],
    eval_every: int, max_steps: int, is_main: Callable[[], bool],
) -> list[Any]:  # fmt: skip
    """The run's TRL callbacks: per-step metrics to metrics.jsonl, and the periodic policy evaluation."""
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        """Appends every log of the trainer to ``metrics.jsonl`` (never truncated; on resume the replayed steps
        appear again and the last record of a step wins)."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and is_main():
                _append_jsonl(out / "metrics.jsonl", {"event": "train", "step": state.global_step, **logs})

    class Evaluation(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            step = state.global_step
            if not is_main() or not (step % eval_every == 0 or step == max_steps):
                return
            record: dict[str, Any] = {"event": "eval", "step": step, **evaluator(model, stats)}
            record["proxy_increase"] = record["proxy_mean"] - initial["proxy_mean"]
            if "ground_truth_mean" in record:
                record["ground_truth_increase"] = record["ground_truth_mean"] - initial["ground_truth_mean"]
            _append_jsonl(out / "metrics.jsonl", record)

    return [MetricsFile(), Evaluation()]


# ---------------------------------------------------------------------------------------------------- the run


def _identity(config: RLConfig, inputs: RLInputs) -> dict[str, Any]:
    ignored = {"resume", "overwrite", "progress", "max_steps", "out"}
    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items() if k not in ignored}
    values["resolved_inputs"] = {k: (None if v is None else str(v)) for k, v in asdict(inputs).items()}
    return values


def prepare_run_dir(config: RLConfig, identity: dict[str, Any]) -> bool:
    """Creates or checks ``--out``; returns whether a checkpoint to resume from exists."""
    out = config.out
    if config.overwrite and out.exists():
        shutil.rmtree(out)
    saved = out / "config.json"
    if out.exists() and any(out.iterdir()):
        if not saved.exists():
            raise ValueError(f"--out {out}: not empty and not an rl run; pass --overwrite or another --out")
        previous = json.loads(saved.read_text())
        previous.pop("max_steps", None)
        if {k: v for k, v in previous.items() if k in identity} != identity:
            changed = sorted(k for k in identity if previous.get(k) != identity[k])
            raise ValueError(f"--out {out}: holds an rl run with different {', '.join(changed)}; pass --overwrite")
        if not config.resume:
            raise ValueError(f"--out {out}: holds a previous run; pass --resume to continue it or --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(saved, {**identity, "max_steps": config.max_steps})
    return any(out.glob("checkpoint-*"))


def _read_prompts(path: Path) -> Any:
    from rmteacher.evaluate import load_prompts

    return load_prompts(path, "prompt")


def train_rl(config: RLConfig, *, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Runs RLOO/GRPO and writes the run directory; returns the first and last evaluation records.

    ``callbacks``: extra ``transformers.TrainerCallback`` objects for the trainer (e.g. your own logging).
    """
    from accelerate import PartialState
    from datasets import Dataset

    state = PartialState()
    inputs = resolve_inputs(config)
    has_checkpoint = False
    if state.is_main_process:
        has_checkpoint = prepare_run_dir(config, _identity(config, inputs))
    state.wait_for_everyone()
    has_checkpoint = any(config.out.glob("checkpoint-*"))
    log = config.out / "train.log"

    # 1. Models and rewards.
    policy, tokenizer = load_policy(inputs.policy, trust_remote_code=config.trust_remote_code)
    reference, _ = load_policy(inputs.policy, trust_remote_code=config.trust_remote_code)
    name, target = parse_reward_spec(inputs.reward_model)
    proxy = load_reward(f"{name}={target}", trust_remote_code=config.trust_remote_code)
    truth = None
    if inputs.ground_truth:
        truth = load_reward(
            f"{TRUTH}={parse_reward_spec(inputs.ground_truth, argument='--ground-truth')[1]}",
            trust_remote_code=config.trust_remote_code,
            argument="--ground-truth",
        )

    # 2. Prompts: the training set with the scaled flag (chosen among all of S, as the paper), the evaluation set.
    train = _read_prompts(inputs.prompts)
    scaled = np.zeros(len(train), dtype=bool)
    scaled[select_prompts(len(train), config.scale_fraction, seed=config.scale_seed)] = True
    eval_prompts = _read_prompts(inputs.eval_prompts)
    eval_rows = np.sort(np.random.RandomState(config.seed).permutation(len(eval_prompts))[: config.eval_num_prompts])
    eval_table = eval_prompts.iloc[eval_rows]
    # An evaluation prompt that is also a training prompt gets the training prompt's scale.
    scaled_ids = set(train["prompt_id"][scaled])
    evaluator = PolicyEvaluator(
        tokenizer=tokenizer, reference=reference, prompts=eval_table["prompt"].tolist(),
        scaled=eval_table["prompt_id"].isin(scaled_ids).to_numpy(), proxy=proxy, truth=truth,
        samples_per_prompt=config.eval_samples, max_new_tokens=config.max_new_tokens,
        temperature=config.temperature, scale_factor=config.scale_factor, seed=config.seed,
    )  # fmt: skip

    # 3. Normalization statistics and the initial evaluation (step 0), saved so that a resumed run reuses them.
    initial_path = config.out / "initial.json"
    if initial_path.exists():
        saved = json.loads(initial_path.read_text())
        stats = {k: NormalizationStats(**v) for k, v in saved["stats"].items()}
        initial = saved["eval"]
    else:
        sampled = evaluator.sample(policy)
        _, proxy_raw, truth_raw = sampled
        if config.normalization is not None:
            stats = {PROXY: load_normalization(config.normalization, inputs.policy, name, target)}
            if truth is not None:
                truth_target = parse_reward_spec(inputs.ground_truth or "", argument="--ground-truth")[1]
                stats[TRUTH] = load_normalization(config.normalization, inputs.policy, TRUTH, truth_target)
            source = f"from {config.normalization}"
        else:
            stats = {PROXY: fit_normalization(proxy_raw)}
            if truth_raw is not None:
                stats[TRUTH] = fit_normalization(truth_raw)
            source = f"fitted on the fly on the initial policy's {proxy_raw.size} evaluation samples"
        initial = {"event": "eval", "step": 0, **evaluator(policy, stats, sampled), "proxy_increase": 0.0}
        if truth is not None:
            initial["ground_truth_increase"] = 0.0
        if state.is_main_process:
            write_json_atomic(initial_path, {"stats": {k: v.to_dict() for k, v in stats.items()}, "eval": initial,
                                             "normalization": source})  # fmt: skip
            _append_jsonl(config.out / "metrics.jsonl", initial)
            with log.open("a") as handle:
                handle.write(
                    f"normalization {source}: " + json.dumps({k: v.to_dict() for k, v in stats.items()}) + "\n"
                )

    # 4. TRL: the trainer as it is, fed our reward functions and callbacks.
    from rmteacher.trl import RewardVarianceCallback

    monitor = RewardVarianceCallback()
    reward_funcs: list[Any] = [
        monitor.watch(training_reward(proxy, stats[PROXY], factor=config.scale_factor, name=PROXY))
    ]
    if truth is not None:
        reward_funcs.append(training_reward(truth, stats[TRUTH], factor=1.0, name=TRUTH))
    dataset = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": text}], "prompt_id": str(pid), "scaled": bool(flag)}
            for pid, text, flag in zip(train["prompt_id"], train["prompt"], scaled, strict=True)
        ]
    )
    args = trl_arguments(config, num_rewards=len(reward_funcs))
    trainer_cls = _trainer_class(config.algo)
    trainer = trainer_cls(
        model=policy,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[monitor, *make_callbacks(config.out, evaluator, stats, initial, config.eval_every,
                                            config.max_steps, lambda: state.is_main_process), *callbacks],
    )  # fmt: skip
    _quiet_stdout(trainer, progress=config.progress and state.is_main_process)
    trainer.train(resume_from_checkpoint=bool(config.resume and has_checkpoint) or None)
    if state.is_main_process:
        trainer.save_model(str(config.out / "policy"))
        tokenizer.save_pretrained(config.out / "policy")
    records = [json.loads(line) for line in (config.out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("event") == "eval"]
    return {"final": evals[-1] if evals else initial, "initial": initial, "flat_warning_step": monitor.warned_at_step}


def _quiet_stdout(trainer: Any, *, progress: bool) -> None:
    """The library never prints: drop the trainer's stdout printers; show one stderr progress line per step."""
    from tqdm.auto import tqdm
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not progress:
        return

    class StepProgress(TrainerCallback):
        bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=args.output_dir, unit="step")

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if self.bar is not None and logs and "reward" in logs:
                self.bar.n = state.global_step
                keys = ("reward", "rewards/ground_truth/mean", "reward_variance/within_prompt", "kl")
                self.bar.set_postfix({k.split("/")[-1] if "/" in k else k: f"{logs[k]:.3g}" for k in keys if k in logs})

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    trainer.add_callback(StepProgress())


def _trainer_class(algo: str) -> Any:
    from trl import GRPOTrainer, RLOOTrainer

    return RLOOTrainer if algo == "rloo" else GRPOTrainer


def trl_arguments(config: RLConfig, *, num_rewards: int) -> Any:
    """TRL's config for the run; every setting that matters is explicit (TRL's defaults are tuned for GPUs)."""
    import torch
    from trl import GRPOConfig, RLOOConfig

    cuda = torch.cuda.is_available()
    common: dict[str, Any] = {
        "output_dir": str(config.out),
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.prompts_per_step * config.samples_per_prompt,  # counts completions
        "gradient_accumulation_steps": 1,
        "num_generations": config.samples_per_prompt,
        "max_completion_length": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": 1.0,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": "constant",  # the paper: constant learning rate
        "beta": config.kl_coef,
        "reward_weights": [1.0] + [0.0] * (num_rewards - 1),  # the ground truth is logged, never trained on
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": config.save_every,
        "report_to": ["tensorboard"],
        "seed": config.seed,
        "data_seed": config.seed,
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        "activation_checkpointing": False,
        "use_cpu": not cuda,
        "disable_tqdm": not config.progress,
        "use_vllm": config.use_vllm,
    }
    if config.algo == "rloo":
        return RLOOConfig(**common)
    if config.loss_type is not None:
        common["loss_type"] = config.loss_type
    return GRPOConfig(**common)


def run_rl(config: RLConfig) -> str:
    """The CLI's entry: trains and returns a summary to print (empty on ranks > 0)."""
    from accelerate import PartialState

    result = train_rl(config)
    if not PartialState().is_main_process:
        return ""
    final, initial = result["final"], result["initial"]
    lines = [
        f"{config.algo.upper()} for {config.max_steps} steps; rewards normalized by the initial policy's statistics.",
        f"proxy reward increase: {final['proxy_increase']:+.3f} (step 0 -> {final['step']})",
    ]
    if "ground_truth_increase" in final:
        lines.append(f"ground-truth reward increase: {final['ground_truth_increase']:+.3f}")
    lines.append(f"KL to the initial policy: {final['kl']:.3f} (at step 0: {initial['kl']:.3f})")
    if result["flat_warning_step"] is not None:
        lines.append(f"flat objective warning at step {result['flat_warning_step']} (see the log)")
    lines.append(f"Wrote {config.out}/: metrics.jsonl, config.json, initial.json, policy/, checkpoints, TensorBoard")
    return "\n".join(lines)
