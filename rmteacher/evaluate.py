"""`rmteacher evaluate`: which reward model will teach *this* policy fastest?

The paper's protocol (Section 3, "RM evaluation"): sample K outputs per prompt from the initial policy, score them
with every reward model and with the ground truth, and report per reward model the normalized reward variance,
on-policy accuracy and off-policy accuracy. The pipeline reads top to bottom: resolve inputs, choose prompts,
sample (cached), score (cached per reward model), compute, write.

Run: ``rmteacher evaluate --out runs/eval`` (the built-in sandbox task), or
``rmteacher evaluate --policy ./sft --reward-model a=./rm-a --reward-model b=./rm-b --ground-truth gt=./gold-rm
--prompts prompts.jsonl --pairs pairs.parquet --out runs/eval`` (add ``accelerate launch`` to shard).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rmteacher.analysis import normalized_variance, rank_teachers
from rmteacher.metrics import (
    NormalizationStats,
    accuracy,
    bootstrap_ci,
    fit_normalization,
    normalize,
    off_policy_accuracy,
    reward_variance,
    scale_prompts,
    select_prompts,
)
from rmteacher.models import Reward, RewardError, load_policy, load_reward, parse_reward_spec
from rmteacher.options import check_options, option
from rmteacher.sampling import sample_completions
from rmteacher.tables import TableError, read_table, require_columns, write_json_atomic, write_text_atomic

__all__ = ["EvaluateConfig", "evaluate", "run_evaluate"]

TRUTH = "ground_truth"


@dataclass
class EvaluateConfig:
    """Options of `rmteacher evaluate` (defaults: the built-in sandbox task, on CPU-sized budgets)."""

    out: Path = option(help="run directory for config.json, samples.parquet, metrics.json, metrics.md and the figure")
    policy: str | None = option(None, help="policy: a local Hugging Face directory or hub id (default: sandbox)")
    reward_model: list[str] = option(
        default_factory=list,
        help="candidate reward model NAME=PATH_OR_CALLABLE: a directory/hub id of a sequence-classification model "
        "or a module:function in TRL's reward form (default: the sandbox's candidates)",
    )
    ground_truth: str | None = option(
        None, help="ground-truth reward, NAME=PATH_OR_CALLABLE or PATH_OR_CALLABLE (default: the sandbox's)"
    )
    prompts: Path | None = option(
        None, help="prompts: JSONL/CSV/Parquet or a datasets directory with a prompt column (default: sandbox)"
    )
    pairs: Path | None = option(
        None,
        help="off-policy preference pairs: prompt_id, chosen, rejected (optional score_chosen/score_rejected); "
        "their prompt_ids refer to --prompts",
    )
    prompt_column: str = option("prompt", help="column of --prompts holding the user text")
    num_prompts: int = option(200, help="prompts to evaluate on, a seeded subset (the paper: 500)")
    samples_per_prompt: int = option(10, help="K samples per prompt (the paper: 10)")
    max_new_tokens: int = option(16, help="most tokens per sample (the paper: 512)")
    temperature: float = option(1.0, help="sampling temperature (the paper: 1)")
    seed: int = option(237, help="seed of the prompt subset and of sampling (the paper's prompt seed: 237)")
    prompts_per_batch: int = option(32, help="prompts per generate() call")
    scale_reward: list[str] = option(
        default_factory=list,
        help="add NAME_scaled: reward model NAME normalized, then x --scale-factor on a seeded --scale-fraction "
        "of the prompts (the paper's perfectly accurate, low-variance reward model)",
    )
    scale_fraction: float = option(0.5, help="share of prompts --scale-reward scales (the paper: 0.5)")
    scale_factor: float = option(1e-3, help="factor --scale-reward applies (the paper: 0.001)")
    scale_seed: int = option(8122, help="seed choosing the scaled prompts among all of --prompts (the paper: 8122)")
    budget: Literal["fixed", "auto"] = option(
        "fixed",
        help="fixed: evaluate --num-prompts prompts; auto: add rounds of --round-prompts until adjacent models of "
        "the ranking are separated by their CIs, or --num-prompts is reached",
    )
    round_prompts: int = option(50, help="prompts per round with --budget auto")
    unbiased: bool = option(False, help="K-1 variance estimator (the authors' code) instead of Definition 2's K")
    confidence: float = option(0.95, help="level of bootstrap CIs")
    num_resamples: int = option(1000, help="bootstrap resamples over prompts")
    device: str | None = option(None, help="torch device (default: cuda if available, else cpu)")
    trust_remote_code: bool = option(False, help="allow models' own Python code (off: only transformers' classes)")
    resume: bool = option(False, help="reuse the samples and scores cached in --out and finish the rest")
    overwrite: bool = option(False, help="delete what --out holds and start over")
    progress: bool = option(True, help="progress bars on stderr")

    def __post_init__(self) -> None:
        checks = [
            (self.num_prompts >= 1, f"--num-prompts must be >= 1; got {self.num_prompts}"),
            (
                self.samples_per_prompt >= 2,
                f"--samples-per-prompt must be >= 2 (variance, accuracy); got {self.samples_per_prompt}",
            ),
            (self.max_new_tokens >= 1, f"--max-new-tokens must be >= 1; got {self.max_new_tokens}"),
            (self.temperature > 0, f"--temperature must be > 0; got {self.temperature}"),
            (self.prompts_per_batch >= 1, f"--prompts-per-batch must be >= 1; got {self.prompts_per_batch}"),
            (0.0 <= self.scale_fraction <= 1.0, f"--scale-fraction must be in [0, 1]; got {self.scale_fraction}"),
            (self.scale_factor > 0, f"--scale-factor must be > 0; got {self.scale_factor}"),
            (self.round_prompts >= 2, f"--round-prompts must be >= 2; got {self.round_prompts}"),
            (0.0 < self.confidence < 1.0, f"--confidence must be in (0, 1); got {self.confidence}"),
            (self.num_resamples >= 10, f"--num-resamples must be >= 10; got {self.num_resamples}"),
            (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one"),
        ]
        check_options(checks)


@dataclass(frozen=True)
class Inputs:
    """Resolved inputs: what the run's identity (and its caches) depends on."""

    policy: str
    reward_models: list[str]
    ground_truth: str | None
    prompts: Path
    pairs: Path | None
    scale_reward: list[str]


