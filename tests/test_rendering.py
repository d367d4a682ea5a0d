"""One rendering for every model (rmteacher.rendering): chat templates, the plain format, system prompts, TRL parity."""

from typing import Any

import numpy as np
import pytest

from rmteacher.rendering import (
    SEPARATOR,
    completion_text,
    encode_rendered,
    prompt_messages,
    render_conversation,
    render_prompt,
    trl_prompt,
)
from rmteacher.sandbox.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def tokenizers(zoo: Any) -> dict[str, Any]:
    from transformers import AutoTokenizer

    loaded = {f"policy-{n}": AutoTokenizer.from_pretrained(p) for n, p in zoo.policies.items()}
    loaded.update({f"rm-{n}": AutoTokenizer.from_pretrained(p) for n, p in zoo.reward_models.items()})
    return loaded


def test_chatml_and_llama3_templates_render_the_generation_prompt(tokenizers: dict[str, Any]) -> None:
    assert render_prompt(tokenizers["policy-qwen2"], "hi there") == (
        "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_prompt(tokenizers["policy-llama"], "hi there") == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_templated_conversation_is_the_prompt_then_the_reply(tokenizers: dict[str, Any]) -> None:
    tokenizer = tokenizers["policy-qwen2"]
    prompt = render_prompt(tokenizer, "hi")
    full = render_conversation(tokenizer, "hi", "hello.")
    assert full == prompt + "hello.<|im_end|>\n"
    # TRL's conversational completion (a list holding the assistant's message) renders the same.
    assert render_conversation(tokenizer, "hi", [{"role": "assistant", "content": "hello."}]) == full
    # With completion=None, the generation prompt (the old single-argument call).
    assert render_conversation(tokenizer, "hi") == prompt


def test_conversational_and_plain_prompts_render_the_same_text(tokenizers: dict[str, Any]) -> None:
    for tokenizer in tokenizers.values():
        plain = render_conversation(tokenizer, "the cat", "sat.")
        assert render_conversation(tokenizer, [{"role": "user", "content": "the cat"}], "sat.") == plain
        assert render_prompt(tokenizer, [{"role": "user", "content": "the cat"}]) == render_prompt(tokenizer, "the cat")


def test_plain_format_separates_prompt_and_completion_only_where_they_would_glue(tokenizers: dict[str, Any]) -> None:
    tokenizer = tokenizers["policy-neox"]  # Pythia-like: no chat template
    assert render_prompt(tokenizer, "Q: hi\nA:") == "Q: hi\nA:"
    assert render_conversation(tokenizer, "sort: dcba", "abcd") == "sort: dcba" + SEPARATOR + "abcd<|endoftext|>"
    # Whitespace at the junction: TRL's standard format (prompt + completion) as it is.
    assert render_conversation(tokenizer, "Q: hi\nA:", " Paris.") == "Q: hi\nA: Paris.<|endoftext|>"
    assert render_conversation(tokenizer, "Q: hi\n", "Paris.") == "Q: hi\nParis.<|endoftext|>"
    # An EOS the completion already ends with is not doubled.
    assert render_conversation(tokenizer, "a ", "b<|endoftext|>") == "a b<|endoftext|>"


def test_system_prompt_reaches_the_rendered_text(tokenizers: dict[str, Any]) -> None:
    qwen, llama, neox = tokenizers["policy-qwen2"], tokenizers["policy-llama"], tokenizers["policy-neox"]
    assert render_prompt(qwen, "hi", system_prompt="be brief.").startswith(
        "<|im_start|>system\nbe brief.<|im_end|>\n<|im_start|>user\nhi"
    )
    assert "<|start_header_id|>system<|end_header_id|>\n\nbe brief.<|eot_id|>" in render_conversation(
        llama, "hi", "ok", system_prompt="be brief."
    )
    # Plain format: the system text and a blank line before the prompt, like a system message in the conversation.
    assert render_prompt(neox, "Q: hi\nA:", system_prompt="be brief.") == "be brief.\n\nQ: hi\nA:"
    given = [{"role": "system", "content": "be brief."}, {"role": "user", "content": "Q: hi\nA:"}]
    assert render_prompt(neox, given) == render_prompt(neox, "Q: hi\nA:", system_prompt="be brief.")
    assert render_prompt(qwen, given) == render_prompt(qwen, given[1:], system_prompt="be brief.")


def test_multi_turn_prompts_use_the_template(tokenizers: dict[str, Any]) -> None:
    turns = [
        {"role": "system", "content": "be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello."},
        {"role": "user", "content": "and now?"},
    ]
    text = render_prompt(tokenizers["policy-qwen2"], turns)
    assert text.count("<|im_start|>") == 5 and text.endswith("and now?<|im_end|>\n<|im_start|>assistant\n")


def test_trl_prompt_is_a_conversation_with_a_template_and_text_without(tokenizers: dict[str, Any]) -> None:
    assert trl_prompt(tokenizers["policy-qwen2"], "hi", system_prompt="s") == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "hi"},
    ]
    assert trl_prompt(tokenizers["policy-neox"], [{"role": "user", "content": "Q: hi\nA:"}]) == "Q: hi\nA:"


