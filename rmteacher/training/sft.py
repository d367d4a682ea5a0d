"""Supervised fine-tuning on prompt/completion data with TRL's ``SFTTrainer``, loss on completion tokens only.

The paper's initial policies are SFT models (spec §3, "SFT": TRL SFTTrainer with a completion-only collator, Adam,
constant LR, one epoch); the sandbox task makes its initial policy the same way. The trainer is used as it is,
configured here with settings that are sane on a CPU (no bf16 autocast, no activation checkpointing: on CPU
both only slow a small model down) and with its printing replaced by an optional tqdm bar on stderr.

``rmteacher sft`` (:class:`SFTConfig`, :func:`run_sft`) wraps it as a command with a run directory. Its defaults are
the sandbox recipe: the sandbox tokenizer, a fresh tiny policy and the sandbox demonstrations, trained exactly as
``rmteacher.sandbox.build`` trains the sandbox's initial policy. Run directories
(refusing to mix runs, ``metrics.jsonl``, resuming from the last checkpoint) are handled by
:mod:`rmteacher.training.runs`, shared with ``rmteacher train-rm``.

Run: ``rmteacher sft --out runs/sft`` (the sandbox policy), or ``rmteacher sft --model EleutherAI/pythia-160m
--data sft.jsonl --learning-rate 1e-6 --max-steps -1 --epochs 1 --lr-scheduler constant --batch-size 32
--max-length 1024 --out runs/sft`` (the paper's recipe on your prompt/completion data).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from rmteacher.options import check_options, option
from rmteacher.tables import read_table, require_columns
from rmteacher.training.runs import (
    CPU_THREADS_HELP,
    cpu_threads,
    last_checkpoint,
    library_progress,
    metrics_logger,
    prepare_run_dir,
    progress_callback,
    resolved_config,
    start_run_dir,
    torch_threads,
)

__all__ = [
    "SFTConfig",
    "SFTOptions",
    "run_sft",
    "sft",
    "sft_rows",
]


@dataclasses.dataclass(frozen=True)
class SFTOptions:
    """Options of one supervised fine-tune (the defaults are TRL's SFT defaults, except a constant LR as the paper)."""

    learning_rate: float = option(2e-5, help="peak learning rate of AdamW")
    num_epochs: float = option(1.0, help="passes over the training rows (ignored when max_steps > 0)")
    max_steps: int = option(-1, help="optimizer steps to run; -1 runs num_epochs instead")
    batch_size: int = option(8, help="rows per device per micro-step")
    gradient_accumulation_steps: int = option(1, help="micro-steps per optimizer step")
    lr_scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine"] = option(
        "constant", help="learning-rate schedule (the paper's SFT uses a constant LR)"
    )
    warmup_ratio: float = option(0.0, help="fraction of the steps spent warming the LR up from 0")
    weight_decay: float = option(0.0, help="AdamW weight decay")
    max_length: int | None = option(1024, help="tokens per prompt + completion; longer rows are cut at the end")
    seed: int = option(0, help="seed of the model's dropout and of the data order")
    output_dir: Path | None = option(None, help="the trainer's scratch directory; a temporary one when not given")
    progress: bool = option(True, help="show a progress bar with the loss on stderr")
    save_steps: int = option(0, help="save a checkpoint in output_dir every this many steps; 0 saves none")
    logging_steps: int = option(10, help="optimizer steps between two logged loss lines")

    def __post_init__(self) -> None:
        positive = {"learning_rate": self.learning_rate, "batch_size": self.batch_size}
        positive["gradient_accumulation_steps"] = self.gradient_accumulation_steps
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive; got {value!r}")
        if self.max_steps <= 0 and not self.num_epochs > 0:
            raise ValueError(f"num_epochs must be positive when max_steps <= 0; got {self.num_epochs!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1); got {self.warmup_ratio!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative; got {self.weight_decay!r}")
        if self.save_steps < 0 or self.logging_steps < 1:
            raise ValueError(
                f"save_steps must be >= 0 and logging_steps >= 1; got {self.save_steps!r}, {self.logging_steps!r}"
            )
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 or None; got {self.max_length!r}")
        valid = ("constant", "constant_with_warmup", "linear", "cosine")
        if self.lr_scheduler not in valid:
            raise ValueError(f"lr_scheduler must be one of {valid}; got {self.lr_scheduler!r}")