def resolve_inputs(config: EvaluateConfig) -> Inputs:
    """Fills what the user left out from the built-in sandbox task (built once and cached).

    The sandbox's candidates are its reward functions of different quality plus ``perfect`` (the ground truth
    itself) and, unless ``--scale-reward`` says otherwise, ``perfect_scaled``: the paper's perfectly accurate,
    low-variance reward model.
    """
    if config.policy and config.reward_model and config.prompts:
        return Inputs(
            config.policy, config.reward_model, config.ground_truth, config.prompts, config.pairs, config.scale_reward
        )
    from rmteacher import sandbox

    task = sandbox.build(progress=config.progress)
    candidates = config.reward_model or [*sandbox.CANDIDATE_REWARDS, f"perfect={sandbox.GROUND_TRUTH}"]
    return Inputs(
        policy=config.policy or str(task.policy_dir),
        reward_models=candidates,
        ground_truth=config.ground_truth or sandbox.GROUND_TRUTH,
        prompts=config.prompts or task.train_prompts,
        pairs=config.pairs if config.pairs or config.prompts else task.pairs,
        scale_reward=config.scale_reward or ([] if config.reward_model else ["perfect"]),
    )


def load_prompts(path: Path, column: str) -> pd.DataFrame:
    """Reads the prompts table: ``prompt_id`` (the row number when absent) and the prompt text."""
    frame = read_table(path)
    require_columns(frame, [column], where=str(path))
    if "prompt_id" not in frame.columns:
        frame = frame.assign(prompt_id=np.arange(len(frame)))
    if frame["prompt_id"].duplicated().any():
        duplicate = frame.loc[frame["prompt_id"].duplicated(), "prompt_id"].iloc[0]
        raise TableError(f"{path}: prompt_id {duplicate!r} appears more than once")
    texts = frame[column]
    bad = texts.isna() | (texts.astype(str).str.strip() == "")
    if bad.any():
        raise TableError(f"{path}: row {int(np.argmax(bad.to_numpy())) + 1} has an empty {column!r}")
    return pd.DataFrame({"prompt_id": frame["prompt_id"].to_numpy(), "prompt": texts.astype(str).to_numpy()})