def test_rendering_matches_what_trl_renders_for_a_reward_model(tokenizers: dict[str, Any]) -> None:
    """TRL's GRPO/RLOO score a conversational sample with a reward model as apply_chat_template(prompt + completion)."""
    from trl.data_utils import apply_chat_template

    prompt = [{"role": "system", "content": "be brief."}, {"role": "user", "content": "hi"}]
    completion = [{"role": "assistant", "content": "hello."}]
    for name in ("rm-llama", "rm-qwen2", "policy-qwen2"):
        tokenizer = tokenizers[name]
        expected = apply_chat_template({"messages": prompt + completion}, tokenizer)["text"]
        assert render_conversation(tokenizer, prompt, completion) == expected
        assert render_prompt(tokenizer, prompt) == apply_chat_template({"prompt": prompt}, tokenizer)["prompt"]


def test_encode_rendered_adds_special_tokens_only_to_plain_text(tokenizers: dict[str, Any]) -> None:
    llama = tokenizers["policy-llama"]
    text = render_prompt(llama, "hi")
    assert encode_rendered(llama, [text]) == [llama(text, add_special_tokens=False)["input_ids"]]
    assert encode_rendered(llama, [text])[0].count(llama.bos_token_id) == 1  # the template's BOS, not a second
    neox = tokenizers["policy-neox"]
    assert encode_rendered(neox, ["Q: hi"]) == [neox("Q: hi")["input_ids"]]
    assert encode_rendered(neox, []) == []


def test_parquet_arrays_of_messages_are_conversations(tokenizers: dict[str, Any]) -> None:
    """Parquet gives conversations back as numpy arrays of dicts; they are never str()-ed."""
    as_array = np.array([{"role": "user", "content": "hi"}], dtype=object)
    assert render_prompt(tokenizers["policy-qwen2"], as_array) == render_prompt(tokenizers["policy-qwen2"], "hi")
    assert "{" not in render_prompt(tokenizers["policy-neox"], as_array)


def test_completion_text() -> None:
    assert completion_text("x") == "x"
    assert completion_text([{"role": "assistant", "content": "x"}]) == "x"


@pytest.mark.parametrize(
    ("prompt", "kwargs", "match"),
    [
        ([], {}, r"must end with a user message; got roles \[\]"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], {}, "must end with a user message"),
        ([{"role": "user"}], {}, r"expected \{'role', 'content'\} messages"),
        ([{"role": "user", "content": 3}], {}, "message content must be text; got int"),
        (3, {}, "a prompt must be a string or a list of messages; got int"),
        (
            [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}],
            {"system_prompt": "c"},
            "already has a system message and a system prompt was given",
        ),
    ],
)
def test_malformed_prompts_are_errors(prompt: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        prompt_messages(prompt, **kwargs)


def test_multi_turn_prompt_without_a_template_is_an_error_naming_the_fix(tokenizers: dict[str, Any]) -> None:
    turns = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello."},
        {"role": "user", "content": "and now?"},
    ]
    with pytest.raises(ValueError, match=r"has no chat template.*roles \['user', 'assistant', 'user'\].*chat_template"):
        render_prompt(tokenizers["policy-neox"], turns)


def test_completion_with_other_roles_is_an_error(tokenizers: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="a conversational completion holds assistant messages only"):
        render_conversation(tokenizers["policy-qwen2"], "hi", [{"role": "user", "content": "x"}])


def test_template_that_rejects_a_system_message_names_the_option() -> None:
    sandbox = build_tokenizer()  # its template has user and assistant roles only
    with pytest.raises(ValueError, match=r"rejected the messages \(roles \['system', 'user'\]\).*drop --system-prompt"):
        render_prompt(sandbox, "sort: ba", system_prompt="be brief.")
