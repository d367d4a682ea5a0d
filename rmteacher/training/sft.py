"""Supervised fine-tuning on prompt/completion data with TRL's ``SFTTrainer``, loss on completion tokens only.

The paper's initial policies are SFT models (Section 4.1 and its appendix: TRL SFTTrainer with a completion-only
collator, Adam, constant LR, one epoch); the sandbox task makes its initial policy the same way. The trainer is used
as it is, configured here with settings that are sane on a CPU (no bf16 autocast, no activation checkpointing: on
CPU both only slow a small model down) and with its printing replaced by an optional tqdm bar on stderr.

``rmteacher sft`` (:mod:`rmteacher.commands.sft`) wraps it as a command with a run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from rmteacher.options import option
from rmteacher.training.runs import library_progress, progress_callback

__all__ = ["SFTOptions", "Scheduler", "sft"]

Scheduler = Literal["constant", "constant_with_warmup", "linear", "cosine"]


@dataclasses.dataclass(frozen=True)
class SFTOptions:
    """Options of one supervised fine-tune (the defaults are TRL's SFT defaults, except a constant LR as the paper)."""

    learning_rate: float = option(2e-5, help="peak learning rate of AdamW")
    num_epochs: float = option(1.0, help="passes over the training rows (ignored when max_steps > 0)")
    max_steps: int = option(-1, help="optimizer steps to run; -1 runs num_epochs instead")
    batch_size: int = option(8, help="rows per device per micro-step")
    gradient_accumulation_steps: int = option(1, help="micro-steps per optimizer step")
    lr_scheduler: Scheduler = option("constant", help="learning-rate schedule (the paper's SFT uses a constant LR)")
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