def load_pairs(path: Path, prompts: pd.DataFrame) -> pd.DataFrame:
    """Reads off-policy pairs and checks that every pair refers to a known prompt."""
    frame = read_table(path)
    require_columns(frame, ["prompt_id", "chosen", "rejected"], where=str(path))
    unknown = ~frame["prompt_id"].isin(prompts["prompt_id"])
    if unknown.any():
        raise TableError(
            f"{path}: {int(unknown.sum())} pair(s) refer to prompt_ids not in the prompts, e.g. "
            f"{frame.loc[unknown, 'prompt_id'].iloc[0]!r}"
        )
    frame = frame.drop_duplicates("prompt_id", keep="first")
    return frame.merge(prompts, on="prompt_id", how="left", suffixes=("_pair", ""))


def _identity(config: EvaluateConfig, inputs: Inputs) -> dict[str, Any]:
    """What the cached samples depend on; a run directory holding another identity is not reused."""
    return {
        "policy": inputs.policy,
        "prompts": str(inputs.prompts),
        "prompt_column": config.prompt_column,
        "samples_per_prompt": config.samples_per_prompt,
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "seed": config.seed,
        "prompts_per_batch": config.prompts_per_batch,
    }


def prepare_run_dir(config: EvaluateConfig, identity: dict[str, Any]) -> None:
    """Creates ``--out``, or checks that it holds the same run when resuming."""
    out = config.out
    manifest = out / "cache" / "identity.json"
    if config.overwrite and out.exists():
        shutil.rmtree(out)
    if out.exists() and any(out.iterdir()):
        if not manifest.exists():
            raise ValueError(f"--out {out}: not empty and not an evaluate run; pass --overwrite or another --out")
        previous = json.loads(manifest.read_text())
        if previous != identity:
            changed = sorted(k for k in identity if previous.get(k) != identity[k])
            raise ValueError(
                f"--out {out}: holds a run with different {', '.join(changed)}; pass --overwrite or another --out"
            )
        if not config.resume:
            raise ValueError(f"--out {out}: holds a previous run; pass --resume to finish it or --overwrite")
    write_json_atomic(manifest, identity)


def sample_round(
    config: EvaluateConfig, policy: Any, tokenizer: Any, prompts: pd.DataFrame, state: Any
) -> pd.DataFrame:
    """Samples K completions for each of ``prompts`` (sharded across processes), one row per sample."""
    from accelerate.utils import gather_object

    completions = sample_completions(
        policy,
        tokenizer,
        prompts["prompt"].tolist(),
        samples_per_prompt=config.samples_per_prompt,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        # The seed mixes in the round's first prompt so that rounds of --budget auto draw fresh randomness.
        seed=config.seed + int(hashlib.sha256(str(prompts["prompt_id"].iloc[0]).encode()).hexdigest()[:6], 16),
        prompts_per_batch=config.prompts_per_batch,
        rank=state.process_index,
        world_size=state.num_processes,
        progress=config.progress,
    )
    rows = [
        {
            "prompt_id": prompts["prompt_id"].iloc[c.prompt_index],
            "sample_id": c.sample_id,
            "prompt": prompts["prompt"].iloc[c.prompt_index],
            "completion": c.text,
            "num_tokens": c.num_tokens,
            "finished": c.finished,
        }
        for c in completions
    ]
    if state.num_processes > 1:
        rows = list(gather_object(rows))
    return pd.DataFrame(rows).sort_values(["prompt_id", "sample_id"], kind="stable").reset_index(drop=True)


