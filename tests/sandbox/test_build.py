"""Building the sandbox: files, models that load and generate, the cache, and an initial policy with room to learn."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from rmteacher.sandbox import SandboxTask, build, cache_key
from rmteacher.sandbox import builder as build_module
from rmteacher.sandbox.data import make_tables
from rmteacher.sandbox.policy import ground_truth_matrix, sample_completions


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_files_match_the_seeded_tables(sandbox_task: SandboxTask) -> None:
    plan = build_module._plan("default")
    tables = make_tables(
        0,
        num_eval=plan.num_eval_prompts,
        num_train=plan.num_train_prompts,
        num_demonstrations=plan.num_demonstrations,
    )
    assert _read_jsonl(sandbox_task.train_prompts) == tables.train_prompts
    assert _read_jsonl(sandbox_task.eval_prompts) == tables.eval_prompts
    assert _read_jsonl(sandbox_task.pairs) == tables.pairs
    assert _read_jsonl(sandbox_task.demonstrations) == tables.demonstrations
    assert sandbox_task.key == cache_key(0) and sandbox_task.root.name == sandbox_task.key


def test_policy_and_tokenizer_load_with_auto_classes_and_generate(sandbox_task: SandboxTask) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (sandbox_task.policy_dir / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(sandbox_task.policy_dir)
    for directory in (sandbox_task.policy_dir, sandbox_task.tokenizer_dir):
        tokenizer = AutoTokenizer.from_pretrained(directory)
        # transformers 5 swaps in a byte-level tokenizer for some model types (e.g. qwen2); ours must survive it.
        assert tokenizer.decode(tokenizer("sort: ab c", add_special_tokens=False)["input_ids"]) == "sort: ab c"
        assert tokenizer.chat_template is not None
    completions = sample_completions(model, tokenizer, ["sort: qdamz", "sort: dbca"], samples_per_prompt=3)
    assert [len(c) for c in completions] == [3, 3]
    assert all(isinstance(c, str) for row in completions for c in row)
    assert sum(p.numel() for p in model.parameters()) == sandbox_task.num_parameters


def test_initial_policy_leaves_room_to_learn(sandbox_task: SandboxTask) -> None:
    """A partly competent policy: mean ground truth well below the maximum of 1, clear within-prompt variance."""
    assert sandbox_task.build_seconds < 120
    assert 0.0 < sandbox_task.initial_reward_mean < 0.6
    assert sandbox_task.initial_reward_variance > 0.1
    assert (sandbox_task.measure_prompts, sandbox_task.samples_per_prompt) == (200, 10)
    # Re-measured here on other prompts with another sampling seed.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(sandbox_task.policy_dir)
    tokenizer = AutoTokenizer.from_pretrained(sandbox_task.policy_dir)
    prompts = [row["prompt"] for row in _read_jsonl(sandbox_task.train_prompts)[:20]]
    completions = sample_completions(model, tokenizer, prompts, samples_per_prompt=10, seed=1)
    rewards = ground_truth_matrix(prompts, completions)  # [20, 10]
    assert rewards.shape == (20, 10)
    assert np.var(rewards, axis=1).mean() > 0.1
    assert rewards.mean() < 0.6


def test_cache_hit_is_fast_and_returns_the_same_task(sandbox_task: SandboxTask) -> None:
    start = time.perf_counter()
    again = build(sandbox_task.root.parent, seed=0, progress=False)
    assert time.perf_counter() - start < 0.5
    assert again == sandbox_task


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": -1}, "seed must be a non-negative integer; got -1"),
        ({"seed": "0"}, "seed must be a non-negative integer; got '0'"),
        ({"size": "huge"}, "size must be one of .* got 'huge'"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(tmp_path, progress=False, **kwargs)
    assert not any(tmp_path.iterdir())


def test_cache_key_depends_on_seed_and_size() -> None:
    keys = {cache_key(0), cache_key(1), cache_key(0, "small")}
    assert len(keys) == 3
    assert cache_key(0) == cache_key(0)


def test_default_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RMTEACHER_CACHE", str(tmp_path))
    assert build_module.default_cache_dir() == tmp_path / "sandbox"
    monkeypatch.delenv("RMTEACHER_CACHE")
    assert build_module.default_cache_dir() == Path.home() / ".cache" / "rmteacher" / "sandbox"


def _fake_build_into(calls: list[Path]):  # type: ignore[no-untyped-def]
    """Stands in for the real builder: writes a manifest with the real layout, no model."""

    def fake(out: Path, *, key: str, seed: int, size: str, progress: bool) -> None:
        calls.append(out)
        files = {name: name for name in ("policy_dir", "tokenizer_dir", "train_prompts", "eval_prompts", "pairs")}
        files["demonstrations"] = "demonstrations"
        metadata = {"seed": seed, "size": size, "key": key, "num_parameters": 1, "initial_reward_mean": 0.0}
        metadata |= {"initial_reward_variance": 0.1, "measure_prompts": 1, "samples_per_prompt": 2}
        (out / "manifest.json").write_text(json.dumps({"files": files, "metadata": metadata | {"build_seconds": 0}}))

    return fake


def test_incomplete_entry_is_rebuilt_and_a_complete_one_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(build_module, "_build_into", _fake_build_into(calls))
    stale = tmp_path / cache_key(3)
    stale.mkdir()
    (stale / "leftover").write_text("from a crashed build without a manifest")
    task = build(tmp_path, seed=3, progress=False)
    assert len(calls) == 1 and not (task.root / "leftover").exists()
    assert build(tmp_path, seed=3, progress=False) == task
    assert len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([task.root.name, f".{task.key}.lock"])


def test_failed_build_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(out: Path, **kwargs: object) -> None:
        (out / "half-written").write_text("x")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(build_module, "_build_into", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        build(tmp_path, seed=4, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [f".{cache_key(4)}.lock"]