def _check_rows(train_rows: Sequence[Mapping[str, Any]]) -> None:
    if len(train_rows) == 0:
        raise ValueError("train_rows is empty; SFT needs at least one prompt/completion row")
    for i, row in enumerate(train_rows):
        missing = [key for key in ("prompt", "completion") if key not in row]
        if missing:
            raise ValueError(f"train_rows[{i}] lacks {missing}; rows need 'prompt' and 'completion', got {sorted(row)}")


def sft(
    model: Any,
    tokenizer: Any,
    train_rows: Sequence[Mapping[str, Any]],
    *,
    options: SFTOptions,
    callbacks: Sequence[Any] = (),
    resume_from_checkpoint: str | None = None,
) -> Any:
    """Fine-tunes ``model`` on ``train_rows`` with TRL's ``SFTTrainer``, the loss on completion tokens only.

    Args:
        model: a ``transformers`` causal LM; trained in place.
        tokenizer: its tokenizer, with a chat template when the rows are conversational.
        train_rows: ``[num_rows]`` mappings with ``prompt`` and ``completion``, both strings (plain text; EOS is
            appended to the completion) or both lists of chat messages (TRL's conversational format, rendered
            with the tokenizer's chat template).
        options: the optimization settings.
        callbacks: extra ``TrainerCallback`` objects (e.g. :func:`metrics_logger`).
        resume_from_checkpoint: a checkpoint directory of an earlier run with the same options to continue from.

    Returns:
        The fine-tuned model (the trainer's model, on the device it trained on).
    """
    _check_rows(train_rows)
    import torch
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    with contextlib.ExitStack() as stack:
        output_dir = options.output_dir
        if output_dir is None:
            output_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rmteacher-sft-")))
        stack.enter_context(library_progress(options.progress))
        config = SFTConfig(
            output_dir=str(output_dir),
            completion_only_loss=True,
            learning_rate=options.learning_rate,
            num_train_epochs=options.num_epochs,
            max_steps=options.max_steps,
            per_device_train_batch_size=options.batch_size,
            gradient_accumulation_steps=options.gradient_accumulation_steps,
            lr_scheduler_type=options.lr_scheduler,
            warmup_steps=options.warmup_ratio,  # transformers 5 reads a float in [0, 1) as a ratio
            weight_decay=options.weight_decay,
            max_length=options.max_length,
            seed=options.seed,
            # TRL defaults bf16 and activation checkpointing on; both are slower on CPU and bf16 changes numerics.
            bf16=False,
            activation_checkpointing=False,
            use_cpu=not torch.cuda.is_available(),
            save_strategy="steps" if options.save_steps > 0 else "no",
            save_steps=max(options.save_steps, 1),
            report_to="none",
            logging_steps=options.logging_steps,
            disable_tqdm=True,
        )
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list([dict(row) for row in train_rows]),
            processing_class=tokenizer,
        )
        # With disable_tqdm the trainer prints every log dict to stdout; library code never prints.
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        if options.progress:
            trainer.add_callback(progress_callback("sft"))
        for callback in callbacks:
            trainer.add_callback(callback)
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer.model


# --- Run directories shared by `rmteacher sft` and `rmteacher train-rm` -------------------------------------------

#: Options that may differ between a run and its resumption (a run directory may be moved); the rest is its identity.


# --- `rmteacher sft` ----------------------------------------------------------------------------------------------