def score_rows(reward: Reward, prompts: list[str], completions: list[str], ids: pd.DataFrame, state: Any) -> np.ndarray:
    """Scores texts with one reward, sharded across processes; non-finite scores name prompt and sample."""
    from accelerate.utils import gather_object

    shard = np.array_split(np.arange(len(prompts)), state.num_processes)[state.process_index]
    values = reward.score([prompts[i] for i in shard], [completions[i] for i in shard])
    pieces = [(int(i), float(v)) for i, v in zip(shard, values, strict=True)]
    if state.num_processes > 1:
        pieces = list(gather_object(pieces))
    scores = np.empty(len(prompts))
    for i, v in pieces:
        scores[i] = v
    bad = ~np.isfinite(scores)
    if bad.any():
        first = int(np.argmax(bad))
        where = ", ".join(f"{k}={ids[k].iloc[first]!r}" for k in ids.columns)
        raise RewardError(f"reward {reward.name!r} returned {scores[first]} for {where}; rewards must be finite")
    return scores


def cached_scores(config: EvaluateConfig, reward: Reward, spec: str, samples: pd.DataFrame, state: Any) -> np.ndarray:
    """Scores every sample once per reward model; ``--out/cache`` keeps the scores across rounds and resumes.

    The cache of a reward model is used only if it was made by the same spec (``NAME=PATH_OR_CALLABLE``).
    """
    path = config.out / "cache" / f"scores-{reward.name}.parquet"
    spec_path = path.with_suffix(".spec")
    cached = pd.DataFrame({"prompt_id": [], "sample_id": [], "reward": []})
    if path.exists() and spec_path.exists() and spec_path.read_text() == spec:
        cached = pd.read_parquet(path)
    merged = samples[["prompt_id", "sample_id"]].merge(cached, on=["prompt_id", "sample_id"], how="left")
    todo = merged["reward"].isna().to_numpy()
    if todo.any():
        subset = samples[todo]
        merged.loc[todo, "reward"] = score_rows(
            reward, subset["prompt"].tolist(), subset["completion"].tolist(), subset[["prompt_id", "sample_id"]], state
        )
        if state.is_main_process:
            _write_parquet(merged, path)
            write_text_atomic(spec_path, spec)
    return merged["reward"].to_numpy(dtype=np.float64)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(temporary, index=False)
    temporary.replace(path)


