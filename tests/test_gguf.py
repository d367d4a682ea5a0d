"""GGUF files that cannot be converted, the cache's keys and records; fast (tiny files written with the ``gguf``
package's own writer). Converting a real GGUF file, and everything trained from it, is tested on SmolLM2 in
tests/real/test_smollm2.py."""

from pathlib import Path

import numpy as np
import pytest

from rmteacher.cli import main
from rmteacher.fingerprints import cache_root, reward_fingerprint
from rmteacher.gguf import (
    GGUFError,
    cached_conversion,
    convert_gguf,
    default_cache_dir,
    gguf_fingerprint,
    gguf_fingerprints,
    is_gguf_path,
)
from rmteacher.loading import ModelLoadError, load_policy, load_tokenizer
from rmteacher.rewards import load_reward
from rmteacher.training.runs import resolved_config


def write_gguf(path: Path, architecture: str, *, weight: float = 0.0) -> Path:
    """A minimal GGUF file: the architecture, a name and one tensor."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny")
    writer.add_tensor("token_embd.weight", np.full((4, 8), weight, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RMTEACHER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_cache_lives_where_the_sandbox_cache_does(own_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_root() == own_cache and default_cache_dir() == own_cache / "gguf"
    monkeypatch.delenv("RMTEACHER_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "rmteacher" / "gguf"


def test_an_architecture_transformers_cannot_load_is_named(tmp_path: Path, own_cache: Path) -> None:
    path = write_gguf(tmp_path / "tiny.gguf", "rwkv6")
    with pytest.raises(
        ModelLoadError,
        match=r"policy '.*tiny.gguf': GGUF architecture 'rwkv6' cannot be loaded as a "
        r"causal LM by transformers 5\.\d+.*not supported.*; its GGUF support covers llama, mistral",
    ):
        load_policy(str(path), device="cpu")
    with pytest.raises(ModelLoadError, match=r"--init tokenizer '.*tiny\.gguf': GGUF architecture 'rwkv6'"):
        load_tokenizer(str(path), kind="--init")
    # Nothing half-made is left in the cache: no entry, no scratch directory.
    assert cached_conversion(path) is None
    assert [p.name for p in (own_cache / "gguf").iterdir() if not p.name.endswith(".lock")] == []


def test_a_file_that_is_not_gguf_and_a_missing_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    with pytest.raises(GGUFError, match=r"not a GGUF file transformers can read \(.*\)"):
        convert_gguf(text)
    with pytest.raises(ModelLoadError, match=r"policy '.*missing\.gguf': no such file"):
        load_policy(str(tmp_path / "missing.gguf"))


def test_a_gguf_file_is_not_a_reward_model(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "tiny.gguf", "llama")
    with pytest.raises(
        ModelLoadError,
        match=r"--reward-model 'rm=.*tiny.gguf': a GGUF file holds a causal LM, not a "
        r"reward model with a scalar head; train one from it with `rmteacher train-rm --init",
    ):
        load_reward(f"rm={path}")


def test_commands_fail_on_an_unloadable_gguf_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_gguf(tmp_path / "tiny.gguf", "rwkv6")
    out = tmp_path / "eval"
    args = ["evaluate", "--policy", str(path), "--reward-model", "gold=rmteacher.sandbox.task:ground_truth",
            "--prompts", str(tmp_path / "prompts.jsonl"), "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "converting it once to a safetensors checkpoint" in err
    assert f"rmteacher evaluate: error: --policy '{path}': GGUF architecture 'rwkv6'" in err
    assert "Traceback" not in err and not out.exists()
    assert main(["sft", "--model", str(tmp_path / "none.gguf"), "--data", str(path), "--out", str(tmp_path / "s")]) == 2
    assert f"--model '{tmp_path / 'none.gguf'}': no such file" in capsys.readouterr().err


def test_fingerprints_follow_the_content_not_the_path(tmp_path: Path) -> None:
    a = write_gguf(tmp_path / "a.gguf", "llama", weight=0.0)
    b = write_gguf(tmp_path / "b.gguf", "llama", weight=0.0)
    c = write_gguf(tmp_path / "c.gguf", "llama", weight=1.0)
    assert gguf_fingerprint(a) == gguf_fingerprint(b) != gguf_fingerprint(c)
    assert reward_fingerprint(str(a)) != reward_fingerprint(str(c))  # the bytes count, not only the name
    assert gguf_fingerprints({"policy": str(a), "init": str(tmp_path), "prompts": "p.jsonl", "none": None}) == {
        "policy": gguf_fingerprint(a)
    }
    assert is_gguf_path("m.GGUF") and not is_gguf_path(tmp_path) and not is_gguf_path("m.safetensors")


def test_a_runs_config_records_the_gguf_fingerprint(tmp_path: Path) -> None:
    from rmteacher.training.rl import RLConfig

    policy = write_gguf(tmp_path / "p.gguf", "llama")
    resolved = resolved_config("rl", RLConfig(out=tmp_path / "rl"), {"policy": str(policy), "prompts": "p.jsonl"})
    assert resolved["config"]["gguf_fingerprints"] == {"policy": gguf_fingerprint(policy)}
    assert resolved["identity"]["gguf_fingerprints"] == {"policy": gguf_fingerprint(policy)}
    plain = resolved_config("rl", RLConfig(out=tmp_path / "rl"), {"policy": str(tmp_path), "prompts": "p.jsonl"})
    assert "gguf_fingerprints" not in plain["config"]