Scheduler = Literal["constant", "constant_with_warmup", "linear", "cosine"]


@dataclasses.dataclass
class SFTConfig:
    """Options of `rmteacher sft` (defaults: the sandbox recipe, which makes the sandbox's initial policy)."""

    out: Path = option(help="run directory for model/ (safetensors + tokenizer), config.json, metrics.jsonl")
    model: str | None = option(
        None, help="causal LM to fine-tune: a local directory or hub id (default: a fresh tiny sandbox policy)"
    )
    data: Path | None = option(
        None, help="prompt/completion rows: JSONL/CSV/Parquet or a datasets directory (default: sandbox demonstrations)"
    )
    prompt_column: str = option("prompt", help="column of --data holding the user text")
    completion_column: str = option("completion", help="column of --data holding the response to learn")
    learning_rate: float = option(5e-3, help="peak AdamW learning rate (sandbox recipe; the paper: 1e-6)")
    epochs: float = option(1.0, help="passes over the data when --max-steps is -1 (the paper: 1)")
    max_steps: int = option(400, help="optimizer steps; -1 runs --epochs instead (sandbox recipe: 400)")
    batch_size: int = option(64, help="rows per device per micro-step (the paper: 8, with 4 accumulation steps)")
    gradient_accumulation_steps: int = option(1, help="micro-steps per optimizer step")
    lr_scheduler: Scheduler = option("cosine", help="learning-rate schedule (sandbox recipe; the paper: constant)")
    warmup_ratio: float = option(0.05, help="share of the steps warming the LR up (sandbox recipe; the paper: 0)")
    max_length: int = option(64, help="tokens per prompt + completion; longer rows are cut at the end")
    seed: int = option(0, help="seed of the fresh policy's initialization, the data order and dropout")
    save_steps: int = option(100, help="checkpoint every this many steps, for --resume; 0 saves none")
    cpu_threads: int = option(1, help=CPU_THREADS_HELP)
    trust_remote_code: bool = option(False, help="allow the model's own Python code (off: only transformers')")
    resume: bool = option(False, help="continue the run in --out from its last checkpoint")
    overwrite: bool = option(False, help="delete what --out holds and start over")
    progress: bool = option(True, help="progress bar on stderr")

    def __post_init__(self) -> None:
        checks = [
            (self.learning_rate > 0, f"--learning-rate must be > 0; got {self.learning_rate}"),
            (self.max_steps == -1 or self.max_steps >= 1, f"--max-steps must be -1 or >= 1; got {self.max_steps}"),
            (self.max_steps >= 1 or self.epochs > 0, f"--epochs must be > 0 with --max-steps -1; got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1; got {self.batch_size}"),
            (
                self.gradient_accumulation_steps >= 1,
                f"--gradient-accumulation-steps must be >= 1; got {self.gradient_accumulation_steps}",
            ),
            (0.0 <= self.warmup_ratio < 1.0, f"--warmup-ratio must be in [0, 1); got {self.warmup_ratio}"),
            (self.max_length >= 2, f"--max-length must be >= 2; got {self.max_length}"),
            (self.save_steps >= 0, f"--save-steps must be >= 0; got {self.save_steps}"),
            (self.seed >= 0, f"--seed must be >= 0; got {self.seed}"),
            (self.cpu_threads >= 0, f"--cpu-threads must be >= 0; got {self.cpu_threads}"),
            (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one"),
        ]
        check_options(checks)
        valid = ("constant", "constant_with_warmup", "linear", "cosine")
        if self.lr_scheduler not in valid:
            raise ValueError(f"--lr-scheduler must be one of {', '.join(valid)}; got {self.lr_scheduler!r}")

    def options(self, output_dir: Path) -> SFTOptions:
        """The optimization settings handed to :func:`sft`."""
        return SFTOptions(
            learning_rate=self.learning_rate,
            num_epochs=self.epochs,
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            lr_scheduler=self.lr_scheduler,
            warmup_ratio=self.warmup_ratio,
            max_length=self.max_length,
            seed=self.seed,
            output_dir=output_dir,
            progress=self.progress,
            save_steps=self.save_steps,
        )


def sft_rows(frame: Any, tokenizer: Any, *, prompt_column: str, completion_column: str) -> list[dict[str, Any]]:
    """Rows for :func:`sft`: chat messages when the tokenizer has a chat template, else plain text.

    The same rule as :func:`rmteacher.models.render_conversation`, so the model is trained on the text it is later
    sampled and scored with.
    """
    prompts = frame[prompt_column].astype(str).tolist()
    completions = frame[completion_column].astype(str).tolist()
    if getattr(tokenizer, "chat_template", None):
        return [
            {"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": c}]}
            for p, c in zip(prompts, completions, strict=True)
        ]
    return [{"prompt": p, "completion": c} for p, c in zip(prompts, completions, strict=True)]


