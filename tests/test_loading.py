"""Loading policies and reward models: local paths, hub ids offline, safetensors only, dtype and device_map."""

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from rmteacher import loading
from rmteacher.loading import ModelLoadError, load_policy, parse_reward_spec
from rmteacher.rewards import CallableReward, ModelReward, load_reward


def test_a_relative_path_without_dot_slash_is_local(zoo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(zoo.root)
    model, tokenizer = load_policy("policy-neox")
    assert not model.training and model.config.model_type == "gpt_neox"
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"  # no pad token: EOS pads
    assert model.generation_config.pad_token_id == tokenizer.eos_token_id
    assert isinstance(load_reward("rm=rm-gpt2"), ModelReward)
    monkeypatch.chdir(zoo.root.parent)
    assert isinstance(load_reward(f"rm={zoo.root.name}/rm-qwen2"), ModelReward)  # owner/name shape, but local


@pytest.mark.parametrize("path", ["./no-such-model", "/no/such/model", "~/no-such-model", "a/b/c", "bad name"])
def test_a_missing_path_that_is_no_hub_id_is_no_such_directory(path: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"policy tokenizer '.*': no such directory"):
        load_policy(path)
    assert time.perf_counter() - start < 1


def test_a_hub_id_fails_at_once_when_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"'someone/not-a-model': cannot be loaded \(.*offline.*hf download"):
        load_reward("rm=someone/not-a-model")
    assert time.perf_counter() - start < 5


def test_a_hub_id_fails_at_once_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "_hub_reachable", lambda endpoint: False)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"'someone/not-a-model': cannot be loaded \(.*not in the local cache"):
        load_policy("someone/not-a-model")
    assert time.perf_counter() - start < 5


def test_the_hub_probe_answers_quickly_for_an_unreachable_endpoint() -> None:
    start = time.perf_counter()
    assert loading._hub_reachable.__wrapped__("https://unreachable.invalid", timeout=1.0) is False
    assert time.perf_counter() - start < 2


def test_bin_only_weights_are_refused_with_a_conversion_command(zoo: Any, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    model_dir = tmp_path / "bin-only"
    shutil.copytree(zoo.reward_models["gpt2"], model_dir)
    weights = load_file(model_dir / "model.safetensors")
    (model_dir / "model.safetensors").unlink()
    torch.save(weights, model_dir / "pytorch_model.bin")
    with pytest.raises(
        ModelLoadError,
        match=r"weights must be safetensors.*AutoModelForSequenceClassification\.from_pretrained\(.*"
        r"use_safetensors=False\)\.save_pretrained",
    ):
        load_reward(f"rm={model_dir}")


def test_a_file_is_not_a_model_directory(zoo: Any) -> None:
    with pytest.raises(ModelLoadError, match="not a directory"):
        load_policy(str(zoo.policies["neox"] / "config.json"))


def test_a_causal_lm_is_not_a_reward_model_and_no_load_report_is_printed(
    zoo: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ModelLoadError, match=r"no trained weights for score\.weight \(they would be random\)"):
        load_reward(f"rm={zoo.policies['llama']}")
    with pytest.raises(ModelLoadError, match=r"policy '.*': the checkpoint has no trained weights for lm_head"):
        load_policy(str(zoo.reward_models["llama"]))
    load_reward(f"rm={zoo.reward_models['qwen2']}")
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "Loading weights" not in err and "not sharded" not in err


def test_a_reward_model_needs_a_scalar_head(zoo: Any, tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(zoo.reward_models["qwen2"])
    config.num_labels = 2
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "two")
    AutoTokenizer.from_pretrained(zoo.reward_models["qwen2"]).save_pretrained(tmp_path / "two")
    with pytest.raises(ModelLoadError, match=r"needs a scalar head \(num_labels=1\); it has 2"):
        load_reward(f"rm={tmp_path / 'two'}")


def test_dtype_and_device_map(zoo: Any) -> None:
    import torch

    model, _ = load_policy(str(zoo.policies["qwen2"]), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    model, _ = load_policy(str(zoo.policies["qwen2"]), dtype="auto", device_map="cpu")
    assert next(model.parameters()).dtype == torch.float32  # the checkpoint's
    reward = load_reward(f"rm={zoo.reward_models['gpt2']}", dtype="float16", device="cpu")
    assert isinstance(reward, ModelReward) and next(reward.model.parameters()).dtype == torch.float16


def test_bad_placement_is_an_error(zoo: Any) -> None:
    with pytest.raises(ModelLoadError, match="dtype 'float8' is not one of auto, bfloat16, float16, float32"):
        load_policy(str(zoo.policies["qwen2"]), dtype="float8")  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError, match=r"give a device \('cpu'\) or a device_map \('auto'\), not both"):
        load_reward(f"rm={zoo.reward_models['gpt2']}", device="cpu", device_map="auto")


def test_a_tokenizer_that_cannot_pad_is_an_error(zoo: Any, tmp_path: Path) -> None:
    from zoo import byte_level_tokenizer

    model_dir = tmp_path / "no-specials"
    shutil.copytree(zoo.reward_models["gpt2"], model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model_dir / name).unlink()
    byte_level_tokenizer(seed=0, vocab_size=290, specials=(), chat_template=None).save_pretrained(model_dir)
    with pytest.raises(ModelLoadError, match="has neither a pad nor an EOS token; cannot batch"):
        load_reward(f"rm={model_dir}")


def test_reward_functions_load_by_module_and_name() -> None:
    reward = load_reward("gt=rmteacher.sandbox.task:ground_truth")
    assert isinstance(reward, CallableReward) and reward.name == "gt"
    with pytest.raises(ModelLoadError, match="cannot import module 'no_such_module'"):
        load_reward("gt=no_such_module:fn")
    with pytest.raises(ModelLoadError, match=r"module 'rmteacher\.sandbox\.task' has no function 'nope'"):
        load_reward("gt=rmteacher.sandbox.task:nope")
    with pytest.raises(ValueError, match="expected NAME=PATH_OR_CALLABLE"):
        load_reward("gt=")
    with pytest.raises(ValueError, match=r"the name 'g t' may hold only letters, digits"):
        load_reward("g t=rmteacher.sandbox.task:ground_truth")


def test_parse_reward_spec_names_bare_targets() -> None:
    assert parse_reward_spec("./models/my-rm/") == ("my-rm", "./models/my-rm/")
    assert parse_reward_spec("pkg.mod:fn") == ("fn", "pkg.mod:fn")
    assert parse_reward_spec("gt=pkg.mod:fn") == ("gt", "pkg.mod:fn")


def test_a_directory_without_a_model_cannot_be_loaded(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"policy tokenizer '.*': cannot be loaded \("):
        load_policy(str(tmp_path))
