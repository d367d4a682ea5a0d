"""Tiny Hugging Face models built locally for language-model tests (random weights, no download)."""

from pathlib import Path

import pandas as pd
import pytest

from rmteacher.sandbox.task import make_prompt, score


def tiny_models(root: Path) -> dict[str, Path]:
    """A random tiny Llama policy, two reward models (one with a different tokenizer) and data files."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from rmteacher.sandbox.policy import new_policy
    from rmteacher.sandbox.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    policy = new_policy(tokenizer, seed=0)
    policy.save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    paths = {"policy": root / "policy"}
    for name, template in (("rm_same", tokenizer.chat_template), ("rm_plain", None)):
        torch.manual_seed(len(name))
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            num_labels=1,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = LlamaForSequenceClassification(config)
        model.save_pretrained(root / name)
        rm_tokenizer = build_tokenizer()
        rm_tokenizer.chat_template = template  # rm_plain: no template, scored as prompt + completion + EOS
        rm_tokenizer.save_pretrained(root / name)
        paths[name] = root / name
    letters = ["dcba", "qwer", "zyxwv", "mlkj", "hgfed", "ponm", "tsrq", "bcda"]
    prompts = pd.DataFrame(
        {"prompt_id": [f"p{i}" for i in range(len(letters))], "prompt": [make_prompt(x) for x in letters]}
    )
    prompts.to_json(root / "prompts.jsonl", orient="records", lines=True)
    pairs = pd.DataFrame(
        {
            "prompt_id": prompts["prompt_id"],
            "chosen": ["".join(sorted(x)) for x in letters],
            "rejected": letters,
            "score_chosen": [score(x, "".join(sorted(x))) for x in letters],
            "score_rejected": [score(x, x) for x in letters],
        }
    )
    pairs.to_parquet(root / "pairs.parquet")
    paths["prompts"] = root / "prompts.jsonl"
    paths["pairs"] = root / "pairs.parquet"
    return paths


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_models(tmp_path_factory.mktemp("tiny"))
