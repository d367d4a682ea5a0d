"""rmteacher.preflight: every reward spec that would fail to load is refused without loading weights, and the
ones that load pass; each error names the flag and the spec."""

import json
import shutil
from pathlib import Path

import pytest

from rmteacher.loading import ModelLoadError
from rmteacher.preflight import check_reward

GT = "rmteacher.sandbox.task:ground_truth"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A one-output reward model, a two-output one, a causal LM and a reward model without weights, each with the
    sandbox tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    from rmteacher.sandbox.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("preflight")
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    sizes = {
        "vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "pad_token_id": tokenizer.pad_token_id,
    }  # fmt: skip
    built = {
        "rm": LlamaForSequenceClassification(LlamaConfig(num_labels=1, **sizes)),
        "two_labels": LlamaForSequenceClassification(LlamaConfig(num_labels=2, **sizes)),
        "causal": LlamaForCausalLM(LlamaConfig(**sizes)),
    }
    paths = {}
    for name, model in built.items():
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        paths[name] = root / name
    shutil.copytree(root / "rm", root / "no_weights")
    for weights in (root / "no_weights").glob("*.safetensors"):
        weights.unlink()
    paths["no_weights"] = root / "no_weights"
    return paths


@pytest.fixture
def rewards_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    source = "def good(prompts, completions, **kwargs):\n    return [0.0] * len(prompts)\nNOT_CALLABLE = 3\n"
    (tmp_path / "my_rewards.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_rewards"


def test_loadable_rewards_pass(models: dict[str, Path], rewards_module: str) -> None:
    assert check_reward(f"a={rewards_module}:good") == "callable"
    assert check_reward(GT, argument="--ground-truth") == "callable"
    assert check_reward(f"rm={models['rm']}") == "model"


def test_no_weights_are_loaded(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForSequenceClassification

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("check_reward loaded a model")

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", refuse)
    assert check_reward(f"rm={models['rm']}") == "model"


@pytest.mark.parametrize(
    ("spec", "argument", "message"),
    [
        ("a=no_such_module_xyz:typo", "--reward-model", r"--reward-model 'a=no_such_module_xyz:typo': cannot import "
         r"module 'no_such_module_xyz'"),
        ("a=my_rewards:typo", "--reward-model", r"module 'my_rewards' has no function 'typo'"),
        ("a=my_rewards:NOT_CALLABLE", "--reward-model", r"module 'my_rewards' has no function 'NOT_CALLABLE'"),
        ("gold=my_rewards:typo", "--ground-truth", r"--ground-truth 'gold=my_rewards:typo': module 'my_rewards'"),
        ("a=/no/such/dir", "--reward-model", r"reward model 'a' tokenizer '/no/such/dir': no such directory"),
        ("a={causal}", "--reward-model", r"a LlamaForCausalLM checkpoint, not a sequence-classification reward model"),
        ("a={two_labels}", "--reward-model", r"needs a scalar head \(num_labels=1\); it has 2"),
        ("a={no_weights}", "--reward-model", r"holds no weights \(\*\.safetensors\)"),
        ("=x", "--reward-model", r"expected NAME=PATH_OR_CALLABLE"),
    ],
)  # fmt: skip
def test_bad_rewards_are_refused(
    models: dict[str, Path], rewards_module: str, spec: str, argument: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_reward(spec.format(**models), argument=argument)


def test_a_model_type_without_a_classification_class_is_refused(models: dict[str, Path], tmp_path: Path) -> None:
    directory = tmp_path / "odd"
    shutil.copytree(models["rm"], directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "vit", "architectures": None}))
    with pytest.raises(ModelLoadError, match=r"no sequence-classification class for model type 'vit'"):
        check_reward(f"odd={directory}")