def run_sft(config: SFTConfig) -> str:
    """`rmteacher sft`: fine-tunes, writes ``--out`` and returns the lines the CLI prints (empty on ranks > 0).

    Writes ``config.json`` (every option and the resolved inputs), ``metrics.jsonl`` (the trainer's log lines),
    ``checkpoints/`` (for ``--resume``) and ``model/`` (safetensors weights, config and tokenizer).
    """
    from accelerate import PartialState

    state = PartialState()
    start = time.perf_counter()
    task = None
    if config.model is None or config.data is None:
        from rmteacher import sandbox

        task = sandbox.build(progress=config.progress)
    data = config.data or (task.demonstrations if task else None)
    assert data is not None
    inputs = {"model": config.model or "fresh sandbox policy", "data": str(data)}
    resolved = resolved_config("sft", config, inputs)
    continuing = prepare_run_dir(config.out, resolved, resume=config.resume, overwrite=config.overwrite)
    state.wait_for_everyone()
    if state.is_main_process:
        start_run_dir(config.out, resolved, overwrite=config.overwrite)
    state.wait_for_everyone()

    frame = read_table(data)
    require_columns(frame, [config.prompt_column, config.completion_column], where=f"--data {data}")
    checkpoint = last_checkpoint(config.out / "checkpoints") if continuing else None
    with library_progress(config.progress):
        if config.model is None:  # exactly as rmteacher.sandbox.build makes its initial policy
            from rmteacher.sandbox.policy import new_policy
            from rmteacher.sandbox.tokenizer import build_tokenizer

            tokenizer = build_tokenizer()
            model = new_policy(tokenizer, seed=config.seed)
        else:
            from rmteacher.models import load_policy

            model, tokenizer = load_policy(config.model, device="cpu", trust_remote_code=config.trust_remote_code)
        rows = sft_rows(
            frame, tokenizer, prompt_column=config.prompt_column, completion_column=config.completion_column
        )
        with torch_threads(cpu_threads(config.cpu_threads)):
            model = sft(
                model,
                tokenizer,
                rows,
                options=config.options(config.out / "checkpoints"),
                callbacks=[metrics_logger(config.out / "metrics.jsonl", resumed_from=checkpoint)],
                resume_from_checkpoint=checkpoint,
            )
        if not state.is_main_process:
            return ""
        model.save_pretrained(config.out / "model")
        tokenizer.save_pretrained(config.out / "model")
    losses = [row["loss"] for row in _read_jsonl(config.out / "metrics.jsonl") if "loss" in row]
    last = f", last logged loss {losses[-1]:.4f}" if losses else ""
    return (
        f"sft: {len(rows)} rows, {time.perf_counter() - start:.1f} s{last}"
        + (f" (resumed from {Path(checkpoint).name})" if checkpoint else "")
        + f"\nWrote {config.out}/: model/ (safetensors + tokenizer), config.json, metrics.jsonl, checkpoints/"
    )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
