"""Building the sandbox task once per seed and code version, into a cache directory.

``build()`` makes, in order: the prompt sets, demonstrations and off-policy preference pairs (pure Python, seeded),
the tokenizer, the initial policy (a tiny Llama fine-tuned on the mixed-quality demonstrations with TRL's
SFTTrainer), and a measurement of the initial policy's ground-truth reward (mean and within-prompt variance, the
quantity that says whether RL has room to learn). Everything is written into a temporary directory,
``manifest.json`` last, and the directory is renamed into place, so a cache entry either is complete or does not
exist. A lock file serializes concurrent builders (e.g. two ``accelerate launch`` ranks); the second finds the
first's result.

Cache layout (``<cache_dir>/<key>/``, key = seed, size and a digest of this package's code and library versions)::

    manifest.json          what is below plus the build metadata; written last
    tokenizer/             tokenizer.json, tokenizer_config.json, chat_template.jinja
    policy/                config.json, generation_config.json, model.safetensors, and the tokenizer
    train_prompts.jsonl    prompt_id, prompt              (policy-gradient prompt set)
    eval_prompts.jsonl     prompt_id, prompt              (evaluation prompt set, disjoint from train)
    pairs.jsonl            prompt_id, prompt, chosen, rejected, score_chosen, score_rejected   (one per train prompt)
    demonstrations.jsonl   prompt_id, prompt, completion, score   (the SFT data; prompts disjoint from both sets)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

from rmteacher.fingerprints import cache_root, exclusive_lock
from rmteacher.sandbox.data import make_tables
from rmteacher.tables import write_json_atomic

__all__ = ["SandboxTask", "build", "cache_key", "default_cache_dir"]

Size = Literal["default", "small"]
SIZES: tuple[Size, ...] = ("default", "small")
MANIFEST = "manifest.json"
# Bump when the layout of a cache entry changes; code changes are caught by the source digest anyway.
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How much of everything one build makes."""

    num_train_prompts: int
    num_eval_prompts: int
    num_demonstrations: int
    sft_steps: int
    measure_prompts: int
    samples_per_prompt: int


#: How the sandbox's initial policy is fine-tuned (and `rmteacher sft`'s defaults): a 190k-parameter model from
#: scratch needs a large learning rate to learn in a few hundred steps.
SFT_RECIPE: dict[str, Any] = {
    "learning_rate": 5e-3,
    "batch_size": 64,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.05,
    "max_length": 64,
}


def _plan(size: Size) -> _Plan:
    if size == "small":  # for quick tests elsewhere: same pipeline, about half the time; a less trained policy
        return _Plan(200, 50, 2000, 120, 50, 10)
    return _Plan(2000, 500, 6000, 400, 200, 10)


@dataclasses.dataclass(frozen=True)
class SandboxTask:
    """A built sandbox task: where its files are, and what was measured about its initial policy."""

    root: Path
    policy_dir: Path
    tokenizer_dir: Path
    train_prompts: Path
    eval_prompts: Path
    pairs: Path
    demonstrations: Path
    seed: int
    size: Size
    key: str
    num_parameters: int
    initial_reward_mean: float  # mean ground truth over measure_prompts x samples_per_prompt policy samples
    initial_reward_variance: float  # within-prompt variance of the ground truth, averaged over prompts
    measure_prompts: int  # eval prompts used for the two numbers above
    samples_per_prompt: int  # samples per prompt at temperature 1 for the two numbers above
    build_seconds: float

    @classmethod
    def from_manifest(cls, root: Path | str) -> SandboxTask:
        """Reads ``root/manifest.json`` written by :func:`build`."""
        root = Path(root)
        manifest = json.loads((root / MANIFEST).read_text())
        paths = {name: root / relative for name, relative in manifest["files"].items()}
        return cls(root=root, **paths, **manifest["metadata"])


def default_cache_dir() -> Path:
    """``$RMTEACHER_CACHE/sandbox`` when the variable is set, else ``~/.cache/rmteacher/sandbox``."""
    return cache_root() / "sandbox"


def _code_digest() -> str:
    """Digest of the code a build depends on: this package, the SFT function and the pinned libraries."""
    digest = hashlib.sha256(f"format {FORMAT_VERSION}".encode())
    package = Path(__file__).parents[1]
    # The library code a build runs: this package, the SFT function, sampling and rendering, the variance metric.
    library = [
        "training/sft.py", "training/runs.py", "sampling.py", "loading.py", "rendering.py", "metrics.py", "threads.py"
    ]  # fmt: skip
    sources = [*sorted(Path(__file__).parent.glob("*.py")), *(package / name for name in library)]
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for name in ("torch", "transformers", "trl", "tokenizers"):
        digest.update(f"{name}=={version(name)}".encode())
    return digest.hexdigest()[:12]


