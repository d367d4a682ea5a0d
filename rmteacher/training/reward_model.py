"""`rmteacher train-rm`: a Bradley-Terry reward model from a mix of on- and off-policy preferences (spec §3, §4.1).

The pipeline reads top to bottom: resolve inputs (the sandbox task by default), check the run directory, assemble
the preference set (a seeded fraction F of the prompts get 2 samples of ``--policy``, stopped as ``rmteacher
evaluate`` stops them, labelled by ``--ground-truth``, which gets the ``--prompts`` table's other columns as keyword
arguments; the rest keep their off-policy pair; :mod:`rmteacher.training.preferences`), render and tokenize it
exactly as :class:`rmteacher.rewards.ModelReward` will score it (:mod:`rmteacher.rendering`, ``--system-prompt``
included), start the reward model from a causal LM (``AutoModelForSequenceClassification``, one label; the paper
starts from the SFT policy), train it with TRL's ``RewardTrainer`` as it is (loss
``-log σ(r_c - r_r) + c·mean((r_c + r_r)²)``, c = ``--center-rewards-coefficient``), and write the run directory:

    config.json            every option and the resolved inputs
    preferences.parquet    the training pairs: prompt_id, prompt, chosen, rejected, score_chosen, score_rejected,
                           source (on_policy / off_policy), tie
    metrics.jsonl          the trainer's log lines (loss, accuracy, margin, ...), appended across --resume
    checkpoints/           the trainer's checkpoints, for --resume
    model/                 the reward model (safetensors) and its tokenizer: ``--reward-model rm=<out>/model``
    summary.json           pair counts, steps, seconds and the last logged metrics

Run: ``rmteacher train-rm --on-policy-fraction 1.0 --out runs/rm-100`` (the sandbox task), or
``accelerate launch --num_processes 2 -m rmteacher.cli train-rm ...`` (``--batch-size`` counts pairs per process).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from rmteacher.loading import ModelLoadError, checkpoint_directory, quiet_loading
from rmteacher.options import STOP_HELP, check_options, decode_escapes, option, seed_check, stop_check
from rmteacher.rendering import encode_rendered, render_conversation
from rmteacher.rundir import open_run
from rmteacher.scoring import extra_columns
from rmteacher.tables import TableError, load_pairs, load_prompts, write_json_atomic, write_parquet_atomic
from rmteacher.threads import CPU_THREADS_HELP, cpu_threads, torch_threads
from rmteacher.training.preferences import (
    MIX_SEED,
    ON_POLICY,
    PREFERENCE_COLUMNS,
    label_pairs,
    mix_preferences,
    on_policy_rows,
)
from rmteacher.training.runs import (
    divergence_guard,
    last_complete_checkpoint,
    library_progress,
    metrics_logger,
    progress_callback,
    resolved_config,
)
from rmteacher.training.sft import Scheduler

#: Top-level entries a train-rm run writes.
OUTPUTS = ("model", "checkpoints", "metrics.jsonl", "preferences.parquet", "summary.json")

__all__ = [
    "OUTPUTS",
    "TrainRMConfig",
    "encode_preferences",
    "reward_model_from_causal_lm",
    "train_reward_model",
]


@dataclasses.dataclass
class TrainRMConfig:
    """Options of `rmteacher train-rm` (defaults: the built-in sandbox task, sized to train in seconds on a CPU)."""

    out: Path = option(help="run directory: model/, preferences.parquet, metrics.jsonl, config.json, summary.json")
    on_policy_fraction: float = option(
        0.0,
        help="share F of the prompts whose pair is 2 samples of --policy labelled by --ground-truth (the paper: "
        "1, 0.75, 0.5, 0.25, 0)",
    )
    policy: str | None = option(
        None, help="policy sampling the on-policy pairs: a directory or hub id (default: sandbox)"
    )
    init: str | None = option(
        None, help="causal LM the reward model starts from (default: --policy, as the paper starts from the SFT policy)"
    )
    pairs: Path | None = option(
        None,
        help="off-policy preference pairs: JSONL/CSV/Parquet or a datasets directory with prompt, chosen, rejected "
        "(prompt_id optional), or prompt_id, chosen, rejected referring to --prompts (default: sandbox)",
    )
    prompts: Path | None = option(
        None,
        help="prompts table the pairs' prompt_ids refer to (as in evaluate): plain or conversational prompts; its "
        "other columns (e.g. answer) reach --ground-truth as keyword arguments when labelling on-policy pairs",
    )
    prompt_column: str = option("prompt", help="column of --prompts holding the prompt")
    system_prompt: str | None = option(
        None,
        help="system message put before every prompt: for the policy's samples, the ground truth, and in the "
        "reward model's training texts (give the same to evaluate and rl)",
    )
    stop: list[str] = option(default_factory=list, help=STOP_HELP + "; ends an on-policy sample, as in evaluate")
    ground_truth: str | None = option(
        None, help="reward labelling the on-policy pairs, NAME=PATH_OR_CALLABLE or PATH_OR_CALLABLE (default: sandbox)"
    )
    mix_seed: int = option(MIX_SEED, help="seed of the permutation choosing the on-policy prompts (the paper: 182)")
    ties: Literal["drop", "keep"] = option(
        "drop", help="on-policy pairs whose samples tie under the ground truth: drop them, or keep them in sample order"
    )
    max_new_tokens: int = option(16, help="most tokens per on-policy sample (the paper: 512)")
    temperature: float = option(1.0, help="sampling temperature of the on-policy samples (the paper: 1)")
    prompts_per_batch: int = option(64, help="prompts per generate() call when sampling")
    learning_rate: float = option(1e-3, help="peak AdamW learning rate (sandbox-sized; the paper: 5e-7)")
    epochs: float = option(4.0, help="passes over the preference set when --max-steps is -1 (the paper: 1)")
    max_steps: int = option(-1, help="optimizer steps; -1 runs --epochs instead")
    batch_size: int = option(32, help="pairs per process per micro-step (the paper: 32 in all)")
    gradient_accumulation_steps: int = option(1, help="micro-steps per optimizer step")
    lr_scheduler: Scheduler = option("constant", help="learning-rate schedule (the paper: constant)")
    warmup_ratio: float = option(0.0, help="share of the steps warming the LR up")
    weight_decay: float = option(0.0, help="AdamW weight decay")
    center_rewards_coefficient: float = option(
        0.01, help="weight of mean((r_chosen + r_rejected)^2) in the loss, centering rewards at 0 (the paper: 0.01)"
    )
    max_length: int = option(64, help="most tokens of a rendered prompt + response; longer pairs are left out")
    seed: int = option(0, help="seed of sampling, the reward head's initialization and the data order")
    save_steps: int = option(50, help="checkpoint every this many steps, for --resume")
    logging_steps: int = option(5, help="optimizer steps between two lines of metrics.jsonl")
    cpu_threads: int = option(1, help=CPU_THREADS_HELP)
    trust_remote_code: bool = option(False, help="allow models' own Python code (off: only transformers' classes)")
    resume: bool = option(False, help="continue the run in --out from its last checkpoint")
    overwrite: bool = option(False, help="delete what --out holds and start over")
    progress: bool = option(True, help="progress bars on stderr")

    def __post_init__(self) -> None:
        checks = [
            (
                0.0 <= self.on_policy_fraction <= 1.0,
                f"--on-policy-fraction must be in [0, 1]; got {self.on_policy_fraction}",
            ),
            (self.max_new_tokens >= 1, f"--max-new-tokens must be >= 1; got {self.max_new_tokens}"),
            (self.temperature > 0, f"--temperature must be > 0; got {self.temperature}"),
            (self.prompts_per_batch >= 1, f"--prompts-per-batch must be >= 1; got {self.prompts_per_batch}"),
            (
                math.isfinite(self.learning_rate) and self.learning_rate > 0,
                f"--learning-rate must be a finite number > 0; got {self.learning_rate}",
            ),
            (self.max_steps == -1 or self.max_steps >= 1, f"--max-steps must be -1 or >= 1; got {self.max_steps}"),
            (self.max_steps >= 1 or self.epochs > 0, f"--epochs must be > 0 with --max-steps -1; got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1; got {self.batch_size}"),
            (
                self.gradient_accumulation_steps >= 1,
                f"--gradient-accumulation-steps must be >= 1; got {self.gradient_accumulation_steps}",
            ),
            (0.0 <= self.warmup_ratio < 1.0, f"--warmup-ratio must be in [0, 1); got {self.warmup_ratio}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0; got {self.weight_decay}"),
            (
                self.center_rewards_coefficient >= 0,
                f"--center-rewards-coefficient must be >= 0; got {self.center_rewards_coefficient}",
            ),
            (self.max_length >= 2, f"--max-length must be >= 2; got {self.max_length}"),
            seed_check("--seed", self.seed),
            seed_check("--mix-seed", self.mix_seed),
            (self.save_steps >= 1, f"--save-steps must be >= 1; got {self.save_steps}"),
            (self.logging_steps >= 1, f"--logging-steps must be >= 1; got {self.logging_steps}"),
            (self.cpu_threads >= 0, f"--cpu-threads must be >= 0; got {self.cpu_threads}"),
            (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one"),
            (
                self.prompts is not None or self.prompt_column == "prompt",
                f"--prompt-column {self.prompt_column!r} names a column of --prompts, and no --prompts was given",
            ),
            stop_check("--stop", self.stop),
        ]
        check_options(checks)
        if self.ties not in ("drop", "keep"):
            raise ValueError(f"--ties must be drop or keep; got {self.ties!r}")


def resolve_inputs(config: TrainRMConfig) -> dict[str, str]:
    """The run's inputs: the reward model starts from ``--init``, or ``--policy`` (as the paper starts from the SFT
    policy); on-policy pairs need ``--policy`` and ``--ground-truth``.

    Raises:
        ValueError: what is missing, naming the flags.
    """
    on_policy = config.on_policy_fraction > 0
    needed = [("--pairs", config.pairs), ("--init or --policy", config.init or config.policy)]
    if on_policy:
        needed += [("--policy (for on-policy pairs)", config.policy), ("--ground-truth", config.ground_truth)]
    missing = [flag for flag, value in needed if not value]
    if missing:
        raise ValueError(f"train-rm needs {', '.join(missing)}")
    policy = config.policy or ""
    return {
        "policy": policy,
        "init": config.init or policy,
        "pairs": str(config.pairs),
        "prompts": str(config.prompts) if config.prompts else "",
        "ground_truth": config.ground_truth or "",
    }


def load_preference_data(config: TrainRMConfig, inputs: dict[str, str]) -> tuple[pd.DataFrame, dict[str, list[Any]]]:
    """The off-policy pairs, and per pair the prompts table's other columns (TRL's reward kwargs; empty without
    ``--prompts``).

    Raises:
        TableError: a pair whose ``prompt_id`` is not in ``--prompts``, or whose own prompt differs from it (pairs
            without a ``prompt_id`` column cannot refer to ``--prompts``).
    """
    if not inputs["prompts"]:
        return load_pairs(inputs["pairs"]), {}
    prompts = load_prompts(inputs["prompts"], config.prompt_column)
    pairs = load_pairs(inputs["pairs"], prompts)
    row_of = {pid: row for row, pid in enumerate(prompts["prompt_id"].tolist())}
    for i, (pid, prompt) in enumerate(zip(pairs["prompt_id"].tolist(), pairs["prompt"].tolist(), strict=True)):
        if pid not in row_of or prompts["prompt"].iloc[row_of[pid]] != prompt:
            raise TableError(
                f"--pairs {inputs['pairs']}: row {i + 1} (prompt_id {pid!r}) does not refer to a prompt of --prompts "
                f"{inputs['prompts']}; give the pairs a prompt_id column holding --prompts' ids"
            )
    extra = extra_columns(prompts)
    return pairs, {k: [v[row_of[pid]] for pid in pairs["prompt_id"]] for k, v in extra.items()}


def sample_on_policy_pairs(
    config: TrainRMConfig,
    inputs: dict[str, str],
    prompts: list[Any],
    ids: list[Any],
    extra: dict[str, list[Any]],
) -> Any:
    """Two samples of the policy per prompt, labelled by the ground truth (:func:`label_pairs`), across processes.

    Sampling stops as in ``rmteacher evaluate`` (every end token of the generation config, ``--stop``); the ground
    truth gets the prompt as the table gives it, each sample's text and ``extra`` (per prompt) as keyword arguments.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    from rmteacher.loading import load_policy
    from rmteacher.rewards import load_reward
    from rmteacher.sampling import sample_completions
    from rmteacher.scoring import score_rows

    state = PartialState()
    if not inputs["ground_truth"]:
        raise ValueError("--on-policy-fraction > 0 needs --ground-truth to label the on-policy pairs")
    truth = load_reward(
        inputs["ground_truth"],
        trust_remote_code=config.trust_remote_code,
        argument="--ground-truth",
        system_prompt=config.system_prompt,
    )
    policy, tokenizer = load_policy(inputs["policy"], trust_remote_code=config.trust_remote_code)
    completions = sample_completions(
        policy,
        tokenizer,
        prompts,
        samples_per_prompt=2,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        seed=config.seed,
        prompts_per_batch=config.prompts_per_batch,
        rank=state.process_index,
        world_size=state.num_processes,
        progress=config.progress,
        system_prompt=config.system_prompt,
        stop=[decode_escapes(s) for s in config.stop],
    )
    del policy
    rows = [(c.prompt_index, c.sample_id, c.text) for c in completions]
    if state.num_processes > 1:
        rows = list(gather_object(rows))
    texts = {(i, k): text for i, k, text in rows}
    first = [texts[i, 0] for i in range(len(prompts))]  # [num_prompts]
    second = [texts[i, 1] for i in range(len(prompts))]
    where = pd.DataFrame({"prompt_id": ids * 2, "sample_id": [0] * len(ids) + [1] * len(ids)})
    kwargs = {k: list(v) * 2 for k, v in extra.items()}
    scores = score_rows(truth, prompts * 2, first + second, where, state, kwargs)  # [2 * num_prompts]
    return label_pairs(first, second, scores[: len(prompts)], scores[len(prompts) :])


