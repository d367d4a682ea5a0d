"""`rmteacher sft`: supervised fine-tuning with a run directory (TRL SFTTrainer, loss on completion tokens only).

Its defaults are the sandbox recipe (:data:`rmteacher.sandbox.builder.SFT_RECIPE`): with neither ``--model`` nor
``--data``, the sandbox tokenizer, a fresh tiny policy and the sandbox demonstrations, trained exactly as
``rmteacher.sandbox.build`` trains the sandbox's initial policy.

Run: ``rmteacher sft --out runs/sft`` (the sandbox policy), or ``rmteacher sft --model EleutherAI/pythia-160m
--data sft.jsonl --learning-rate 1e-6 --max-steps -1 --epochs 1 --lr-scheduler constant --batch-size 32
--max-length 1024 --out runs/sft`` (the paper's recipe on your prompt/completion data).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

from rmteacher.commands.gguf_inputs import convert_gguf_inputs
from rmteacher.commands.sandbox_defaults import sandbox_if_nothing_given
from rmteacher.options import check_options, option, seed_check
from rmteacher.rendering import has_chat_template, trl_prompt
from rmteacher.rundir import open_run, read_jsonl
from rmteacher.sandbox.builder import SFT_RECIPE
from rmteacher.tables import TableError, check_prompt, read_table, require_columns
from rmteacher.threads import CPU_THREADS_HELP, cpu_threads, torch_threads
from rmteacher.training.runs import (
    divergence_guard,
    last_complete_checkpoint,
    library_progress,
    metrics_logger,
    resolved_config,
)
from rmteacher.training.sft import Scheduler, SFTOptions, sft

__all__ = ["SFTConfig", "run_sft", "sft_rows"]

#: Top-level entries an sft run writes.
OUTPUTS = ("model", "checkpoints", "metrics.jsonl")


@dataclasses.dataclass
class SFTConfig:
    """Options of `rmteacher sft` (defaults: the sandbox recipe, which makes the sandbox's initial policy)."""

    out: Path = option(help="run directory for model/ (safetensors + tokenizer), config.json, metrics.jsonl")
    model: str | None = option(
        None, help="causal LM to fine-tune: a local directory or hub id (with no --data: a fresh tiny sandbox policy)"
    )
    data: Path | None = option(
        None,
        help="prompt/completion rows (TRL's formats: strings or lists of messages): JSONL/CSV/Parquet or a datasets "
        "directory (with no --model: the sandbox demonstrations)",
    )
    prompt_column: str = option("prompt", help="column of --data holding the prompt")
    system_prompt: str | None = option(
        None, help="system message put before every prompt (give the same to evaluate, train-rm and rl)"
    )
    completion_column: str = option("completion", help="column of --data holding the response to learn")
    learning_rate: float = option(SFT_RECIPE["learning_rate"], help="peak AdamW learning rate (the paper: 1e-6)")
    epochs: float = option(1.0, help="passes over the data when --max-steps is -1 (the paper: 1)")
    max_steps: int = option(400, help="optimizer steps; -1 runs --epochs instead (sandbox recipe: 400)")
    batch_size: int = option(SFT_RECIPE["batch_size"], help="rows per device per micro-step (the paper: 8, x4 acc.)")
    gradient_accumulation_steps: int = option(1, help="micro-steps per optimizer step")
    lr_scheduler: Scheduler = option(SFT_RECIPE["lr_scheduler"], help="learning-rate schedule (the paper: constant)")
    warmup_ratio: float = option(SFT_RECIPE["warmup_ratio"], help="share of the steps warming the LR up (paper: 0)")
    max_length: int = option(
        SFT_RECIPE["max_length"], help="tokens per prompt + completion; longer rows are an error (no silent cut)"
    )
    seed: int = option(0, help="seed of the fresh policy's initialization, the data order and dropout")
    save_steps: int = option(100, help="checkpoint every this many steps, for --resume; 0 saves none")
    cpu_threads: int = option(1, help=CPU_THREADS_HELP)
    trust_remote_code: bool = option(False, help="allow the model's own Python code (off: only transformers')")
    resume: bool = option(False, help="continue the run in --out from its last complete checkpoint")
    overwrite: bool = option(False, help="delete the run --out holds (only what it wrote) and start over")
    progress: bool = option(True, help="progress bar on stderr")

    def __post_init__(self) -> None:
        check_options(
            [
                (
                    math.isfinite(self.learning_rate) and self.learning_rate > 0,
                    f"--learning-rate must be a finite number > 0; got {self.learning_rate}",
                ),
                (self.max_steps == -1 or self.max_steps >= 1, f"--max-steps must be -1 or >= 1; got {self.max_steps}"),
                (
                    self.max_steps >= 1 or self.epochs > 0,
                    f"--epochs must be > 0 with --max-steps -1; got {self.epochs}",
                ),
                (self.batch_size >= 1, f"--batch-size must be >= 1; got {self.batch_size}"),
                (
                    self.gradient_accumulation_steps >= 1,
                    f"--gradient-accumulation-steps must be >= 1; got {self.gradient_accumulation_steps}",
                ),
                (0.0 <= self.warmup_ratio < 1.0, f"--warmup-ratio must be in [0, 1); got {self.warmup_ratio}"),
                (self.max_length >= 2, f"--max-length must be >= 2; got {self.max_length}"),
                (self.save_steps >= 0, f"--save-steps must be >= 0; got {self.save_steps}"),
                seed_check("--seed", self.seed),
                (self.cpu_threads >= 0, f"--cpu-threads must be >= 0; got {self.cpu_threads}"),
                (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one"),
                (
                    (self.model is None) == (self.data is None),
                    "--model and --data go together (with neither: the sandbox recipe); "
                    f"got --model {self.model!r}, --data {self.data}",
                ),
            ]
        )
        valid = ("constant", "constant_with_warmup", "linear", "cosine")
        if self.lr_scheduler not in valid:
            raise ValueError(f"--lr-scheduler must be one of {', '.join(valid)}; got {self.lr_scheduler!r}")

    def options(self, output_dir: Path) -> SFTOptions:
        """The optimization settings handed to :func:`rmteacher.training.sft.sft`."""
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


def sft_rows(
    frame: Any, tokenizer: Any, *, prompt_column: str, completion_column: str, system_prompt: str | None = None
) -> list[dict[str, Any]]:
    """Rows in TRL's prompt/completion formats, the prompt made by :func:`rmteacher.rendering.trl_prompt`:
    conversational (TRL applies the chat template) when the tokenizer has one, the plain text rmteacher samples from
    when it has none (a conversation of one user message, after an optional system message, becomes its text;
    longer conversations are an error). So the model is trained on the text it is later sampled and scored with.
    """
    templated = has_chat_template(tokenizer)
    rows: list[dict[str, Any]] = []
    for i, (prompt, completion) in enumerate(zip(frame[prompt_column], frame[completion_column], strict=True)):
        prompt = check_prompt(prompt, where=f"--data row {i + 1}, column {prompt_column!r}")
        if isinstance(completion, list | tuple) or hasattr(completion, "tolist"):
            completion = [dict(m) for m in list(completion)]
            if len(completion) != 1 or completion[0].get("role") != "assistant":
                raise TableError(f"--data row {i + 1}: a conversational completion must be one assistant message")
            completion = completion[0]["content"]
        if not isinstance(completion, str):
            raise TableError(f"--data row {i + 1}: column {completion_column!r} must hold text")
        try:
            rendered = trl_prompt(tokenizer, prompt, system_prompt=system_prompt)
        except ValueError as error:
            raise TableError(f"--data row {i + 1}, column {prompt_column!r}: {error}") from None
        reply = [{"role": "assistant", "content": completion}] if templated else completion
        rows.append({"prompt": rendered, "completion": reply})
    return rows


def run_sft(config: SFTConfig) -> str:
    """Fine-tunes, writes ``--out`` and returns the lines the CLI prints (empty on ranks > 0).

    Writes ``config.json`` (every option and the resolved inputs), ``metrics.jsonl`` (the trainer's log lines),
    ``checkpoints/`` (for ``--resume``) and ``model/`` (safetensors weights, config and tokenizer).
    """
    from accelerate import PartialState

    state = PartialState()
    start = time.perf_counter()
    task = sandbox_if_nothing_given("sft", {"--model": config.model, "--data": config.data}, progress=config.progress)
    data = task.demonstrations if task is not None else config.data
    convert_gguf_inputs("sft", {"--model": config.model}, progress=config.progress)
    assert data is not None
    inputs = {"model": config.model or "fresh sandbox policy", "data": str(data)}
    resolved = resolved_config("sft", config, inputs)
    with open_run(
        config.out, command="sft", identity=resolved["identity"], resume=config.resume, overwrite=config.overwrite,
        outputs=OUTPUTS, is_main_process=state.is_main_process,
    ) as run:  # fmt: skip
        frame = read_table(data)
        require_columns(frame, [config.prompt_column, config.completion_column], where=f"--data {data}")
        checkpoint = last_complete_checkpoint(config.out / "checkpoints", run) if run.resumed else None
        with library_progress(config.progress):
            if task is not None:  # exactly as rmteacher.sandbox.build makes its initial policy
                from rmteacher.sandbox.policy import new_policy
                from rmteacher.sandbox.tokenizer import build_tokenizer

                tokenizer = build_tokenizer()
                model = new_policy(tokenizer, seed=config.seed)
            else:
                from rmteacher.loading import load_policy

                model, tokenizer = load_policy(
                    config.model or "", device="cpu", trust_remote_code=config.trust_remote_code
                )
            rows = sft_rows(
                frame,
                tokenizer,
                prompt_column=config.prompt_column,
                completion_column=config.completion_column,
                system_prompt=config.system_prompt,
            )
            if state.is_main_process:
                from rmteacher.tables import write_json_atomic

                write_json_atomic(config.out / "config.json", resolved["config"])
            with torch_threads(cpu_threads(config.cpu_threads)):
                model = sft(
                    model,
                    tokenizer,
                    rows,
                    options=config.options(config.out / "checkpoints"),
                    callbacks=[
                        metrics_logger(config.out / "metrics.jsonl", resumed_from=checkpoint),
                        divergence_guard("sft"),
                    ],
                    resume_from_checkpoint=checkpoint,
                )
            if not state.is_main_process:
                return ""
            model.save_pretrained(config.out / "model")
            tokenizer.save_pretrained(config.out / "model")
    path = config.out / "metrics.jsonl"
    losses = [row["loss"] for row in (read_jsonl(path) if path.is_file() else []) if "loss" in row]
    last = f", last logged loss {losses[-1]:.4f}" if losses else ""
    return (
        f"sft: {len(rows)} rows, {time.perf_counter() - start:.1f} s{last}"
        + (f" (resumed from {Path(checkpoint).name})" if checkpoint else "")
        + f"\nWrote {config.out}/: model/ (safetensors + tokenizer), config.json, metrics.jsonl, checkpoints/"
    )
