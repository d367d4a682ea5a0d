"""The character-level tokenizer and its chat template."""

import pytest
from jinja2 import TemplateError

from rmteacher.sandbox.tokenizer import CHARACTERS, build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return build_tokenizer()


def test_round_trip_one_token_per_character(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = "sort: qdamz " + CHARACTERS
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text


def test_special_tokens(tokenizer) -> None:  # type: ignore[no-untyped-def]
    ids = {tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id}
    assert len(ids) == 4 and None not in ids
    assert tokenizer.decode(tokenizer("A")["input_ids"]) == "<|unk|>"


def test_chat_template(tokenizer) -> None:  # type: ignore[no-untyped-def]
    prompt = [{"role": "user", "content": "sort: dbca"}]
    rendered = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert rendered == "<|user|>sort: dbca<|eos|><|assistant|>"
    full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": "abcd"}], tokenize=False)
    assert full == rendered + "abcd<|eos|>"  # the prompt is a prefix: completion-only SFT relies on it
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "sort: dbca"


def test_chat_template_rejects_other_roles(tokenizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TemplateError, match="roles user and assistant only, got system"):
        tokenizer.apply_chat_template([{"role": "system", "content": "x"}], tokenize=False)
