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

import dataclasses
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rmteacher.loading import load_policy, parse_reward_spec
from rmteacher.metrics import NormalizationStats, fit_normalization, select_prompts
from rmteacher.options import check_options, option, seed_check
from rmteacher.rewards import Reward, RewardError, load_reward
from rmteacher.rundir import open_run, read_jsonl
from rmteacher.scoring import extra_columns
from rmteacher.tables import load_prompts, write_json_atomic
from rmteacher.threads import CPU_THREADS_HELP, cpu_threads, torch_threads
from rmteacher.training.rl_eval import PROXY, TRUTH, PolicyEvaluator, append_jsonl, make_callbacks
from rmteacher.training.runs import divergence_guard, last_complete_checkpoint, library_progress, resolved_config

__all__ = ["OUTPUTS", "RLConfig", "train_rl"]

#: Top-level entries an rl run writes.
OUTPUTS = ("checkpoint-*", "policy", "metrics.jsonl", "initial.json", "summary.json", "train.log", "runs")
#: Columns rmteacher adds to TRL's dataset; the reward wrapper takes them out before calling a reward.
_INTERNAL = ("prompt_id", "scaled", "user_prompt")


@dataclass
class RLConfig:
    """Options of `rmteacher rl`. Defaults are sized for the sandbox on a CPU; the paper's values are in the help."""

    out: Path = option(help="run directory: config.json, metrics.jsonl, TensorBoard logs, checkpoints, policy/")
    algo: Literal["rloo", "grpo"] = option("rloo", help="TRL trainer: RLOOTrainer or GRPOTrainer (the paper: RLOO)")
    policy: str | None = option(None, help="initial policy directory or hub id")
    reward_model: str | None = option(None, help="training reward NAME=PATH_OR_CALLABLE")
    ground_truth: str | None = option(None, help="ground-truth reward, logged with weight 0 (optional)")
    prompts: Path | None = option(
        None,
        help="training prompts S: JSONL/CSV/Parquet/datasets dir, plain or conversational; other columns reach "
        "the rewards as keyword arguments",
    )
    eval_prompts: Path | None = option(None, help="fixed evaluation prompts (same format as --prompts)")
    prompt_column: str = option("prompt", help="column of --prompts/--eval-prompts holding the prompt")
    system_prompt: str | None = option(None, help="system message put before every prompt (policy and rewards)")
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
    learning_rate: float | None = option(
        None,
        help="learning rate, constant (default: 5e-5 on the built-in sandbox task, tuned for its tiny policy; with "
        "your --policy, TRL's default, 1e-6; the paper: Adam at 1e-7 for 1B models)",
    )
    optimizer: Literal["adamw", "sgd"] = option(
        "adamw",
        help="adamw: TRL's default, as the paper's experiments; sgd: plain gradient descent, the setting of the "
        "paper's theory (gradient flow), where the update grows with the reward's variance instead of being "
        "rescaled away per parameter",
    )
    max_grad_norm: float = option(1.0, help="clip the gradient norm to this; 0: no clipping (TRL's default: 1)")
    max_new_tokens: int | None = option(
        None,
        help="most tokens per completion, in training and evaluation (default: 16 on the built-in sandbox task; with "
        "your --policy, TRL's default max_completion_length, 512; the paper: 512); a warning says when most "
        "completions run into it",
    )
    temperature: float = option(1.0, help="sampling temperature (the paper: 1)")
    max_steps: int = option(60, help="optimizer steps")
    eval_every: int = option(20, help="evaluate the policy every this many steps (and at steps 0 and the last)")
    eval_num_prompts: int = option(64, help="evaluation prompts (the paper: 500)")
    eval_samples: int = option(4, help="samples per evaluation prompt (the paper: 10)")
    save_every: int = option(20, help="checkpoint every this many steps")
    gradient_accumulation_steps: int = option(
        1,
        help="split each step's prompts x samples completions into this many micro-batches for the forward and "
        "backward passes (less memory, the same update; it must divide them)",
    )
    gradient_checkpointing: bool = option(
        False, help="recompute activations in the backward pass: less memory, slower (default: off; TRL's: on)"
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = option(
        None,
        help="weights' dtype for the policy, its reference copies and model reward models; auto: each checkpoint's "
        "(default: the policy in float32, as TRL loads a policy it trains, with bf16 autocast on a GPU; reward "
        "models in their checkpoint's dtype, transformers' default)",
    )
    device_map: str | None = option(
        None, help="passed to from_pretrained for the policy and model reward models, e.g. auto for a large model"
    )
    rm_max_length: int | None = option(
        None,
        help="most tokens a reward model reads; longer texts lose the start of the prompt, the completion is kept, "
        "and truncations are counted per step in metrics.jsonl (default: the model's max_position_embeddings)",
    )
    loss_type: str | None = option(None, help="GRPO loss_type passed to TRL (default: TRL's)")
    use_vllm: bool = option(False, help="TRL's vLLM generation (GPU only; needs `pip install trl[vllm]`)")
    seed: int = option(0, help="seed of training, evaluation sampling and data order")
    cpu_threads: int = option(1, help=CPU_THREADS_HELP)
    trust_remote_code: bool = option(False, help="allow models' own Python code")
    resume: bool = option(
        False, help="continue an interrupted run from its last checkpoint (or start if --out is empty); logs appended"
    )
    overwrite: bool = option(False, help="delete the run --out holds (only what it wrote) and start over")
    progress: bool = option(True, help="progress bars on stderr")

    def __post_init__(self) -> None:
        checks = [
            (0.0 <= self.scale_fraction <= 1.0, f"--scale-fraction must be in [0, 1]; got {self.scale_fraction}"),
            (self.scale_factor > 0, f"--scale-factor must be > 0; got {self.scale_factor}"),
            (self.kl_coef >= 0, f"--kl-coef must be >= 0; got {self.kl_coef}"),
            (self.samples_per_prompt >= 2, f"--samples-per-prompt must be >= 2 (a baseline needs two); got "
             f"{self.samples_per_prompt}"),
            (self.prompts_per_step >= 1, f"--prompts-per-step must be >= 1; got {self.prompts_per_step}"),
            (self.learning_rate is None or (math.isfinite(self.learning_rate) and self.learning_rate > 0),
             f"--learning-rate must be a finite number > 0; got {self.learning_rate}"),
            (math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0,
             f"--max-grad-norm must be a finite number >= 0 (0: no clipping); got {self.max_grad_norm}"),
            seed_check("--seed", self.seed),
            seed_check("--scale-seed", self.scale_seed),
            (self.cpu_threads >= 0, f"--cpu-threads must be >= 0; got {self.cpu_threads}"),
            (self.max_new_tokens is None or self.max_new_tokens >= 1,
             f"--max-new-tokens must be >= 1; got {self.max_new_tokens}"),
            (self.gradient_accumulation_steps >= 1,
             f"--gradient-accumulation-steps must be >= 1; got {self.gradient_accumulation_steps}"),
            ((self.prompts_per_step * self.samples_per_prompt) % max(self.gradient_accumulation_steps, 1) == 0,
             f"--gradient-accumulation-steps {self.gradient_accumulation_steps} must divide the step's "
             f"{self.prompts_per_step * self.samples_per_prompt} completions (--prompts-per-step "
             f"{self.prompts_per_step} x --samples-per-prompt {self.samples_per_prompt}) into equal micro-batches"),
            (self.rm_max_length is None or self.rm_max_length >= 8,
             f"--rm-max-length must be >= 8; got {self.rm_max_length}"),
            (1e-3 <= self.temperature <= 100, f"--temperature must be in [0.001, 100]; got {self.temperature}"),
            (self.max_steps >= 1, f"--max-steps must be >= 1; got {self.max_steps}"),
            (self.eval_every >= 1, f"--eval-every must be >= 1; got {self.eval_every}"),
            (self.eval_num_prompts >= 1, f"--eval-num-prompts must be >= 1; got {self.eval_num_prompts}"),
            (self.eval_samples >= 2, f"--eval-samples must be >= 2; got {self.eval_samples}"),
            (self.save_every >= 1, f"--save-every must be >= 1; got {self.save_every}"),
            (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one"),
        ]  # fmt: skip
        check_options(checks)


# ---------------------------------------------------------------------------------------------------- defaults

#: rl's defaults on the built-in sandbox task, tuned for its 188k-parameter policy. On a pretrained model the learning
#: rate is far too high (SmolLM2-135M-Instruct reached a KL of 2.58 to its start in 2 steps), so a policy of the
#: user's gets TRL's defaults instead (:func:`trl_default`).
SANDBOX_DEFAULTS: dict[str, Any] = {"learning_rate": 5e-5, "max_new_tokens": 16}
#: Options left unset (None) that take a default here, and TRL's config field each one is.
_TRL_FIELDS = {"learning_rate": "learning_rate", "max_new_tokens": "max_completion_length"}
#: The policy's dtype when --dtype is not given: TRL's for a policy it trains (``create_model_from_path``), where
#: updates of a small learning rate are not lost to 16-bit rounding (transformers' own default is the checkpoint's).
POLICY_DTYPE = "float32"
#: Share of completions cut at --max-new-tokens above which rl warns (most of them unfinished).
UNFINISHED_WARNING = 0.5


def trl_default(algo: str, name: str) -> Any:
    """TRL's default of the config field behind option ``name`` (``learning_rate``, ``max_new_tokens``) for ``algo``,
    read from the installed ``GRPOConfig``/``RLOOConfig``."""
    from trl import GRPOConfig, RLOOConfig

    fields = {f.name: f for f in dataclasses.fields(RLOOConfig if algo == "rloo" else GRPOConfig)}
    return fields[_TRL_FIELDS[name]].default


def resolve_defaults(config: RLConfig, *, sandbox: bool = False) -> tuple[RLConfig, dict[str, dict[str, Any]]]:
    """``config`` with its unset options filled, and each default taken: ``{option: {"value", "source"}}``.

    ``sandbox``: the run is on the built-in sandbox task (``rmteacher rl`` with no inputs), whose values
    (:data:`SANDBOX_DEFAULTS`) are tuned for it; otherwise TRL's defaults, as for any policy of the user's. An unset
    ``dtype`` stays unset (the reward models load in their checkpoint's dtype); the policy loads in
    :data:`POLICY_DTYPE`.
    """
    values: dict[str, Any] = {}
    defaults: dict[str, dict[str, Any]] = {}
    trainer = "RLOOConfig" if config.algo == "rloo" else "GRPOConfig"
    for name, trl_field in _TRL_FIELDS.items():
        if getattr(config, name) is not None:
            continue
        if sandbox:
            values[name], source = SANDBOX_DEFAULTS[name], "the sandbox task's default"
        else:
            values[name], source = trl_default(config.algo, name), f"TRL's {trainer}.{trl_field} default"
        defaults[name] = {"value": values[name], "source": source}
    if config.dtype is None:
        defaults["dtype"] = {
            "value": POLICY_DTYPE,
            "source": "for the policy, as TRL loads a policy it trains; reward models: their checkpoint's dtype",
        }
    return dataclasses.replace(config, **values), defaults


# ---------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class RLInputs:
    policy: str
    reward_model: str  # NAME=TARGET
    ground_truth: str | None
    prompts: Path
    eval_prompts: Path


def resolve_inputs(config: RLConfig) -> RLInputs:
    """The run's inputs. Raises ``ValueError`` naming what is missing (the command line fills the sandbox's)."""
    needed = {"--policy": config.policy, "--reward-model": config.reward_model, "--prompts": config.prompts,
              "--eval-prompts": config.eval_prompts}  # fmt: skip
    missing = [flag for flag, value in needed.items() if not value]
    if missing:
        raise ValueError(f"rl needs {', '.join(missing)}")
    assert config.policy and config.reward_model and config.prompts and config.eval_prompts
    return RLInputs(config.policy, config.reward_model, config.ground_truth, config.prompts, config.eval_prompts)


def load_normalization(run_dir: Path, policy: str, name: str, target: str) -> NormalizationStats:
    """Reads a reward's normalization statistics from an ``rmteacher evaluate`` run, checking it is the same setup.

    Raises:
        ValueError: when the run evaluated another policy, or has no reward of that name, or it was another model.
    """
    metrics_path, config_path = run_dir / "metrics.json", run_dir / "config.json"
    if not metrics_path.exists() or not config_path.exists():
        raise ValueError(f"--normalization {run_dir}: not an `rmteacher evaluate` run (metrics.json not found)")
    metrics = json.loads(metrics_path.read_text())
    try:
        saved = json.loads(config_path.read_text())
        evaluated_policy = saved["policy"] if "policy" in saved else saved["resolved_inputs"]["policy"]
        metrics["reward_models"]
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"--normalization {run_dir}: a damaged evaluate run ({type(error).__name__}: {error})"
        ) from None
    if not _same_model(evaluated_policy, policy):
        raise ValueError(
            f"--normalization {run_dir}: statistics of policy {evaluated_policy!r}, but this run trains {policy!r}; "
            "the normalization must come from the initial policy being trained"
        )
    specs = metrics.get("specs", {})
    named = str((metrics.get("ground_truth") or {}).get("name"))
    if name == TRUTH and name not in metrics["reward_models"] and named in metrics["reward_models"]:
        name = named  # the evaluate run named its ground truth (--ground-truth NAME=...)
    if name not in metrics["reward_models"]:
        raise ValueError(
            f"--normalization {run_dir}: no reward model {name!r}; it has {', '.join(metrics['reward_models'])}"
        )
    if not _same_model(specs.get(name, target), target):
        raise ValueError(
            f"--normalization {run_dir}: reward model {name!r} there is {specs[name]!r}, but this run trains with "
            f"{target!r}"
        )
    stats = NormalizationStats(**metrics["reward_models"][name]["normalization"])
    if not (math.isfinite(stats.mean) and math.isfinite(stats.std) and stats.std > 0):
        raise ValueError(f"--normalization {run_dir}: reward {name!r} has unusable statistics {stats.to_dict()}")
    return stats


def _same_model(a: str | None, b: str | None) -> bool:
    """Whether two policy or reward targets name the same thing: equal, or the same local path (``./m`` is ``m``)."""
    if a == b:
        return True
    if a is None or b is None:
        return False
    first, second = Path(a).expanduser(), Path(b).expanduser()
    return first.exists() and second.exists() and first.resolve() == second.resolve()


# ---------------------------------------------------------------------------------------------------- rewards


def _completion_text(completion: Any) -> str:
    """A completion as TRL passes it (a string, or the list holding the assistant's message) as its text."""
    if isinstance(completion, str):
        return completion
    return str(completion[-1]["content"])


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
        # The reward sees the user's prompt as the dataset gave it (a string or a conversation) and the completion's
        # text, as in `rmteacher evaluate`; the prompts table's other columns are its keyword arguments, per sample.
        user_prompts = kwargs.pop("user_prompt", prompts)
        columns = {k: v for k, v in kwargs.items() if k not in _INTERNAL}  # TRL's own kwargs pass, as TRL does
        truncated_before = getattr(reward, "num_truncated", None)  # a reward model's count of cut inputs
        raw = reward.score(list(user_prompts), [_completion_text(c) for c in completions], **columns)
        bad = ~np.isfinite(raw)
        if bad.any():
            i = int(np.argmax(bad))
            state = kwargs.get("trainer_state")
            step = "?" if state is None else state.global_step + 1
            raise RewardError(
                f"reward {reward.name!r} returned {raw[i]} at step {step} for prompt_id={prompt_id[i]!r} "
                f"(completion {_completion_text(completions[i])!r}); training stopped, the last checkpoint is kept"
            )
        values = (raw - stats.mean) / stats.std
        values = np.where(np.asarray(scaled, dtype=bool), values * factor, values)
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            log_metric(f"{name}/raw_mean", float(raw.mean()))
            if truncated_before is not None:  # texts longer than --rm-max-length, cut at the start of the prompt
                log_metric(f"{name}/truncated", float(reward.num_truncated - truncated_before))  # type: ignore[attr-defined]
        return [float(v) for v in values]

    reward_fn.__name__ = name
    return reward_fn


def train_rl(config: RLConfig, *, callbacks: Sequence[Any] = (), sandbox: bool = False) -> dict[str, Any]:
    """Runs RLOO/GRPO and writes the run directory; returns its summary (also in ``summary.json``): the first and
    last evaluation records, the zero-variance groups and the unfinished completions.

    ``callbacks``: extra ``transformers.TrainerCallback`` objects for the trainer (e.g. your own logging).
    ``sandbox``: the inputs are the built-in sandbox task's, so unset options take its defaults
    (:func:`resolve_defaults`); otherwise TRL's.
    """
    from accelerate import PartialState

    state = PartialState()
    inputs = resolve_inputs(config)
    config, defaults = resolve_defaults(config, sandbox=sandbox)
    resolved = resolved_config("rl", config, {k: v and str(v) for k, v in asdict(inputs).items()})
    resolved["config"]["defaults"] = defaults  # the values the options left unset took, and where from
    with (
        open_run(
            config.out, command="rl", identity=resolved["identity"], resume=config.resume, overwrite=config.overwrite,
            outputs=OUTPUTS, volatile=("max_steps",), is_main_process=state.is_main_process,
        ) as run,
        library_progress(config.progress),
        torch_threads(cpu_threads(config.cpu_threads)),
    ):  # fmt: skip
        summary = _train(config, inputs, run, state, resolved["config"], callbacks)
        summary["defaults"] = defaults
        if state.is_main_process:
            write_json_atomic(config.out / "summary.json", summary)
    return summary


def _train(
    config: RLConfig, inputs: RLInputs, run: Any, state: Any, resolved: dict[str, Any], callbacks: Sequence[Any]
) -> dict[str, Any]:
    from datasets import Dataset

    assert config.max_new_tokens is not None and config.learning_rate is not None  # resolve_defaults

    # 1. Prompts: the training set with the scaled flag (chosen among all of S, as the paper), the evaluation set.
    train = load_prompts(inputs.prompts, config.prompt_column)
    if len(train) < config.prompts_per_step:
        raise ValueError(
            f"--prompts {inputs.prompts}: {len(train)} prompts cannot fill one step of --prompts-per-step "
            f"{config.prompts_per_step}; lower --prompts-per-step or give more prompts"
        )
    scaled = np.zeros(len(train), dtype=bool)
    scaled[select_prompts(len(train), config.scale_fraction, seed=config.scale_seed)] = True
    eval_prompts = load_prompts(inputs.eval_prompts, config.prompt_column, argument="--eval-prompts")
    eval_rows = np.sort(np.random.RandomState(config.seed).permutation(len(eval_prompts))[: config.eval_num_prompts])
    eval_table = eval_prompts.iloc[eval_rows].reset_index(drop=True)

    # 2. Models and rewards, in --dtype and placed by --device-map. The reference copy here is the evaluations' KL
    #    baseline; TRL builds its own for the KL penalty (when --kl-coef > 0), in the policy's dtype.
    def model_options(**kwargs: Any) -> dict[str, Any]:
        return {"dtype": config.dtype, "device_map": config.device_map, "trust_remote_code": config.trust_remote_code,
                **kwargs}  # fmt: skip

    policy, tokenizer = load_policy(inputs.policy, **model_options(dtype=config.dtype or POLICY_DTYPE))
    reference, _ = load_policy(inputs.policy, **model_options(dtype=config.dtype or POLICY_DTYPE))
    # AdamW's step is about the learning rate per weight; plain SGD's scales with the gradient (None: not checked).
    below = frozen_share(policy, config.learning_rate) if config.optimizer == "adamw" else None
    if below is not None and below > 0.5:
        warnings.warn(
            f"the policy's weights are {str(policy.dtype).removeprefix('torch.')}, where AdamW's steps of about "
            f"--learning-rate {config.learning_rate:g} per weight round away for {below:.1%} of them: those never "
            "change. Train in float32 (leave --dtype out: bf16 autocast on a GPU, as TRL) or raise --learning-rate",
            stacklevel=2,
        )
    name, target = parse_reward_spec(inputs.reward_model)
    proxy = load_reward(
        f"{name}={target}", **model_options(system_prompt=config.system_prompt, max_length=config.rm_max_length)
    )
    truth = None
    if inputs.ground_truth:
        truth = load_reward(
            f"{TRUTH}={parse_reward_spec(inputs.ground_truth, argument='--ground-truth')[1]}",
            **model_options(argument="--ground-truth", system_prompt=config.system_prompt,
                            max_length=config.rm_max_length),
        )  # fmt: skip
    if state.is_main_process:
        write_json_atomic(config.out / "config.json", resolved)
    # An evaluation prompt that is also a training prompt gets the training prompt's scale.
    scaled_ids = set(train["prompt_id"][scaled])
    evaluator = PolicyEvaluator(
        tokenizer=tokenizer, reference=reference, prompts=eval_table["prompt"].tolist(),
        scaled=eval_table["prompt_id"].isin(scaled_ids).to_numpy(), proxy=proxy, truth=truth,
        samples_per_prompt=config.eval_samples, max_new_tokens=config.max_new_tokens,
        temperature=config.temperature, scale_factor=config.scale_factor, seed=config.seed,
        extra=extra_columns(eval_table), system_prompt=config.system_prompt,
    )  # fmt: skip

    # 3. Normalization statistics and the initial evaluation (step 0), saved so that a resumed run reuses them.
    log = config.out / "train.log"
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
        for key, value in stats.items():
            if not (math.isfinite(value.mean) and math.isfinite(value.std) and value.std > 0):
                raise ValueError(
                    f"rl: the {key} reward's normalization statistics are not usable (mean {value.mean}, std "
                    f"{value.std}, {source}); rewards must be finite, vary, and stay within float range"
                )
        initial = {"event": "eval", "step": 0, **evaluator(policy, stats, sampled), "proxy_increase": 0.0}
        if truth is not None:
            initial["ground_truth_increase"] = 0.0
        if state.is_main_process:
            write_json_atomic(initial_path, {"stats": {k: v.to_dict() for k, v in stats.items()}, "eval": initial,
                                             "normalization": source})  # fmt: skip
            append_jsonl(config.out / "metrics.jsonl", initial)
            with log.open("a") as handle:
                handle.write(
                    f"normalization {source}: " + json.dumps({k: v.to_dict() for k, v in stats.items()}) + "\n"
                )
    checkpoint = last_complete_checkpoint(config.out, run) if run.resumed else None
    if state.is_main_process and run.resumed:
        append_jsonl(config.out / "metrics.jsonl", {"event": "resume", "checkpoint": checkpoint, "notes": run.notes})

    # 4. TRL: the trainer as it is, fed our reward functions and callbacks.
    from rmteacher.trl import RewardVarianceCallback

    unfinished = unfinished_warning(config.max_new_tokens)
    unfinished.check(0, initial.get("unfinished_share"))
    monitor = RewardVarianceCallback()
    reward_funcs: list[Any] = [
        monitor.watch(training_reward(proxy, stats[PROXY], factor=config.scale_factor, name=PROXY))
    ]
    if truth is not None:
        reward_funcs.append(training_reward(truth, stats[TRUTH], factor=1.0, name=TRUTH))
    dataset = Dataset.from_list(trl_rows(train, scaled, tokenizer, system_prompt=config.system_prompt))
    args = trl_arguments(config, num_rewards=len(reward_funcs))
    trainer_cls = _trainer_class(config.algo)
    trainer = trainer_cls(
        model=policy,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[monitor, *make_callbacks(config.out, evaluator, stats, initial, config.eval_every,
                                            config.max_steps, lambda: state.is_main_process),
                   divergence_guard("rl"), unfinished, *callbacks],
    )  # fmt: skip
    _quiet_stdout(trainer, progress=config.progress and state.is_main_process)
    trainer.train(resume_from_checkpoint=checkpoint)
    if state.is_main_process:
        trainer.save_model(str(config.out / "policy"))
        tokenizer.save_pretrained(config.out / "policy")
    summary = summarize(read_jsonl(config.out / "metrics.jsonl"), initial, samples_per_prompt=config.samples_per_prompt)
    summary["flat_warning_step"] = monitor.warned_at_step
    summary["unfinished"]["warning_step"] = unfinished.warned_at_step
    summary["unfinished"]["max_new_tokens"] = config.max_new_tokens
    summary["policy_dtype"] = str(policy.dtype).removeprefix("torch.")
    summary["weights_below_learning_rate_resolution"] = below
    return summary


def frozen_share(model: Any, learning_rate: float) -> float:
    """Share of ``model``'s weights that a step of ``learning_rate`` leaves unchanged in their own dtype.

    Round to nearest drops an update smaller than half the spacing of the representable numbers at the weight,
    ``2**(e - 1) * eps`` for ``|w| = m * 2**e`` (``0.5 <= m < 1``). AdamW's first steps move every weight by about
    the learning rate, so in bfloat16 (``eps = 2**-7``) at 1e-6 every weight above ``2**-12`` in magnitude stays
    where it is. Exact zeros are not counted as frozen (any step moves them).
    """
    import torch

    frozen, total = 0, 0
    for parameter in model.parameters():
        eps = torch.finfo(parameter.dtype).eps
        for chunk in parameter.detach().reshape(-1).split(1 << 22):  # bounded float32 copies on a large model
            weights = chunk.float().abs()
            _, exponent = torch.frexp(weights)
            spacing = torch.ldexp(torch.full_like(weights, eps), exponent - 1)
            frozen += int(((weights > 0) & (learning_rate < spacing / 2)).sum())
        total += parameter.numel()
    return frozen / total if total else 0.0


def summarize(records: Sequence[dict[str, Any]], initial: dict[str, Any], *, samples_per_prompt: int) -> dict[str, Any]:
    """A run's summary from its ``metrics.jsonl`` records: the first and last evaluations, the zero-variance prompt
    groups and the rollouts they took, and the completions cut at ``--max-new-tokens``, over every step.

    A resumed run logs the steps after its checkpoint twice; the last record of each step counts.
    """
    steps = {r["step"]: r for r in records if r.get("event") == "train" and "reward" in r}
    evals = [r for r in records if r.get("event") == "eval"]
    groups = sum(int(r.get("reward_variance/groups", 0)) for r in steps.values())
    zero = sum(int(r.get("reward_variance/zero_variance_groups", 0)) for r in steps.values())
    rollouts = sum(int(r.get("reward_variance/zero_variance_rollouts", 0)) for r in steps.values())
    clipped = [r["completions/clipped_ratio"] for r in steps.values() if "completions/clipped_ratio" in r]
    return {
        "steps": len(steps),
        "initial": initial,
        "final": evals[-1] if evals else initial,
        "zero_variance": {
            "groups": zero,
            "of_groups": groups,
            "share": zero / groups if groups else None,
            "rollouts": rollouts,
            "of_rollouts": groups * samples_per_prompt,
        },
        "unfinished": {
            "initial_share": initial.get("unfinished_share"),
            "mean_clipped_ratio": float(np.mean(clipped)) if clipped else None,
            "max_clipped_ratio": float(np.max(clipped)) if clipped else None,
        },
    }


def unfinished_warning(max_new_tokens: int) -> Any:
    """A ``TrainerCallback`` that warns once when most completions (over :data:`UNFINISHED_WARNING`) run into
    ``--max-new-tokens`` without an end token: the rewards then judge cut text, and the policy learns from it.

    It reads TRL's ``completions/clipped_ratio`` at every logged step; ``check(0, share)`` tests the initial
    evaluation's share before training starts. ``warned_at_step`` says when it warned (None: never).
    """
    from transformers import TrainerCallback

    class UnfinishedCompletions(TrainerCallback):
        warned_at_step: int | None = None

        def check(self, step: int, share: float | None) -> None:
            if share is None or share <= UNFINISHED_WARNING or self.warned_at_step is not None:
                return
            self.warned_at_step = step
            where = "of the initial evaluation" if step == 0 else f"at step {step}"
            warnings.warn(
                f"{share:.0%} of the completions {where} ran into --max-new-tokens {max_new_tokens} without an end "
                "token, so the rewards judge cut text; raise --max-new-tokens (the share per step is "
                "completions/clipped_ratio in metrics.jsonl)",
                stacklevel=2,
            )

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and "completions/clipped_ratio" in logs:
                self.check(int(state.global_step), logs["completions/clipped_ratio"])

    return UnfinishedCompletions()


def trl_rows(
    train: Any, scaled: np.ndarray, tokenizer: Any, *, system_prompt: str | None = None
) -> list[dict[str, Any]]:
    """TRL's dataset rows: the prompt in TRL's conversational format when the policy has a chat template, its
    standard (plain text) format when it has none (Pythia), so TRL renders it as the policy expects; the user's own
    prompt rides along for the rewards, with the table's other columns."""
    from rmteacher.rendering import trl_prompt

    extra = extra_columns(train)
    rows = []
    for i, (pid, prompt, flag) in enumerate(zip(train["prompt_id"], train["prompt"], scaled, strict=True)):
        rows.append(
            {
                "prompt": trl_prompt(tokenizer, prompt, system_prompt=system_prompt),
                "user_prompt": prompt,
                "prompt_id": str(pid),
                "scaled": bool(flag),
                **{k: v[i] for k, v in extra.items()},
            }
        )
    return rows


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
    """TRL's config for the run; every setting that matters is explicit (TRL's defaults are tuned for GPUs).

    Options left unset take TRL's defaults (:func:`resolve_defaults`; ``rmteacher rl`` fills the sandbox's first).
    """
    import torch
    from trl import GRPOConfig, RLOOConfig

    config, _ = resolve_defaults(config)
    cuda = torch.cuda.is_available()
    completions = config.prompts_per_step * config.samples_per_prompt
    common: dict[str, Any] = {
        "output_dir": str(config.out),
        "max_steps": config.max_steps,
        # Counts completions, per micro-batch: a step's prompts x samples are generated at once (TRL's
        # steps_per_generation defaults to the accumulation steps) and go through the backward pass in
        # --gradient-accumulation-steps parts, so one optimizer step still sees --prompts-per-step prompts.
        "per_device_train_batch_size": completions // config.gradient_accumulation_steps,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "num_generations": config.samples_per_prompt,
        "max_completion_length": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": 1.0,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": "constant",  # the paper: constant learning rate
        "optim": "sgd" if config.optimizer == "sgd" else "adamw_torch_fused",  # TRL's default for adamw
        "max_grad_norm": config.max_grad_norm,  # HF Trainer: 0 turns clipping off
        "beta": config.kl_coef,
        "reward_weights": [1.0] + [0.0] * (num_rewards - 1),  # the ground truth is logged, never trained on
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": config.save_every,
        "report_to": ["tensorboard"],
        "seed": config.seed,
        "data_seed": config.seed,
        # bf16 autocast over float32 weights on a GPU, as TRL does; weights loaded in a 16-bit --dtype run as they are.
        "bf16": cuda and torch.cuda.is_bf16_supported() and config.dtype not in ("bfloat16", "float16"),
        "activation_checkpointing": config.gradient_checkpointing,  # transformers 5's name of gradient_checkpointing
        "use_cpu": not cuda,
        "disable_tqdm": not config.progress,
        "use_vllm": config.use_vllm,
        "trust_remote_code": config.trust_remote_code,  # TRL loads its reference model itself
    }
    if config.algo == "rloo":
        return RLOOConfig(**common)
    if config.loss_type is not None:
        common["loss_type"] = config.loss_type
    return GRPOConfig(**common)