def assemble_preferences(
    config: TrainRMConfig, inputs: dict[str, str], pairs: pd.DataFrame, extra: dict[str, list[Any]]
) -> pd.DataFrame:
    """The preference set: ``pairs`` with a seeded share ``--on-policy-fraction`` of rows made on-policy
    (``extra``: per pair, the ground truth's keyword arguments)."""
    rows = on_policy_rows(len(pairs), config.on_policy_fraction, seed=config.mix_seed)
    if len(rows) == 0:
        return mix_preferences(pairs, rows, pd.DataFrame(columns=PREFERENCE_COLUMNS), ties=config.ties)
    chosen = pairs.iloc[rows]
    labelled = sample_on_policy_pairs(
        config,
        inputs,
        chosen["prompt"].tolist(),
        chosen["prompt_id"].tolist(),
        {k: [v[i] for i in rows] for k, v in extra.items()},
    )
    return mix_preferences(pairs, rows, labelled, ties=config.ties)


def encode_preferences(
    prefs: pd.DataFrame, tokenizer: Any, *, max_length: int, system_prompt: str | None = None
) -> tuple[dict[str, list[Any]], int]:
    """Token ids of each pair's chosen and rejected conversation, as :class:`rmteacher.rewards.ModelReward` scores them.

    Both sides are rendered with :func:`rmteacher.rendering.render_conversation` (with ``system_prompt``) and
    tokenized with :func:`rmteacher.rendering.encode_rendered`, as scoring does, so the reward model is trained on
    exactly the ids it later reads; TRL skips its own tokenization for datasets that already hold
    ``chosen_ids``/``rejected_ids``.

    Returns:
        ``{"chosen_ids": [...], "rejected_ids": [...]}`` for the pairs whose sides both fit in ``max_length``
        tokens, and the number of pairs left out for being longer.
    """
    prompts = prefs["prompt"].tolist()
    sides = {}
    for side in ("chosen", "rejected"):
        texts = [
            render_conversation(tokenizer, p, c, system_prompt=system_prompt)
            for p, c in zip(prompts, prefs[side].tolist(), strict=True)
        ]
        sides[f"{side}_ids"] = encode_rendered(tokenizer, texts)
    fits = [max(len(c), len(r)) <= max_length for c, r in zip(sides["chosen_ids"], sides["rejected_ids"], strict=True)]
    kept = {name: [ids for ids, ok in zip(values, fits, strict=True) if ok] for name, values in sides.items()}
    return kept, fits.count(False)


