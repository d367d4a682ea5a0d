"""`rmteacher select-prompts`: keep the RL prompts on which a reward has something to teach the policy.

Reads an ``rmteacher evaluate`` run (its samples and scores; nothing is resampled), computes per prompt the reward's
variance normalized as training normalizes it (Section 3: the reward's mean and std over all the initial policy's
samples, the statistics ``rl --normalization`` reads), its mean and the number of samples, keeps the prompts by one
rule (:class:`rmteacher.selection.KeepRule`) and writes them in the prompts' own format, ready for ``rmteacher rl
--prompts`` and TRL. Given ``--policy`` and ``--prompts`` instead of a run, it first samples through
:func:`rmteacher.evaluate.evaluate`. The pipeline reads top to bottom: (sample), load, compute, keep, noise, write.

Run: ``rmteacher select-prompts runs/eval --reward exact --out selected.jsonl`` or
``rmteacher select-prompts --policy ./sft --reward exact=pkg.mod:fn --prompts prompts.jsonl --out selected.jsonl``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from rmteacher.metrics import NormalizationStats, normalize, reward_variance
from rmteacher.options import check_options, option, output_file_check, seed_check
from rmteacher.selection import (
    MIN_RELIABLE_SAMPLES,
    KeepRule,
    expected_wrongly_dropped,
    fit_beta_prior,
    flat_probability,
    keep_prompts,
    kept_counts,
    posterior_variance,
    split_half,
    successes,
    zero_variance,
)
from rmteacher.tables import (
    PROMPT_ID,
    check_prompt,
    read_table,
    reward_matrix,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)
from rmteacher.threads import CPU_THREADS_HELP

__all__ = ["ADDED_COLUMNS", "SelectPromptsConfig", "select_prompts", "summary_path"]

#: Columns added to every kept prompt: normalized variance, mean reward (as the run stores it), samples.
ADDED_COLUMNS = ("reward_variance", "reward_mean", "num_samples")
#: Columns of evaluate's samples.parquet that describe a sample, not its prompt.
_SAMPLE_COLUMNS = ("sample_id", "completion", "num_tokens", "finished")
_SUFFIXES = (".jsonl", ".parquet")


@dataclass
class SelectPromptsConfig:
    """Options of `rmteacher select-prompts`: from an `rmteacher evaluate` run (EVAL_RUN), or sampling first with
    --policy and --prompts."""

    reward: str = option(
        help="the reward whose variance selects: its NAME in EVAL_RUN; with --policy, NAME=PATH_OR_CALLABLE "
        "(a sequence-classification model or a module:function in TRL's reward form)"
    )
    out: Path = option(
        help="selected prompts, .jsonl or .parquet, in the prompts' own format plus reward_variance, reward_mean, "
        "num_samples; a summary goes beside it as <name>.summary.json"
    )
    eval_run: Path | None = option(
        None, positional=True, help="an `rmteacher evaluate` run directory (samples.parquet, metrics.json)"
    )
    min_variance: float | None = option(
        None, help="keep prompts whose normalized reward variance is >= this (default rule: drop zero variance)"
    )
    top_fraction: float | None = option(
        None, help="keep this fraction of prompts, in (0, 1], with the largest variance (ties: prompt order)"
    )
    policy: str | None = option(None, help="sample first: the policy directory or hub id (excludes EVAL_RUN)")
    prompts: Path | None = option(None, help="with --policy: the prompts (JSONL/CSV/Parquet/datasets dir)")
    prompt_column: str = option("prompt", help="with --policy: the column of --prompts holding the prompt")
    system_prompt: str | None = option(None, help="with --policy: system message before every prompt")
    num_prompts: int | None = option(None, help="with --policy: a seeded subset of the prompts (default: all)")
    samples_per_prompt: int = option(8, help="with --policy: K samples per prompt (>= 4 for a trustworthy zero)")
    max_new_tokens: int = option(16, help="with --policy: most tokens per sample")
    temperature: float = option(1.0, help="with --policy: sampling temperature")
    seed: int = option(237, help="with --policy: seed of the prompt subset and of sampling")
    samples_out: Path | None = option(
        None, help="with --policy: the evaluate run directory it writes (default: <out without suffix>-samples)"
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = option(
        None, help="with --policy: weights' dtype (default: transformers' default)"
    )
    device: str | None = option(None, help="with --policy: torch device (default: cuda if available, else cpu)")
    cpu_threads: int = option(1, help=CPU_THREADS_HELP)
    trust_remote_code: bool = option(False, help="with --policy: allow models' own Python code")
    resume: bool = option(False, help="with --policy: reuse the samples already in --samples-out")
    overwrite: bool = option(False, help="with --policy: delete what --samples-out holds and sample again")
    progress: bool = option(True, help="progress bars on stderr")

    def __post_init__(self) -> None:
        check_options(
            [
                (
                    self.out.suffix.lower() in _SUFFIXES,
                    f"--out {self.out}: the file must end in .jsonl or .parquet (TRL's dataset formats)",
                ),
                output_file_check("--out", self.out),
                (
                    self.min_variance is None or self.top_fraction is None,
                    f"--min-variance {self.min_variance} and --top-fraction {self.top_fraction} exclude each other; "
                    "give one rule (or neither: drop the prompts with zero variance)",
                ),
                (
                    self.min_variance is None or (math.isfinite(self.min_variance) and self.min_variance > 0),
                    f"--min-variance must be a finite number > 0; got {self.min_variance} (--top-fraction 1 keeps "
                    "every prompt)",
                ),
                (
                    self.top_fraction is None or 0 < self.top_fraction <= 1,
                    f"--top-fraction must be in (0, 1]; got {self.top_fraction}",
                ),
                (
                    (self.eval_run is None) != (self.policy is None),
                    "give EVAL_RUN (an `rmteacher evaluate` run) or --policy with --prompts to sample first, not "
                    + ("both" if self.policy else "neither"),
                ),
                (
                    self.policy is None or self.prompts is not None,
                    "--policy needs --prompts: the prompts to sample and select from",
                ),
                (
                    self.policy is not None or self.prompts is None,
                    f"--prompts {self.prompts}: EVAL_RUN's prompts are in its samples; --prompts is for sampling with "
                    "--policy",
                ),
                (
                    self.policy is not None or "=" not in self.reward,
                    f"--reward {self.reward!r}: with EVAL_RUN give the reward's name in the run, not NAME=TARGET",
                ),
                (self.num_prompts is None or self.num_prompts >= 1, f"--num-prompts must be >= 1; got "
                 f"{self.num_prompts}"),
                (
                    self.samples_per_prompt >= 2,
                    f"--samples-per-prompt must be >= 2 (a variance needs two samples); got {self.samples_per_prompt}",
                ),
                (self.max_new_tokens >= 1, f"--max-new-tokens must be >= 1; got {self.max_new_tokens}"),
                (1e-3 <= self.temperature <= 100, f"--temperature must be in [0.001, 100]; got {self.temperature}"),
                seed_check("--seed", self.seed),
                (self.cpu_threads >= 0, f"--cpu-threads must be >= 0; got {self.cpu_threads}"),
                (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one"),
            ]
        )  # fmt: skip

    def rule(self) -> KeepRule:
        if self.min_variance is not None:
            return KeepRule("min_variance", self.min_variance)
        if self.top_fraction is not None:
            return KeepRule("top_fraction", self.top_fraction)
        return KeepRule("nonzero")


def summary_path(out: Path) -> Path:
    """``selected.jsonl`` -> ``selected.summary.json``, beside the output."""
    return out.with_name(out.stem + ".summary.json")


def select_prompts(config: SelectPromptsConfig) -> dict[str, Any]:
    """Selects, writes ``--out`` and its summary; returns the summary. What a user must know (few samples, replaced
    or dropped columns, kept flat prompts) is in its ``notes``.

    Raises:
        ValueError: a run without samples, an unknown reward name, one sample per prompt, no prompt kept.
    """
    run, name = (config.eval_run, config.reward) if config.policy is None else _sample(config)
    assert run is not None
    frame, metrics, saved = _read_run(run)
    entries = metrics.get("reward_models", {})
    if name not in entries:
        raise ValueError(f"--reward {name!r}: no such reward in {run}; valid: {', '.join(map(repr, entries))}")
    where = f"{run / 'samples.parquet'}"
    num_samples = int(frame.groupby(PROMPT_ID, sort=False).size().max())
    if num_samples < 2:
        raise ValueError(
            f"{where}: {num_samples} sample per prompt (K = 1); a variance needs K >= 2 (and K >= "
            f"{MIN_RELIABLE_SAMPLES} for a trustworthy zero); run evaluate with --samples-per-prompt 8"
        )
    matrix = reward_matrix(frame, name, where=where)
    raw = matrix.values  # [num_prompts, K]

    # 1. The reward as training sees it: normalized by the run's statistics (a NAME_scaled column is stored so).
    entry = entries[name]
    try:
        stats = NormalizationStats(**entry["normalization"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"EVAL_RUN {run}: metrics.json has no usable normalization for {name!r} ({error})") from None
    values = raw if entry.get("scaled") else normalize(raw, stats)
    unbiased = bool(saved.get("unbiased", False))
    variance = reward_variance(values, unbiased=unbiased)  # [num_prompts]
    flat = zero_variance(raw)

    # 2. Keep.
    rule = config.rule()
    keep = keep_prompts(variance, flat, rule)
    if not keep.any():
        hint = (
            "lower --min-variance"
            if rule.kind == "min_variance"
            else "every prompt's samples got the same reward: sample more per prompt, or pick a reward that varies"
        )
        raise ValueError(
            f"no prompt passes the rule ({rule.describe()}): the largest normalized variance is {variance.max():.4g} "
            f"over {len(variance)} prompts; {hint}"
        )
    notes: list[str] = []
    if rule.kind != "nonzero" and (flat & keep).any():
        notes.append(f"{int((flat & keep).sum())} kept prompt(s) have zero observed variance")

    # 3. Noise of the selection.
    noise = _noise(values, raw, variance, keep, flat, rule, unbiased=unbiased)
    notes += noise.pop("notes")

    # 4. The kept prompts in their own format, plus the three columns.
    prompts, skipped = _prompt_table(frame, matrix.prompt_ids, set(entries), saved.get("prompt_column") or "prompt")
    replaced = [c for c in ADDED_COLUMNS if c in prompts.columns]
    if replaced:
        notes.append(f"the prompts' own column(s) {', '.join(replaced)} were replaced by this selection's")
    if skipped:
        notes.append(f"column(s) {', '.join(skipped)} vary between a prompt's samples; not written")
    prompts = prompts.assign(reward_variance=variance, reward_mean=raw.mean(axis=1), num_samples=num_samples)
    kept = prompts[keep].reset_index(drop=True)
    _write_prompts(kept, config.out)

    summary: dict[str, Any] = {
        "out": str(config.out),
        "eval_run": str(run),
        "reward": name,
        "rule": {"kind": rule.kind, "value": rule.value, "description": rule.describe()},
        "samples_per_prompt": num_samples,
        "num_prompts": len(keep),
        "kept": int(keep.sum()),
        "dropped": int((~keep).sum()),
        "zero_variance_prompts": int(flat.sum()),
        "normalization": stats.to_dict() | {"prenormalized": bool(entry.get("scaled"))},
        "variance_estimator": "unbiased (K-1)" if unbiased else "population (Definition 2)",
        "mean_variance": {"all": float(variance.mean()), "kept": float(variance[keep].mean())},
        "kept_variance_share": float(variance[keep].sum() / variance.sum()) if variance.sum() > 0 else None,
        "noise": noise,
        "notes": notes,
    }
    write_json_atomic(summary_path(config.out), summary)
    return summary


def _sample(config: SelectPromptsConfig) -> tuple[Path, str]:
    """Samples the policy on the prompts through ``rmteacher evaluate``'s pipeline; returns its run and reward name."""
    from rmteacher.evaluate import EvaluateConfig, evaluate
    from rmteacher.loading import parse_reward_spec
    from rmteacher.tables import load_prompts

    name, _ = parse_reward_spec(config.reward, argument="--reward")
    assert config.prompts is not None
    num_prompts = config.num_prompts or len(load_prompts(config.prompts, config.prompt_column))
    out = config.samples_out or config.out.with_name(config.out.stem + "-samples")
    evaluate(
        EvaluateConfig(
            out=out, policy=config.policy, reward_model=[config.reward], prompts=config.prompts,
            prompt_column=config.prompt_column, system_prompt=config.system_prompt, num_prompts=num_prompts,
            samples_per_prompt=config.samples_per_prompt, max_new_tokens=config.max_new_tokens,
            temperature=config.temperature, seed=config.seed, dtype=config.dtype, device=config.device,
            cpu_threads=config.cpu_threads, trust_remote_code=config.trust_remote_code, resume=config.resume,
            overwrite=config.overwrite, progress=config.progress,
        )
    )  # fmt: skip
    return out, name