def cache_key(seed: int, size: Size = "default") -> str:
    """The cache entry name of a build: ``seed<seed>-<size>-<digest of code and library versions>``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}; got {size!r}")
    return f"seed{seed}-{size}-{_code_digest()}"


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w") as file:
        for row in rows:
            file.write(json.dumps(row) + "\n")


@contextlib.contextmanager
def _quiet_single_thread(progress: bool) -> Iterator[None]:
    """One torch thread, and no transformers progress bars unless ``progress``, for the block; both restored after.

    The model's ops are too small for intra-op threads to pay off, and on a busy 2-core machine two threads made a
    training step 6-15x slower than one (430-1030 ms against 60-73 ms, measured while other jobs ran).
    """
    import torch
    from transformers.utils import logging as transformers_logging

    threads = torch.get_num_threads()
    bars = transformers_logging.is_progress_bar_enabled()
    torch.set_num_threads(1)
    if not progress:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if bars:
            transformers_logging.enable_progress_bar()


def build(
    cache_dir: Path | str | None = None, *, seed: int = 0, progress: bool = True, size: Size = "default"
) -> SandboxTask:
    """Builds the sandbox task, or returns the cached build for the same seed, size and code version.

    Args:
        cache_dir: where builds are kept; :func:`default_cache_dir` when not given.
        seed: seeds the prompt sets, demonstrations, pairs, model initialization, SFT and the measurement.
        progress: show progress bars on stderr.
        size: ``"default"`` (2000 train / 500 eval prompts, 400 SFT steps; 30-40 s on 2 busy CPU cores) or
            ``"small"`` (200 / 50 prompts, 120 SFT steps, about 15 s; its policy is weaker, mean ground truth
            about -0.45).

    Returns:
        The built task. A second call with the same arguments reads the manifest and returns at once.
    """
    key = cache_key(seed, size)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = cache_dir / key
    if (root / MANIFEST).is_file():
        return SandboxTask.from_manifest(root)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cache_dir / f".{key}.lock"):
        if (root / MANIFEST).is_file():  # another process finished it while we waited
            return SandboxTask.from_manifest(root)
        scratch = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{key}.tmp-"))
        try:
            with _quiet_single_thread(progress):
                _build_into(scratch, key=key, seed=seed, size=size, progress=progress)
            if root.exists():  # an incomplete entry (no manifest) left by an older layout or a crash
                shutil.rmtree(root)
            scratch.rename(root)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return SandboxTask.from_manifest(root)


def _build_into(out: Path, *, key: str, seed: int, size: Size, progress: bool) -> None:
    """Makes every file of a cache entry in ``out``, ``manifest.json`` last."""
    from tqdm.auto import tqdm

    from rmteacher.metrics import reward_variance
    from rmteacher.sandbox.policy import ground_truth_matrix, new_policy, num_parameters, sample_completions
    from rmteacher.sandbox.tokenizer import build_tokenizer
    from rmteacher.training.sft import SFTOptions, sft

    start = time.perf_counter()
    plan = _plan(size)
    stages = tqdm(total=4, desc="sandbox", unit="stage", file=sys.stderr, disable=not progress, dynamic_ncols=True)

    stages.set_postfix_str("data")
    tables = make_tables(
        seed,
        num_eval=plan.num_eval_prompts,
        num_train=plan.num_train_prompts,
        num_demonstrations=plan.num_demonstrations,
    )
    for name in ("eval_prompts", "train_prompts", "demonstrations", "pairs"):
        _write_jsonl(out / f"{name}.jsonl", getattr(tables, name))
    stages.update()

    stages.set_postfix_str("sft")
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(out / "tokenizer")
    policy = new_policy(tokenizer, seed=seed)
    sft_options = SFTOptions(
        **SFT_RECIPE, max_steps=plan.sft_steps, seed=seed, output_dir=out / "sft-scratch", progress=progress
    )
    conversations = [  # TRL's conversational prompt/completion format, rendered with the sandbox chat template
        {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "completion": [{"role": "assistant", "content": row["completion"]}],
        }
        for row in tables.demonstrations
    ]
    policy = sft(policy, tokenizer, conversations, options=sft_options).to("cpu")
    shutil.rmtree(out / "sft-scratch", ignore_errors=True)
    stages.update()

    stages.set_postfix_str("measure")
    measure = [row["prompt"] for row in tables.eval_prompts[: plan.measure_prompts]]
    samples = sample_completions(policy, tokenizer, measure, samples_per_prompt=plan.samples_per_prompt, seed=seed)
    rewards = ground_truth_matrix(measure, samples)  # [measure_prompts, samples_per_prompt]
    stages.update()

    stages.set_postfix_str("save")
    policy.save_pretrained(out / "policy", safe_serialization=True)
    tokenizer.save_pretrained(out / "policy")
    files = {
        "policy_dir": "policy",
        "tokenizer_dir": "tokenizer",
        "train_prompts": "train_prompts.jsonl",
        "eval_prompts": "eval_prompts.jsonl",
        "pairs": "pairs.jsonl",
        "demonstrations": "demonstrations.jsonl",
    }
    metadata = {
        "seed": seed,
        "size": size,
        "key": key,
        "num_parameters": num_parameters(policy),
        "initial_reward_mean": float(rewards.mean()),
        "initial_reward_variance": float(reward_variance(rewards).mean()),
        "measure_prompts": plan.measure_prompts,
        "samples_per_prompt": plan.samples_per_prompt,
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    manifest = {
        "format_version": FORMAT_VERSION,
        "files": files,
        "metadata": metadata,
        "plan": dataclasses.asdict(plan),
        "sft_options": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(sft_options).items()},
        "versions": {p: version(p) for p in ("torch", "transformers", "trl", "tokenizers")},
    }
    write_json_atomic(out / MANIFEST, manifest)
    stages.update()
    stages.close()
