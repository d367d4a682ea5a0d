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

import dataclasses
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
from rmteacher.options import STOP_HELP, check_options, decode_escapes, option, resamples_check, seed_check, stop_check
from rmteacher.preflight import check_reward
from rmteacher.rewards import ModelReward, Reward, load_reward
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
#: --max-new-tokens for the user's --policy when not given: TRL 1.16's GRPOConfig/RLOOConfig max_completion_length,
#: which is also the paper's 512 (the built-in sandbox keeps its own 16: rmteacher.commands.evaluate).
DEFAULT_MAX_NEW_TOKENS = 512


@dataclass
class EvaluateConfig:
    """Options of `rmteacher evaluate`. With none of the task's inputs given, the command line uses the built-in
    sandbox task (and says so on stderr)."""

    out: Path = option(help="run directory for config.json, samples.parquet, metrics.json, metrics.md and the figure")
    policy: str | None = option(
        None,
        help="policy: a local Hugging Face directory or hub id (the sandbox's only when no task input at all is given)",
    )
    reward_model: list[str] = option(
        default_factory=list,
        help="candidate reward model NAME=PATH_OR_CALLABLE: a directory/hub id of a sequence-classification model "
        "or a module:function in TRL's reward form (the sandbox's candidates only when no task input at all is "
        "given)",
    )
    ground_truth: str | None = option(
        None,
        help="ground-truth reward, NAME=PATH_OR_CALLABLE or PATH_OR_CALLABLE; NAME names its column in "
        "samples.parquet and metrics (without NAME: ground_truth). Without it there is no on-policy accuracy and "
        "teachers are ranked by reward variance (and off-policy accuracy against the labels of --pairs, if given). "
        "The sandbox's only when no task input at all is given",
    )
    prompts: Path | None = option(
        None,
        help="prompts: JSONL/CSV/Parquet or a datasets directory with a prompt column (the sandbox's only when no "
        "task input at all is given)",
    )
    pairs: Path | None = option(
        None,
        help="off-policy preference pairs: prompt_id, chosen, rejected (optional score_chosen/score_rejected); "
        "their prompt_ids refer to --prompts. Off-policy accuracy is measured against score_chosen/score_rejected "
        "when given, else against --ground-truth, else against the file's order (chosen preferred)",
    )
    prompt_column: str = option(
        "prompt", help="column of --prompts holding the prompt: plain strings or TRL conversations (lists of messages)"
    )
    system_prompt: str | None = option(
        None, help="system message put before every prompt, for the policy and every reward model alike"
    )
    stop: list[str] = option(default_factory=list, help=STOP_HELP)
    dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = option(
        None, help="weights' dtype for the policy and model reward models (default: transformers' default)"
    )
    device_map: str | None = option(
        None, help="passed to from_pretrained, e.g. auto, for a model larger than one device (excludes --device)"
    )
    rm_max_length: int | None = option(
        None,
        help="most tokens a reward model reads; longer texts lose the start of the prompt, the completion is kept, "
        "and truncations are counted per reward model in metrics.json's truncations (default: the model's "
        "max_position_embeddings)",
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
    max_new_tokens: int | None = option(
        None,
        help=f"most tokens per sample (default: {DEFAULT_MAX_NEW_TOKENS} for your --policy, TRL's GRPOConfig and "
        "RLOOConfig max_completion_length and the paper's; 16 for the built-in sandbox)",
    )
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
            (
                self.max_new_tokens is None or self.max_new_tokens >= 1,
                f"--max-new-tokens must be >= 1; got {self.max_new_tokens}",
            ),
            stop_check("--stop", self.stop),
            (
                not (self.stop and self.samples is not None),
                "--stop and --samples exclude each other: --stop ends the policy's samples, and --samples are "
                "scored as given",
            ),
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

    def stop_strings(self) -> list[str]:
        """``--stop`` as sampling uses it: each string with its backslash escapes decoded (``\\n``: a newline)."""
        return [decode_escapes(s) for s in self.stop]

    def new_tokens(self) -> int:
        """``--max-new-tokens``, or its default for a user's policy."""
        return DEFAULT_MAX_NEW_TOKENS if self.max_new_tokens is None else self.max_new_tokens


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
        max_new_tokens=config.new_tokens(),
        temperature=config.temperature,
        # The seed mixes in the round's first prompt so that rounds of --budget auto draw fresh randomness.
        seed=config.seed + int(hashlib.sha256(str(prompts["prompt_id"].iloc[0]).encode()).hexdigest()[:6], 16),
        prompts_per_batch=config.prompts_per_batch,
        rank=state.process_index,
        world_size=state.num_processes,
        progress=config.progress,
        system_prompt=config.system_prompt,
        stop=config.stop_strings(),
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
            **({"stop_string": c.stop_string} if config.stop else {}),
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
        named, truth_target = parse_reward_spec(config.ground_truth, argument="--ground-truth")
        if named in specs and "=" in config.ground_truth:
            raise ValueError(
                f"--ground-truth {config.ground_truth!r}: the name {named!r} is a --reward-model's too; name "
                "the ground truth otherwise"
            )
        specs[TRUTH] = truth_target
    truth = truth_name(config)
    for name in config.scale_reward:
        if name not in specs and name != truth:
            shown = [truth if n == TRUTH and truth else n for n in specs]
            raise ValueError(f"--scale-reward {name!r}: not a reward model; choose from {', '.join(shown)}")
    return specs


def identity(config: EvaluateConfig) -> dict[str, Any]:
    """What the cached samples depend on; a run directory holding another identity is not reused. Reward models
    are not part of it: their scores are cached per reward and content, so models can be added on --resume."""
    source: dict[str, Any] = (
        {"samples": str(config.samples), "samples_digest": file_digest(config.samples)}
        if config.samples is not None
        else {"policy": config.policy, "prompts": str(config.prompts), "prompt_column": config.prompt_column,
              "samples_per_prompt": config.samples_per_prompt, "max_new_tokens": config.new_tokens(),
              "temperature": config.temperature, "seed": config.seed, "prompts_per_batch": config.prompts_per_batch,
              # Only when given, so that runs made before the key existed keep their identity.
              **({"stop": config.stop_strings()} if config.stop else {}),
              # The policy samples from the rendered conversation, system message included.
              **({"system_prompt": config.system_prompt} if config.system_prompt is not None else {})}
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


@dataclass(frozen=True)
class Inputs:
    """The task's tables, read and checked before anything is sampled: the samples given (``--samples``), every
    prompt, and the off-policy pairs of the evaluated prompts' pool."""

    given: pd.DataFrame | None
    prompts: pd.DataFrame
    pairs: pd.DataFrame | None


def load_inputs(config: EvaluateConfig) -> Inputs:
    """Reads ``--samples``, ``--prompts`` and ``--pairs``.

    Raises:
        TableError: a malformed table (the message names the flag and the file).
    """
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
    return Inputs(given, all_prompts, pairs)


def _given_spec(config: EvaluateConfig, name: str, target: str) -> str:
    """A reward's spec as the user gave it (for messages): ``--ground-truth`` as typed, the others as NAME=TARGET."""
    return config.ground_truth if name == TRUTH and config.ground_truth else f"{name}={target}"


def truth_name(config: EvaluateConfig) -> str | None:
    """The ground truth's name in ``samples.parquet`` and the metrics: the user's ``NAME`` of ``--ground-truth
    NAME=...``, else ``ground_truth``; None without a ground truth. (Internally it is scored under ``TRUTH``.)"""
    if not config.ground_truth:
        return None
    return parse_reward_spec(config.ground_truth, argument="--ground-truth")[0] if "=" in config.ground_truth else TRUTH


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Runs the evaluation and writes the run directory; returns the metrics written to ``metrics.json``.

    Needs explicit inputs: ``--policy`` and ``--prompts`` (or ``--samples``) and at least one ``--reward-model``
    (the command line fills them from the built-in sandbox when none is given). Every table is read and every reward
    checked (:func:`rmteacher.preflight.check_reward`: imported, or its model's config and tokenizer loaded) before
    ``--out`` is touched and before anything is sampled, so a typo fails at once and leaves ``--out`` as it was.
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
    if config.max_new_tokens is None and config.samples is None:
        config = dataclasses.replace(config, max_new_tokens=config.new_tokens())  # recorded in config.json
    state = PartialState()
    if config.device_map is None:
        resolve_device(config.device)
    specs = _reward_specs(config)
    inputs = load_inputs(config)
    for name, target in specs.items():
        argument = "--ground-truth" if name == TRUTH else "--reward-model"
        check_reward(_given_spec(config, name, target), argument=argument, trust_remote_code=config.trust_remote_code)
    with (
        open_run(
            config.out, command="evaluate", identity=identity(config), resume=config.resume,
            overwrite=config.overwrite, outputs=OUTPUTS, is_main_process=state.is_main_process,
        ),
        torch_threads(cpu_threads(config.cpu_threads)),
    ):  # fmt: skip
        result = _evaluate(config, specs, inputs, state)
    return result


#: The ranking's criterion (rmteacher.analysis.teacher_score) in words, for metrics.json, metrics.md and stderr.
RANKING_BASIS = {
    "reward_variance": "reward variance alone: without --ground-truth and --pairs no accuracy can be measured; "
    "give --ground-truth to rank by variance and accuracy as the paper does",
    "reward_variance_and_on_policy_accuracy": "the mean of reward variance and on-policy accuracy against {truth} "
    "(no --pairs: no off-policy accuracy)",
    "reward_variance_and_off_policy_accuracy": "the mean of reward variance and off-policy accuracy against {labels} "
    "(no --ground-truth: no on-policy accuracy)",
    "reward_variance_and_accuracy": "the mean of reward variance and the mean of on- and off-policy accuracy "
    "against {truth} (the paper's Table 2 'Reward variance & Acc.')",
}

#: Above this share of samples cut at --max-new-tokens, a --stop string that never occurred is reported.
STOP_WARNING_UNFINISHED = 0.5


def _pair_labels(pairs: pd.DataFrame) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    """Without a ground truth, the pairs' own labels for off-policy accuracy: ``score_chosen``/``score_rejected``
    when the file has them, else the file's order (chosen preferred: 1 against 0); and their description."""
    if {"score_chosen", "score_rejected"} <= set(pairs.columns):
        scores = pairs["score_chosen"].to_numpy(np.float64), pairs["score_rejected"].to_numpy(np.float64)
        return scores, "the score_chosen/score_rejected labels of --pairs"
    return (np.ones(len(pairs)), np.zeros(len(pairs))), "the order of --pairs (chosen preferred over rejected)"


def _evaluate(config: EvaluateConfig, specs: dict[str, str], inputs: Inputs, state: Any) -> dict[str, Any]:
    cache = config.out / "cache"
    # 1. Prompts (or samples given): a seeded subset (the paper: RandomState(237).permutation[:500]), taken in
    #    rounds for --budget auto. The scaled prompts of --scale-reward are chosen among all prompts, as the paper.
    given, all_prompts, pairs = inputs.given, inputs.prompts, inputs.pairs
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
    truth = truth_name(config)
    pair_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    labels = f"the ground truth {truth!r}"
    if pairs is not None and len(pairs):
        if TRUTH not in specs:  # no ground truth: the pairs' own labels still measure off-policy accuracy
            pair_scores[TRUTH], labels = _pair_labels(pairs)
        elif {"score_chosen", "score_rejected"} <= set(pairs.columns):
            labels = f"the score_chosen/score_rejected labels of --pairs (ground truth {truth!r})"

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
    truncations: dict[str, dict[str, int]] = {}
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
        scores = _score_all(config, specs, current, pairs, pair_scores, truncations, state)
        k = int(current.groupby("prompt_id").size().iloc[0])
        prompt_ids = current["prompt_id"].to_numpy()[::k]
        matrices = {name: flat.reshape(len(prompt_ids), k) for name, flat in scores.items()}
        columns = training_rewards(
            matrices, prompt_ids, scaled_ids=scaled_ids,
            scale_reward=[TRUTH if n == truth else n for n in config.scale_reward],
            scale_factor=config.scale_factor, construction=config.low_variance_construction,
        )  # fmt: skip
        paired = PairScores(pairs["prompt_id"].to_numpy(), pair_scores) if pairs is not None and len(pairs) else None
        ranking = teacher_ranking(columns, prompt_ids, paired, **ci)
        separated = all(ranking.separated)
        if config.budget == "fixed" or separated or used == len(order):
            break
    result = teacher_metrics(columns, prompt_ids, paired, ranking=ranking, **ci)
    result["samples_per_prompt"] = k
    result["ranking_basis"] = "teachers ranked by " + RANKING_BASIS[ranking.criterion].format(
        truth=repr(truth), labels=labels
    )
    result["off_policy_labels"] = labels if paired is not None else None
    result["truncations"] = truncations
    if "finished" in current.columns:
        result["finished_share"] = float(current["finished"].astype(bool).mean())
        if result["finished_share"] < FINISHED_WARNING:
            result["finished_warning"] = (
                f"only {result['finished_share']:.0%} of the samples finished (ended on an end token or a --stop "
                "string) within --max-new-tokens; the metrics describe cut-off text: raise --max-new-tokens"
            )
            warnings.warn(result["finished_warning"], stacklevel=2)
    if config.stop and "stop_string" in current.columns:
        result.update(_stop_report(config.stop_strings(), current))
    result["specs"] = specs
    result["budget"] = {
        "mode": config.budget,
        "rounds": rounds,
        "prompts": int(used),
        "samples_per_reward_model": len(current),
        "ranking_separated": separated,
    }
    result["ground_truth"] = None if truth is None else {"name": truth, "spec": specs[TRUTH]}
    if truth is not None and truth != TRUTH:  # the user's name for the ground truth; its role in "ground_truth"
        result, scores, columns = _named_truth(truth, result, scores, columns)
    if state.is_main_process:
        write_outputs(config, result, current, scores, columns)
    return result


def _named_truth(
    truth: str, result: dict[str, Any], scores: dict[str, np.ndarray], columns: dict[str, RewardColumn]
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, RewardColumn]]:
    """The outputs with the ground truth (scored under ``TRUTH``) and its ``_scaled`` column under the user's name."""
    names = {TRUTH: truth, f"{TRUTH}_scaled": f"{truth}_scaled"}

    def renamed(mapping: dict[str, Any]) -> dict[str, Any]:
        return {names.get(n, n): v for n, v in mapping.items()}

    ranking = dict(result["ranking"])
    ranking["order"] = [names.get(n, n) for n in ranking["order"]]
    ranking["score"] = renamed(ranking["score"])
    result = {
        **result,
        "reward_models": renamed(result["reward_models"]),
        "specs": renamed(result["specs"]),
        "truncations": renamed(result["truncations"]),
        "ranking": ranking,
    }
    return result, renamed(scores), renamed(columns)


def _stop_report(stop: list[str], samples: pd.DataFrame) -> dict[str, Any]:
    """How many samples each ``--stop`` string ended (decoded), and a warning when one never occurred while most
    samples ran into --max-new-tokens (e.g. a string that cannot occur as typed)."""
    counts = {s: int((samples["stop_string"] == s).sum()) for s in stop}
    report: dict[str, Any] = {"stop_strings": counts}
    unfinished = 1.0 - float(samples["finished"].astype(bool).mean())
    never = [s for s, n in counts.items() if n == 0]
    if never and unfinished > STOP_WARNING_UNFINISHED:
        report["stop_warning"] = (
            f"--stop {', '.join(repr(s) for s in never)} (as decoded) never occurred in any sample, while "
            f"{unfinished:.0%} of the samples were cut at --max-new-tokens; check the string (the escapes \\n, \\t, "
            "\\r and \\\\ are decoded) or raise --max-new-tokens"
        )
        warnings.warn(report["stop_warning"], stacklevel=3)
    return report


def _processes_total(count: int, state: Any) -> int:
    """``count`` summed over the processes of ``state`` (each scores its shard of the rows)."""
    if state.num_processes == 1:
        return count
    from accelerate.utils import gather_object

    return int(sum(gather_object([count])))


def _score_all(
    config: EvaluateConfig,
    specs: dict[str, str],
    samples: pd.DataFrame,
    pairs: pd.DataFrame | None,
    pair_scores: dict[str, tuple[np.ndarray, np.ndarray]],
    truncations: dict[str, dict[str, int]],
    state: Any,
) -> dict[str, np.ndarray]:
    """Scores every sample with every reward, loading one reward model at a time (score, free, load the next), so
    peak memory is about the policy plus the largest reward model. Scores are cached in ``--out/cache`` per reward
    and per content fingerprint (a model retrained in place is scored again); pairs are scored once per run.
    ``truncations`` gets, per reward model, the texts longer than its maximum length (samples, pairs); the samples'
    count is cached with their scores."""
    extra = extra_columns(samples)
    scores: dict[str, np.ndarray] = {}
    for name, target in tqdm(specs.items(), desc="scoring", disable=not config.progress, leave=False):
        fingerprint = f"{target}#{reward_fingerprint(target)}"
        if config.system_prompt is not None:  # a model reward scores the conversation with the system message
            fingerprint += f"#system={config.system_prompt}"
        path = config.out / "cache" / f"scores-{name}.parquet"
        spec_path = path.with_suffix(".spec")
        count_path = path.with_suffix(".truncated")
        cached = pd.DataFrame({"prompt_id": [], "sample_id": [], "reward": []})
        truncated: int | None = None  # a model's count, cached next to its scores; None for a function
        if path.exists() and spec_path.exists() and spec_path.read_text() == fingerprint:
            cached = pd.read_parquet(path)
            truncated = int(count_path.read_text()) if count_path.exists() else None
        keys = samples[["prompt_id", "sample_id"]]
        merged = keys.merge(cached, on=["prompt_id", "sample_id"], how="left")
        todo = merged["reward"].isna().to_numpy()
        needs_pairs = pairs is not None and len(pairs) and name not in pair_scores
        if not todo.any() and not needs_pairs:
            scores[name] = merged["reward"].to_numpy(dtype=np.float64)
            if truncated is not None:
                truncations.setdefault(name, {"samples": 0, "pairs": 0})["samples"] = truncated
            continue
        reward = load_reward(
            _given_spec(config, name, target), device=config.device, trust_remote_code=config.trust_remote_code,
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
            if isinstance(reward, ModelReward):
                truncated = (truncated or 0) + _processes_total(reward.num_truncated, state)
            if state.is_main_process:
                write_parquet_atomic(merged, path)
                write_text_atomic(spec_path, fingerprint)
                if truncated is not None:
                    write_text_atomic(count_path, str(truncated))
        if isinstance(reward, ModelReward):
            truncations.setdefault(name, {"samples": 0, "pairs": 0})["samples"] = truncated or 0
        if needs_pairs:
            assert pairs is not None
            before = reward.num_truncated if isinstance(reward, ModelReward) else 0
            pair_scores[name] = _score_pairs(name, reward, pairs, state)
            if isinstance(reward, ModelReward):
                truncations[name]["pairs"] = _processes_total(reward.num_truncated - before, state)
        # One reward model in memory at a time (a Python-function reward holds nothing to free, and frees nothing:
        # a full collection costs 0.14 s once torch and transformers are loaded, benchmarks/bench_evaluate.py).
        reward.free()
        del reward
        scores[name] = merged["reward"].to_numpy(dtype=np.float64)
    cut = {name: n for name, n in truncations.items() if n["samples"] or n["pairs"]}
    if cut:
        warnings.warn(
            "texts longer than a reward model's maximum length lost the start of their prompt (counted in "
            "metrics.json's truncations): "
            + ", ".join(f"{k} {v['samples']} samples, {v['pairs']} pairs" for k, v in cut.items()),
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
    (normalized, then scaled), so ``rmteacher metrics samples.parquet --truth TRUTH --prenormalized NAME_scaled``
    reproduces ``metrics.json`` (TRUTH: the ground truth's name, metrics.json's ``ground_truth.name``).
    ``config.json`` holds every option, ``stop`` decoded as sampling used it (``stop_as_typed``: as given).
    """
    from rmteacher.report.evaluate import render_markdown, scatter_variance_accuracy

    table = samples.copy()
    for name, values in scores.items():
        table[name] = values
    for name, column in columns.items():
        if column.scaled:
            table[name] = column.values.ravel()
    resolved = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    resolved["stop"], resolved["stop_as_typed"] = config.stop_strings(), config.stop
    resolved.update(_gguf_fingerprints(config))
    write_json_atomic(config.out / "config.json", resolved)
    write_parquet_atomic(table, config.out / "samples.parquet")
    write_json_atomic(config.out / "metrics.json", result)
    write_text_atomic(config.out / "metrics.md", render_markdown(result))
    scatter_variance_accuracy(result, config.out / "variance_vs_accuracy.png")