def _read_run(run: Path) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    if not (run / "samples.parquet").is_file():
        raise ValueError(
            f"EVAL_RUN {run}: no samples.parquet; give the directory of a finished `rmteacher evaluate` run, or "
            "--policy and --prompts to sample"
        )
    documents = []
    for file in ("metrics.json", "config.json"):
        try:
            documents.append(json.loads((run / file).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"EVAL_RUN {run}: cannot read {file} ({error}); is it a finished evaluate run?") from None
    return read_table(run / "samples.parquet"), documents[0], documents[1]


def _canonical(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    """Parquet's arrays and numpy scalars as JSON's lists and numbers (a conversation stays a list of messages)."""
    if isinstance(value, np.ndarray | list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _prompt_table(
    frame: pd.DataFrame, prompt_ids: np.ndarray, rewards: set[str], prompt_column: str
) -> tuple[pd.DataFrame, list[str]]:
    """One row per prompt, in ``prompt_ids`` order: ``prompt_id``, the prompt (under the prompts file's column name)
    and every column that is the same on all of a prompt's samples (the prompts file's own columns, as evaluate
    copies them); returns the table and the columns that vary within a prompt (not written)."""
    candidates = [c for c in frame.columns if c not in (PROMPT_ID, *_SAMPLE_COLUMNS) and c not in rewards]
    skipped = [
        c
        for c in candidates
        if c != "prompt" and (frame[c].map(_canonical).groupby(frame[PROMPT_ID]).nunique() > 1).any()
    ]
    first = frame.drop_duplicates(PROMPT_ID).set_index(PROMPT_ID).loc[prompt_ids].reset_index()
    table = pd.DataFrame({PROMPT_ID: first[PROMPT_ID]})
    for column in candidates:
        if column in skipped:
            continue
        if column == "prompt":
            texts = [
                check_prompt(v, where=f"prompt_id={_plain(p)!r}")
                for p, v in zip(first[PROMPT_ID], first[column], strict=True)
            ]
            table[prompt_column] = pd.Series(texts, dtype=object)
        else:
            table[column] = first[column].map(_plain) if first[column].dtype == object else first[column]
    return table, skipped


def _write_prompts(table: pd.DataFrame, out: Path) -> None:
    if out.suffix.lower() == ".parquet":
        write_parquet_atomic(table, out)
        return
    # A missing value (NaN) is JSON's null, as pandas writes it; JSON has no NaN.
    lines = [
        json.dumps({k: None if isinstance(v, float) and math.isnan(v) else _plain(v) for k, v in row.items()})
        for row in table.to_dict(orient="records")
    ]
    write_text_atomic(out, "\n".join(lines) + "\n")


def _noise(
    values: np.ndarray, raw: np.ndarray, variance: np.ndarray, keep: np.ndarray, flat: np.ndarray, rule: KeepRule,
    *, unbiased: bool,
) -> dict[str, Any]:  # fmt: skip
    """How much of the selection is chance: a beta-binomial model for a two-valued reward, split halves for any."""
    k = raw.shape[1]
    notes = []
    out: dict[str, Any] = {"beta_binomial": None, "split_half": None}
    if k < MIN_RELIABLE_SAMPLES:
        notes.append(
            f"only K = {k} samples per prompt: a prompt with success rate 0.2 shows zero variance with probability "
            f"{float(flat_probability(0.2, k)):.2f}; sample K >= {MIN_RELIABLE_SAMPLES} (evaluate "
            "--samples-per-prompt 8) before trusting the zeros"
        )
    two_valued = successes(values)
    if two_valued is not None:
        counts, low, high = two_valued
        prior = fit_beta_prior(counts, k)
        cut = float(variance[keep].min())
        keeps = kept_counts(k, high - low, rule, cut=cut, unbiased=unbiased)
        true_variance = posterior_variance(counts, k, prior)  # [num_prompts], E[p (1 - p) | s]
        out["beta_binomial"] = {
            "prior": prior.to_dict(),
            "expected_wrongly_dropped": expected_wrongly_dropped(counts, k, ~keep, prior, keeps),
            "expected_flat_share": prior.flat_share(k),
            "observed_flat_share": float(flat.mean()),
            "dropped_true_variance_share": float(true_variance[~keep].sum() / true_variance.sum()),
        }
        if prior.at_bound:
            notes.append(
                "the Beta prior's fit reached its bounds (nearly every prompt is flat): the noise estimate is rough"
            )
    if k >= MIN_RELIABLE_SAMPLES:
        out["split_half"] = split_half(values, raw, rule).to_dict()
    out["notes"] = notes
    return out