def matrix(values: np.ndarray, num_prompts: int) -> np.ndarray:
    """Rows of a table sorted by (prompt_id, sample_id) as ``[num_prompts, num_samples]``."""
    return values.reshape(num_prompts, -1)


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Runs the evaluation and writes the run directory; returns the metrics written to ``metrics.json``."""
    from accelerate import PartialState

    state = PartialState()
    inputs = resolve_inputs(config)
    if state.is_main_process:
        prepare_run_dir(config, _identity(config, inputs))
    state.wait_for_everyone()

    # 1. Prompts: a seeded subset (the paper: RandomState(237).permutation[:500]), taken in rounds for --budget auto.
    #    The scaled prompts of --scale-reward are chosen among all prompts, as the paper chose them among all of S.
    all_prompts = load_prompts(inputs.prompts, config.prompt_column)
    pairs = load_pairs(inputs.pairs, all_prompts) if inputs.pairs else None
    order = np.random.RandomState(config.seed).permutation(len(all_prompts))[: config.num_prompts]
    scaled_ids = all_prompts["prompt_id"].to_numpy()[
        select_prompts(len(all_prompts), config.scale_fraction, seed=config.scale_seed)
    ]
    round_size = config.num_prompts if config.budget == "fixed" else min(config.round_prompts, config.num_prompts)

    # 2. Models, loaded once.
    policy, tokenizer = load_policy(inputs.policy, device=config.device, trust_remote_code=config.trust_remote_code)
    specs = dict(_named(s) for s in inputs.reward_models)
    if inputs.ground_truth:
        specs[TRUTH] = parse_reward_spec(inputs.ground_truth, argument="--ground-truth")[1]
    for name in inputs.scale_reward:
        if name not in specs:
            raise ValueError(f"--scale-reward {name!r}: not a reward model; choose from {', '.join(specs)}")
    rewards = {
        name: load_reward(f"{name}={target}", device=config.device, trust_remote_code=config.trust_remote_code)
        for name, target in specs.items()
    }
    if pairs is not None:  # only the pairs of prompts this run may evaluate (a preference set can be large)
        pairs = pairs[pairs["prompt_id"].isin(all_prompts["prompt_id"].iloc[order])]
    pair_scores = score_pairs(pairs, rewards, state) if pairs is not None and len(pairs) else {}

    # 3. Sample (cached), score (cached per reward model), compute; more rounds only for --budget auto.
    samples_path = config.out / "cache" / "samples.parquet"
    samples = pd.read_parquet(samples_path) if samples_path.exists() else pd.DataFrame({"prompt_id": []})
    used, rounds = 0, 0
    while True:
        used, rounds = min(used + round_size, len(order)), rounds + 1
        chosen = all_prompts.iloc[np.sort(order[:used])]
        missing = chosen[~chosen["prompt_id"].isin(samples["prompt_id"])]
        if len(missing):
            samples = pd.concat([samples, sample_round(config, policy, tokenizer, missing, state)], ignore_index=True)
            if state.is_main_process:
                _write_parquet(samples, samples_path)
        current = samples[samples["prompt_id"].isin(chosen["prompt_id"])]
        current = current.sort_values(["prompt_id", "sample_id"], kind="stable").reset_index(drop=True)
        scores = {
            name: cached_scores(config, reward, specs[name], current, state)
            for name, reward in tqdm(rewards.items(), desc="scoring", disable=not config.progress, leave=False)
        }
        columns = training_rewards(config, current, scores, scaled_ids, inputs.scale_reward)
        result = compute_metrics(config, current, columns, pair_scores)
        separated = all(result["ranking"]["adjacent_separated"])
        if config.budget == "fixed" or separated or used == len(order):
            break
    result["specs"] = specs
    result["budget"] = {
        "mode": config.budget,
        "rounds": rounds,
        "prompts": int(used),
        "samples_per_reward_model": int(used * config.samples_per_prompt),
        "ranking_separated": separated,
    }
    if state.is_main_process:
        write_outputs(config, inputs, result, current, scores, columns)
    return result


def _named(spec: str) -> tuple[str, str]:
    name, target = parse_reward_spec(spec)
    if name == TRUTH:
        raise ValueError(f"--reward-model {spec!r}: the name {TRUTH!r} is reserved for --ground-truth")
    return name, target


def score_pairs(
    pairs: pd.DataFrame, rewards: dict[str, Reward], state: Any
) -> dict[str, dict[Any, tuple[float, float]]]:
    """Scores every off-policy pair's chosen and rejected response: ``{name: {prompt_id: (chosen, rejected)}}``.

    The ground truth's own labels (``score_chosen``/``score_rejected``) are used when the pairs file has them, as
    the paper labels pairs by the relabeling scores.
    """
    prompt_ids = pairs["prompt_id"].tolist()
    out: dict[str, dict[Any, tuple[float, float]]] = {}
    for name, reward in rewards.items():
        if name == TRUTH and {"score_chosen", "score_rejected"} <= set(pairs.columns):
            chosen = pairs["score_chosen"].to_numpy(dtype=np.float64)
            rejected = pairs["score_rejected"].to_numpy(dtype=np.float64)
        else:
            prompts = pairs["prompt"].tolist()
            chosen, rejected = (
                score_rows(
                    reward, prompts, pairs[side].astype(str).tolist(), pairs[["prompt_id"]].assign(pair=side), state
                )
                for side in ("chosen", "rejected")
            )
        out[name] = dict(zip(prompt_ids, zip(chosen.tolist(), rejected.tolist(), strict=True), strict=True))
    return out


@dataclass(frozen=True)
class RewardColumn:
    """One reward as training will see it: ``values`` already normalized, and how they were made."""

    base: str
    raw: np.ndarray  # [num_prompts, num_samples], as the reward gives it
    values: np.ndarray  # [num_prompts, num_samples], normalized (and scaled for a _scaled column)
    stats: NormalizationStats
    scaled: bool


def training_rewards(
    config: EvaluateConfig,
    samples: pd.DataFrame,
    scores: dict[str, np.ndarray],
    scaled_ids: np.ndarray,
    scale_reward: list[str],
) -> dict[str, RewardColumn]:
    """Normalizes every reward by its own initial-policy statistics (Section 3) and adds the ``_scaled`` columns.

    The paper's perfectly accurate, low-variance reward model multiplies the *normalized* reward of a seeded half of
    the prompts by 0.001, so its reward variance here is that of the reward used in training; normalizing it again
    would undo the construction.
    """
    num_prompts = samples["prompt_id"].nunique()
    prompt_ids = samples["prompt_id"].to_numpy()[:: config.samples_per_prompt]
    columns: dict[str, RewardColumn] = {}
    for name, flat in scores.items():
        raw = matrix(flat, num_prompts)
        stats = fit_normalization(raw)
        columns[name] = RewardColumn(name, raw, normalize(raw, stats), stats, scaled=False)
    for name in scale_reward:
        base = columns[name]
        rows = np.flatnonzero(np.isin(prompt_ids, scaled_ids))
        values = scale_prompts(base.values, rows, config.scale_factor)
        # Its "raw" reward is the scaled, normalized one: that is the reward as it exists (and is stored).
        columns[f"{name}_scaled"] = RewardColumn(name, values, values, base.stats, scaled=True)
    if TRUTH in columns:  # the ground truth last, as the paper's tables
        columns[TRUTH] = columns.pop(TRUTH)
    return columns


def compute_metrics(
    config: EvaluateConfig,
    samples: pd.DataFrame,
    columns: dict[str, RewardColumn],
    pair_scores: dict[str, dict[Any, tuple[float, float]]],
) -> dict[str, Any]:
    """Every reward model's metrics (the paper's Table 1 analogue) and the teacher ranking."""
    prompt_ids = samples["prompt_id"].to_numpy()[:: config.samples_per_prompt]
    truth = columns[TRUTH].raw if TRUTH in columns else None
    ci: dict[str, Any] = {"confidence": config.confidence, "num_resamples": config.num_resamples}
    entries: dict[str, dict[str, Any]] = {}
    off_correct: dict[str, np.ndarray] = {}
    for name, column in columns.items():
        variance = (
            (lambda r: float(reward_variance(r, unbiased=config.unbiased).mean()))
            if column.scaled
            else (lambda r: normalized_variance(r, unbiased=config.unbiased))
        )
        entry: dict[str, Any] = {
            "reward_variance": bootstrap_ci(variance, column.values if column.scaled else column.raw, **ci).to_dict(),
            "raw_reward_variance": bootstrap_ci(
                np.mean, reward_variance(column.raw, unbiased=config.unbiased), **ci
            ).to_dict(),
            "zero_variance_prompts": float(np.mean(reward_variance(column.raw) < 1e-12)),
            "normalization": column.stats.to_dict(),
            "normalization_per_prompt_std": fit_normalization(column.raw, method="per_prompt_std").to_dict(),
            "scaled": column.scaled,
        }
        if truth is not None:
            entry["on_policy_accuracy"] = bootstrap_ci(np.mean, accuracy(column.values, truth), **ci).to_dict()
        present = [pid for pid in prompt_ids if pid in pair_scores.get(column.base, {})]
        if present and TRUTH in pair_scores:
            # Scaling a prompt's rewards by a positive factor keeps the order of its pair: same as the base model.
            proxy = np.array([pair_scores[column.base][pid] for pid in present])
            gold = np.array([pair_scores[TRUTH][pid] for pid in present])
            correct = off_policy_accuracy(proxy[:, 0], proxy[:, 1], gold[:, 0], gold[:, 1])
            per_prompt = np.full(len(prompt_ids), np.nan)
            per_prompt[np.isin(prompt_ids, present)] = correct
            off_correct[name] = per_prompt
            entry["off_policy_accuracy"] = bootstrap_ci(np.mean, correct, **ci).to_dict()
            entry["off_policy_pairs"] = len(correct)
        if "on_policy_accuracy" in entry and "off_policy_accuracy" in entry:
            both = (entry["on_policy_accuracy"]["estimate"] + entry["off_policy_accuracy"]["estimate"]) / 2
            entry["on_and_off_policy_accuracy"] = both
            entry["reward_variance_and_accuracy"] = (entry["reward_variance"]["estimate"] + both) / 2
        entries[name] = entry
    ranking = rank_teachers(
        {n: c.values for n, c in columns.items() if n != TRUTH},
        truth,
        off_correct or None,
        unbiased=config.unbiased,
        **ci,
    )
    return {
        "num_prompts": len(prompt_ids),
        "samples_per_prompt": config.samples_per_prompt,
        "variance_estimator": "unbiased (K-1)" if config.unbiased else "population (Definition 2)",
        "reward_models": entries,
        "ranking": ranking.to_dict(),
    }


def write_outputs(
    config: EvaluateConfig,
    inputs: Inputs,
    result: dict[str, Any],
    samples: pd.DataFrame,
    scores: dict[str, np.ndarray],
    columns: dict[str, RewardColumn],
) -> None:
    """Writes config.json, samples.parquet, metrics.json, metrics.md and the scatter plot, each atomically.

    ``samples.parquet`` holds every reward model's raw score, and the ``_scaled`` columns as training sees them
    (normalized, then scaled), so ``rmteacher metrics samples.parquet --truth ground_truth --prenormalized
    NAME_scaled`` reproduces ``metrics.json``.
    """
    from rmteacher.report_eval import render_markdown, scatter_variance_accuracy

    table = samples.copy()
    for name, values in scores.items():
        table[name] = values
    for name, column in columns.items():
        if column.scaled:
            table[name] = column.values.ravel()
    resolved = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    resolved["resolved_inputs"] = {
        k: (None if v is None else str(v) if not isinstance(v, list) else v) for k, v in asdict(inputs).items()
    }
    write_json_atomic(config.out / "config.json", resolved)
    _write_parquet(table, config.out / "samples.parquet")
    write_json_atomic(config.out / "metrics.json", result)
    write_text_atomic(config.out / "metrics.md", render_markdown(result))
    scatter_variance_accuracy(result, config.out / "variance_vs_accuracy.png")


def run_evaluate(config: EvaluateConfig) -> str:
    """The CLI's entry: runs :func:`evaluate` and returns the markdown table to print (empty on ranks > 0)."""
    from accelerate import PartialState

    from rmteacher.report_eval import render_markdown

    result = evaluate(config)
    if not PartialState().is_main_process:
        return ""
    return (
        render_markdown(result)
        + f"\nWrote {config.out}/: metrics.md, metrics.json, samples.parquet, "
        + ("config.json, variance_vs_accuracy.png")
    )
