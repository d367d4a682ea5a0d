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
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rmteacher.devices import resolve_device
from rmteacher.fingerprints import file_digest, reward_fingerprint
from rmteacher.gguf import gguf_fingerprints
from rmteacher.loading import load_policy, parse_reward_spec
from rmteacher.metrics import select_prompts
from rmteacher.options import check_options, option, resamples_check, seed_check
from rmteacher.rewards import Reward, load_reward
from rmteacher.rundir import open_run
from rmteacher.sampling import sample_completions
from rmteacher.scoring import extra_columns, score_rows
from rmteacher.tables import (
    TRUTH,
    TableError,
    check_prompt,
    load_pairs,
    load_prompts,
    read_table,
    require_columns,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)
from rmteacher.teachers import PairScores, RewardColumn, teacher_metrics, teacher_ranking, training_rewards
from rmteacher.threads import CPU_THREADS_HELP, cpu_threads, torch_threads

__all__ = ["OUTPUTS", "EvaluateConfig", "evaluate", "identity", "load_samples"]

#: Prompts evaluated when sampling and --num-prompts is not given (the paper: 500).
DEFAULT_NUM_PROMPTS = 200


@dataclass
class EvaluateConfig:
    """Options of `rmteacher evaluate`. With none of the task's inputs given, the command line uses the built-in
    sandbox task (and says so on stderr)."""

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
    prompt_column: str = option(
        "prompt", help="column of --prompts holding the prompt: plain strings or TRL conversations (lists of messages)"
    )
    system_prompt: str | None = option(
        None, help="system message put before every prompt, for the policy and every reward model alike"
    )
    stop: list[str] = option(
        default_factory=list,
        help="stop strings: a completion ends at the first one (besides every end token of the generation config)",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = option(
        None, help="weights' dtype for the policy and model reward models (default: transformers' default)"
    )
    device_map: str | None = option(
        None, help="passed to from_pretrained, e.g. auto, for a model larger than one device (excludes --device)"
    )
    rm_max_length: int | None = option(
        None,
        help="most tokens a reward model reads; longer texts lose the start of the prompt, the completion is kept, "
        "and truncations are counted in metrics.json (default: the model's max_position_embeddings)",
    )
    rm_batch_tokens: int = option(16384, help="tokens per reward-model forward pass (lower it on out-of-memory)")
    samples: Path | None = option(
        None,
        help="samples generated elsewhere (vLLM, your rollouts): JSONL/CSV/Parquet with prompt_id, sample_id, prompt, "
        "completion and optional extra columns; scored and ranked without loading a policy",
    )
    num_prompts: int | None = option(
        None,
        help=f"prompts to evaluate on, a seeded subset (default: {DEFAULT_NUM_PROMPTS}, or all of --samples; "
        "the paper: 500)",
    )
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
    low_variance_construction: Literal["rmteacher", "authors_code"] = option(
        "rmteacher",
        help="how --scale-reward builds NAME_scaled: rmteacher (normalize, then scale; its variance ratio to the "
        "ground truth is the closer to the paper's Table 1) or authors_code (as the authors' code: statistics fitted "
        "after scaling the raw rewards, then the normalized reward scaled again)",
    )
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
    cpu_threads: int = option(1, help=CPU_THREADS_HELP)
    trust_remote_code: bool = option(False, help="allow models' own Python code (off: only transformers' classes)")
    resume: bool = option(False, help="reuse the samples and scores cached in --out and finish the rest")
    overwrite: bool = option(False, help="delete what --out holds and start over")
    progress: bool = option(True, help="progress bars on stderr")

    def __post_init__(self) -> None:
        checks = [
            (
                self.num_prompts is None or self.num_prompts >= 1,
                f"--num-prompts must be >= 1; got {self.num_prompts}",
            ),
            (self.cpu_threads >= 0, f"--cpu-threads must be >= 0 (0: torch's default); got {self.cpu_threads}"),
            (
                self.samples is None or self.policy is None,
                "--samples and --policy exclude each other: --samples scores samples made elsewhere, --policy samples",
            ),
            (
                self.samples_per_prompt >= 2,
                f"--samples-per-prompt must be >= 2 (variance, accuracy); got {self.samples_per_prompt}",
            ),
            (self.max_new_tokens >= 1, f"--max-new-tokens must be >= 1; got {self.max_new_tokens}"),
            (
                1e-3 <= self.temperature <= 100,
                f"--temperature must be in [0.001, 100] (sampling needs a finite, positive temperature); got "
                f"{self.temperature}",
            ),
            seed_check("--seed", self.seed),
            (self.rm_batch_tokens >= 1, f"--rm-batch-tokens must be >= 1; got {self.rm_batch_tokens}"),
            (
                self.rm_max_length is None or self.rm_max_length >= 8,
                f"--rm-max-length must be >= 8; got {self.rm_max_length}",
            ),
            (
                self.device is None or self.device_map is None,
                "--device and --device-map exclude each other: --device-map places the model itself",
            ),
            (self.prompts_per_batch >= 1, f"--prompts-per-batch must be >= 1; got {self.prompts_per_batch}"),
            (0.0 <= self.scale_fraction <= 1.0, f"--scale-fraction must be in [0, 1]; got {self.scale_fraction}"),
            (self.scale_factor > 0, f"--scale-factor must be > 0; got {self.scale_factor}"),
            (self.round_prompts >= 2, f"--round-prompts must be >= 2; got {self.round_prompts}"),
            (0.0 < self.confidence < 1.0, f"--confidence must be in (0, 1); got {self.confidence}"),
            resamples_check("--num-resamples", self.num_resamples, self.confidence),
            seed_check("--scale-seed", self.scale_seed),
            (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one"),
        ]
        check_options(checks)


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
        system_prompt=config.system_prompt,
        stop=config.stop,
    )
    extra = [c for c in prompts.columns if c not in ("prompt_id", "prompt")]
    rows = [
        {
            "prompt_id": prompts["prompt_id"].iloc[c.prompt_index],
            "sample_id": c.sample_id,
            "prompt": prompts["prompt"].iloc[c.prompt_index],
            "completion": c.text,
            "num_tokens": c.num_tokens,
            "finished": c.finished,
            **{k: prompts[k].iloc[c.prompt_index] for k in extra},
        }
        for c in completions
    ]
    if state.num_processes > 1:
        rows = list(gather_object(rows))
    return pd.DataFrame(rows).sort_values(["prompt_id", "sample_id"], kind="stable").reset_index(drop=True)


def load_samples(path: Path) -> pd.DataFrame:
    """Reads samples generated elsewhere (vLLM, your own rollouts): ``prompt_id``, ``sample_id``, ``prompt``,
    ``completion`` and optional extra columns (reward kwargs), every prompt with the same number of samples.

    Raises:
        TableError: a missing column, a malformed prompt, a non-text completion, duplicate or ragged samples.
    """
    frame = read_table(path)
    where = f"--samples {path}"
    require_columns(frame, ["prompt_id", "sample_id", "prompt", "completion"], where=where)
    frame["prompt"] = pd.Series(
        [check_prompt(v, where=f"{where}: row {i + 1}") for i, v in enumerate(frame["prompt"].tolist())],
        index=frame.index,
        dtype=object,
    )
    if not all(isinstance(v, str) for v in frame["completion"]):
        raise TableError(f"{where}: column 'completion' must hold texts")
    if frame.duplicated(["prompt_id", "sample_id"]).any():
        raise TableError(f"{where}: a (prompt_id, sample_id) appears more than once")
    counts = frame.groupby("prompt_id").size()
    if counts.nunique() != 1:
        raise TableError(f"{where}: prompts have different numbers of samples ({counts.min()} to {counts.max()})")
    if int(counts.iloc[0]) < 2:
        raise TableError(f"{where}: each prompt needs >= 2 samples (variance, accuracy); found 1")
    return frame.sort_values(["prompt_id", "sample_id"], kind="stable").reset_index(drop=True)


def _reward_specs(config: EvaluateConfig) -> dict[str, str]:
    """``{name: target}`` of every reward to score, the ground truth last under its reserved name."""
    specs: dict[str, str] = {}
    for spec in config.reward_model:
        name, target = parse_reward_spec(spec)
        if name == TRUTH:
            raise ValueError(f"--reward-model {spec!r}: the name {TRUTH!r} is reserved for --ground-truth")
        if name in specs:
            raise ValueError(f"--reward-model {spec!r}: the name {name!r} is given twice")
        specs[name] = target
    if config.ground_truth:
        specs[TRUTH] = parse_reward_spec(config.ground_truth, argument="--ground-truth")[1]
    for name in config.scale_reward:
        if name not in specs:
            raise ValueError(f"--scale-reward {name!r}: not a reward model; choose from {', '.join(specs)}")
    return specs


def identity(config: EvaluateConfig) -> dict[str, Any]:
    """What the cached samples depend on; a run directory holding another identity is not reused. Reward models
    are not part of it: their scores are cached per reward and content, so models can be added on --resume."""
    source: dict[str, Any] = (
        {"samples": str(config.samples), "samples_digest": file_digest(config.samples)}
        if config.samples is not None
        else {"policy": config.policy, "prompts": str(config.prompts), "prompt_column": config.prompt_column,
              "samples_per_prompt": config.samples_per_prompt, "max_new_tokens": config.max_new_tokens,
              "temperature": config.temperature, "seed": config.seed, "prompts_per_batch": config.prompts_per_batch}
    )  # fmt: skip
    source.update(_gguf_fingerprints(config))
    return source


def _gguf_fingerprints(config: EvaluateConfig) -> dict[str, Any]:
    """The policy's content fingerprint when it is a GGUF file (a whole checkpoint in one file)."""
    fingerprints = gguf_fingerprints({"policy": config.policy}) if config.samples is None else {}
    return {"gguf_fingerprints": fingerprints} if fingerprints else {}


#: Below this share of finished samples evaluate warns (issue 10): the metrics then describe completions cut at
#: --max-new-tokens, not what the policy would write.
FINISHED_WARNING = 0.9

#: Top-level entries an evaluate run writes (what --overwrite may delete even when a killed run did not record them).
OUTPUTS = ("cache", "samples.parquet", "metrics.json", "metrics.md", "variance_vs_accuracy.png")


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Runs the evaluation and writes the run directory; returns the metrics written to ``metrics.json``.

    Needs explicit inputs: ``--policy`` and ``--prompts`` (or ``--samples``) and at least one ``--reward-model``
    (the command line fills them from the built-in sandbox when none is given).
    """
    from accelerate import PartialState

    needed = [
        ("--reward-model", config.reward_model),
        ("--policy or --samples", config.policy or config.samples),
        ("--prompts or --samples", config.prompts or config.samples),
    ]
    missing = [flag for flag, given in needed if not given]
    if missing:
        raise ValueError(f"evaluate needs {', '.join(missing)}")
    state = PartialState()
    if config.device_map is None:
        resolve_device(config.device)
    specs = _reward_specs(config)
    with (
        open_run(
            config.out, command="evaluate", identity=identity(config), resume=config.resume,
            overwrite=config.overwrite, outputs=OUTPUTS, is_main_process=state.is_main_process,
        ),
        torch_threads(cpu_threads(config.cpu_threads)),
    ):  # fmt: skip
        result = _evaluate(config, specs, state)
    return result


def _evaluate(config: EvaluateConfig, specs: dict[str, str], state: Any) -> dict[str, Any]:
    cache = config.out / "cache"
    # 1. Prompts (or samples given): a seeded subset (the paper: RandomState(237).permutation[:500]), taken in
    #    rounds for --budget auto. The scaled prompts of --scale-reward are chosen among all prompts, as the paper.
    given = load_samples(config.samples) if config.samples is not None else None
    if given is not None and config.prompts is None:
        all_prompts = given.drop_duplicates("prompt_id")[["prompt_id", "prompt"]].reset_index(drop=True)
    else:
        all_prompts = load_prompts(config.prompts or Path(), config.prompt_column)
    pairs = load_pairs(config.pairs, all_prompts) if config.pairs else None
    extras = [c for c in all_prompts.columns if c not in ("prompt_id", "prompt")]
    if pairs is not None and extras and pairs["prompt_id"].isin(all_prompts["prompt_id"]).all():
        # Pairs that refer to the prompts get their prompt's columns (e.g. `answer`), as the samples do.
        pairs = pairs.merge(all_prompts[["prompt_id", *extras]], on="prompt_id", how="left")
    num_prompts = config.num_prompts or (len(all_prompts) if given is not None else DEFAULT_NUM_PROMPTS)
    if given is not None:
        available = all_prompts["prompt_id"].isin(given["prompt_id"]).to_numpy()
        pool = np.flatnonzero(available)
    else:
        pool = np.arange(len(all_prompts))
    order = pool[np.random.RandomState(config.seed).permutation(len(pool))[:num_prompts]]
    scaled_ids = all_prompts["prompt_id"].to_numpy()[
        select_prompts(len(all_prompts), config.scale_fraction, seed=config.scale_seed)
    ]
    round_size = len(order) if config.budget == "fixed" else min(config.round_prompts, len(order))
    if pairs is not None:  # only the pairs of prompts this run may evaluate (a preference set can be large)
        pairs = pairs[pairs["prompt_id"].isin(all_prompts["prompt_id"].iloc[order])].reset_index(drop=True)

    # 2. The policy (not loaded when samples are given); reward models are loaded one at a time when scoring.
    policy = tokenizer = None
    if given is None:
        policy, tokenizer = load_policy(
            config.policy or "", device=config.device, dtype=config.dtype, device_map=config.device_map,
            trust_remote_code=config.trust_remote_code,
        )  # fmt: skip
    samples_path = cache / "samples.parquet"
    samples = pd.read_parquet(samples_path) if given is None and samples_path.exists() else given
    used, rounds = 0, 0
    pair_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    # Each round checks the ranking alone; every metric's interval is computed once, on the final round.
    ci: dict[str, Any] = {
        "unbiased": config.unbiased,
        "confidence": config.confidence,
        "num_resamples": config.num_resamples,
    }
    while True:
        used, rounds = min(used + round_size, len(order)), rounds + 1
        chosen = all_prompts.iloc[np.sort(order[:used])]
        known = samples["prompt_id"] if samples is not None else pd.Series([], dtype=object)
        missing = chosen[~chosen["prompt_id"].isin(known)]
        if len(missing):
            new = sample_round(config, policy, tokenizer, missing, state)
            samples = new if samples is None else pd.concat([samples, new], ignore_index=True)
            if state.is_main_process:
                write_parquet_atomic(samples, samples_path)
        assert samples is not None
        current = samples[samples["prompt_id"].isin(chosen["prompt_id"])]
        current = current.sort_values(["prompt_id", "sample_id"], kind="stable").reset_index(drop=True)
        scores = _score_all(config, specs, current, pairs, pair_scores, state)
        k = int(current.groupby("prompt_id").size().iloc[0])
        prompt_ids = current["prompt_id"].to_numpy()[::k]
        matrices = {name: flat.reshape(len(prompt_ids), k) for name, flat in scores.items()}
        columns = training_rewards(
            matrices, prompt_ids, scaled_ids=scaled_ids, scale_reward=config.scale_reward,
            scale_factor=config.scale_factor, construction=config.low_variance_construction,
        )  # fmt: skip
        paired = PairScores(pairs["prompt_id"].to_numpy(), pair_scores) if pairs is not None and len(pairs) else None
        ranking = teacher_ranking(columns, prompt_ids, paired, **ci)
        separated = all(ranking.separated)
        if config.budget == "fixed" or separated or used == len(order):
            break
    result = teacher_metrics(columns, prompt_ids, paired, ranking=ranking, **ci)
    result["samples_per_prompt"] = k
    if "finished" in current.columns:
        result["finished_share"] = float(current["finished"].astype(bool).mean())
        if result["finished_share"] < FINISHED_WARNING:
            result["finished_warning"] = (
                f"only {result['finished_share']:.0%} of the samples finished (ended on an end token or a --stop "
                "string) within --max-new-tokens; the metrics describe cut-off text: raise --max-new-tokens"
            )
            warnings.warn(result["finished_warning"], stacklevel=2)
    result["specs"] = specs
    result["budget"] = {
        "mode": config.budget,
        "rounds": rounds,
        "prompts": int(used),
        "samples_per_reward_model": len(current),
        "ranking_separated": separated,
    }
    if state.is_main_process:
        write_outputs(config, result, current, scores, columns)
    return result


def _score_all(
    config: EvaluateConfig,
    specs: dict[str, str],
    samples: pd.DataFrame,
    pairs: pd.DataFrame | None,
    pair_scores: dict[str, tuple[np.ndarray, np.ndarray]],
    state: Any,
) -> dict[str, np.ndarray]:
    """Scores every sample with every reward, loading one reward model at a time (score, free, load the next), so
    peak memory is about the policy plus the largest reward model. Scores are cached in ``--out/cache`` per reward
    and per content fingerprint (a model retrained in place is scored again); pairs are scored once per run."""
    extra = extra_columns(samples)
    scores: dict[str, np.ndarray] = {}
    truncations: dict[str, int] = {}
    for name, target in tqdm(specs.items(), desc="scoring", disable=not config.progress, leave=False):
        fingerprint = f"{target}#{reward_fingerprint(target)}"
        path = config.out / "cache" / f"scores-{name}.parquet"
        spec_path = path.with_suffix(".spec")
        cached = pd.DataFrame({"prompt_id": [], "sample_id": [], "reward": []})
        if path.exists() and spec_path.exists() and spec_path.read_text() == fingerprint:
            cached = pd.read_parquet(path)
        keys = samples[["prompt_id", "sample_id"]]
        merged = keys.merge(cached, on=["prompt_id", "sample_id"], how="left")
        todo = merged["reward"].isna().to_numpy()
        needs_pairs = pairs is not None and len(pairs) and name not in pair_scores
        if not todo.any() and not needs_pairs:
            scores[name] = merged["reward"].to_numpy(dtype=np.float64)
            continue
        reward = load_reward(
            f"{name}={target}", device=config.device, trust_remote_code=config.trust_remote_code,
            argument="--ground-truth" if name == TRUTH else "--reward-model", dtype=config.dtype,
            device_map=config.device_map, max_length=config.rm_max_length, max_tokens_per_batch=config.rm_batch_tokens,
            system_prompt=config.system_prompt,
        )  # fmt: skip
        if todo.any():
            subset = samples[todo]
            merged.loc[todo, "reward"] = score_rows(
                reward, subset["prompt"].tolist(), subset["completion"].tolist(),
                subset[["prompt_id", "sample_id"]], state, {k: [v[i] for i in np.flatnonzero(todo)]
                                                            for k, v in extra.items()},
            )  # fmt: skip
            if state.is_main_process:
                write_parquet_atomic(merged, path)
                write_text_atomic(spec_path, fingerprint)
        if needs_pairs:
            assert pairs is not None
            pair_scores[name] = _score_pairs(name, reward, pairs, state)
        truncated = getattr(reward, "num_truncated", 0)
        if truncated:
            truncations[name] = int(truncated)
        # One reward model in memory at a time (a Python-function reward holds nothing to free, and frees nothing:
        # a full collection costs 0.14 s once torch and transformers are loaded, benchmarks/bench_evaluate.py).
        reward.free()
        del reward
        scores[name] = merged["reward"].to_numpy(dtype=np.float64)
    if truncations:
        warnings.warn(
            "texts longer than a reward model's maximum length lost the start of their prompt: "
            + ", ".join(f"{k} {v}" for k, v in truncations.items()),
            stacklevel=2,
        )
    return scores


def _score_pairs(name: str, reward: Reward, pairs: pd.DataFrame, state: Any) -> tuple[np.ndarray, np.ndarray]:
    """Scores of each off-policy pair's chosen and rejected response, ``[num_pairs]`` each. The ground truth's own
    labels (``score_chosen``/``score_rejected``) are used when the pairs file has them, as the paper labels pairs by
    the relabeling scores."""
    if name == TRUTH and {"score_chosen", "score_rejected"} <= set(pairs.columns):
        return pairs["score_chosen"].to_numpy(np.float64), pairs["score_rejected"].to_numpy(np.float64)
    prompts = pairs["prompt"].tolist()
    extra = extra_columns(pairs, exclude=("chosen", "rejected", "score_chosen", "score_rejected"))
    chosen, rejected = (
        score_rows(reward, prompts, pairs[side].tolist(), pairs[["prompt_id"]].assign(pair=side), state, extra)
        for side in ("chosen", "rejected")
    )
    return chosen, rejected


def write_outputs(
    config: EvaluateConfig,
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
    from rmteacher.report.evaluate import render_markdown, scatter_variance_accuracy

    table = samples.copy()
    for name, values in scores.items():
        table[name] = values
    for name, column in columns.items():
        if column.scaled:
            table[name] = column.values.ravel()
    resolved = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    resolved.update(_gguf_fingerprints(config))
    write_json_atomic(config.out / "config.json", resolved)
    write_parquet_atomic(table, config.out / "samples.parquet")
    write_json_atomic(config.out / "metrics.json", result)
    write_text_atomic(config.out / "metrics.md", render_markdown(result))
    scatter_variance_accuracy(result, config.out / "variance_vs_accuracy.png")