def reward_model_from_causal_lm(path: str, tokenizer: Any, *, seed: int, trust_remote_code: bool = False) -> Any:
    """``AutoModelForSequenceClassification`` with one label from a causal LM's weights (a fresh, seeded head).

    The config is loaded first and set to one label, which also replaces a saved two-label ``id2label``;
    ``from_pretrained(path, num_labels=1)`` would warn that ``num_labels=1`` contradicts it. The new head and the
    unused LM head are expected and not reported; a missing weight of the body is an error.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, set_seed
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    directory = checkpoint_directory(path, kind="--init")  # a .gguf file: its converted directory
    try:
        model_config = AutoConfig.from_pretrained(directory, trust_remote_code=trust_remote_code)
        model_config.num_labels = 1
        model_config.pad_token_id = tokenizer.pad_token_id
        set_seed(seed)
        with suppress_seqcls_warning(), quiet_loading():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                directory,
                config=model_config,
                use_safetensors=True,
                trust_remote_code=trust_remote_code,
                output_loading_info=True,
            )
    except (OSError, ValueError, KeyError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"--init {path!r}: cannot be loaded as a reward model ({reason})") from None
    body = f"{model.base_model_prefix}."
    missing = sorted(k for k in info.get("missing_keys", ()) if k.startswith(body))
    if missing:
        raise ModelLoadError(
            f"--init {path!r}: the checkpoint lacks {len(missing)} weight(s) of the model's body, e.g. {missing[0]!r}; "
            "give a causal LM or reward model of this architecture"
        )
    return model


def _reward_config(config: TrainRMConfig) -> Any:
    import torch
    from trl import RewardConfig

    return RewardConfig(
        output_dir=str(config.out / "checkpoints"),
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # transformers 5 reads a float in [0, 1) as a ratio
        weight_decay=config.weight_decay,
        center_rewards_coefficient=config.center_rewards_coefficient or None,
        max_length=None,  # long pairs are left out (and counted) by encode_preferences
        seed=config.seed,
        # TRL's defaults are bf16 autocast and activation checkpointing, both slower on a CPU (and bf16 changes
        # numerics); keep them for CUDA.
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        activation_checkpointing=False,
        use_cpu=not torch.cuda.is_available(),
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=config.logging_steps,
        report_to="none",
        disable_tqdm=True,
    )


def train_reward_model(config: TrainRMConfig) -> dict[str, Any]:
    """Runs `rmteacher train-rm` and writes ``--out``; returns the summary written to ``summary.json``."""
    from accelerate import PartialState
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import RewardTrainer

    from rmteacher.loading import load_tokenizer

    state = PartialState()
    start = time.perf_counter()
    inputs = resolve_inputs(config)
    resolved = resolved_config("train-rm", config, inputs)
    # config.json records --stop as sampling uses it (escapes decoded) and as typed.
    resolved["config"]["stop"] = [decode_escapes(s) for s in config.stop]
    resolved["config"]["stop_as_typed"] = config.stop
    with (
        open_run(
            config.out, command="train-rm", identity=resolved["identity"], resume=config.resume,
            overwrite=config.overwrite, outputs=OUTPUTS, is_main_process=state.is_main_process,
        ) as run,
        library_progress(config.progress),
        torch_threads(cpu_threads(config.cpu_threads)),
    ):  # fmt: skip
        # 1. The preference set, made once: a resumed run trains on the set it saved.
        pairs, extra = load_preference_data(config, inputs)
        saved = config.out / "preferences.parquet"
        if run.resumed and saved.is_file():
            prefs = pd.read_parquet(saved)
        else:
            prefs = assemble_preferences(config, inputs, pairs, extra)
            if prefs.empty:
                raise ValueError(
                    f"--on-policy-fraction {config.on_policy_fraction}: no preference pair is left: every on-policy "
                    f"pair tied under the ground truth and --ties {config.ties} left them out; pass --ties keep, "
                    "a lower --on-policy-fraction, or a ground truth that tells the policy's samples apart"
                )
            if state.is_main_process:
                write_json_atomic(config.out / "config.json", resolved["config"])
                write_parquet_atomic(prefs, saved)
        state.wait_for_everyone()

        # 2. Tokens, as the reward will be scored; the model from the causal LM.
        tokenizer = load_tokenizer(inputs["init"], kind="--init", trust_remote_code=config.trust_remote_code)
        encoded, too_long = encode_preferences(
            prefs, tokenizer, max_length=config.max_length, system_prompt=config.system_prompt
        )
        if not encoded["chosen_ids"]:
            raise ValueError(f"--max-length {config.max_length}: every one of the {len(prefs)} pairs is longer")
        model = reward_model_from_causal_lm(
            inputs["init"], tokenizer, seed=config.seed, trust_remote_code=config.trust_remote_code
        )

        # 3. TRL's RewardTrainer as it is; our callbacks only log and stop a diverged run.
        checkpoint = last_complete_checkpoint(config.out / "checkpoints", run) if run.resumed else None
        trainer = RewardTrainer(
            model=model,
            args=_reward_config(config),
            train_dataset=Dataset.from_dict(encoded),
            processing_class=tokenizer,
        )
        trainer.remove_callback(PrinterCallback)  # with disable_tqdm it prints every log dict; the library never prints
        trainer.remove_callback(ProgressCallback)
        if config.progress:
            trainer.add_callback(progress_callback("train-rm"))
        trainer.add_callback(metrics_logger(config.out / "metrics.jsonl", resumed_from=checkpoint))
        trainer.add_callback(divergence_guard("train-rm"))
        trainer.train(resume_from_checkpoint=checkpoint)

        # 4. The model and its tokenizer, loadable with rmteacher.rewards.load_reward.
        trainer.save_model(str(config.out / "model"))
        if not state.is_main_process:
            return {}
        tokenizer.save_pretrained(config.out / "model")
    logs = [row for row in trainer.state.log_history if "loss" in row]
    summary = {
        "pairs": len(encoded["chosen_ids"]),
        "on_policy_pairs": int((prefs["source"] == ON_POLICY).sum()),
        "off_policy_pairs": int((prefs["source"] != ON_POLICY).sum()),
        "tied_pairs_dropped": int(len(pairs) * config.on_policy_fraction) - int((prefs["source"] == ON_POLICY).sum()),
        "tied_pairs_kept": int(prefs["tie"].sum()),
        "pairs_over_max_length": too_long,
        "steps": trainer.state.global_step,
        "resumed_from": Path(checkpoint).name if checkpoint else None,
        "seconds": round(time.perf_counter() - start, 2),
        "last_log": logs[-1] if logs else {},
    }
    write_json_atomic(config.out / "summary.json", summary)
    return summary
