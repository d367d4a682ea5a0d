"""Sampling (rmteacher.sampling) on the zoo's policies: every end token stops, stop strings, clean texts, seeds."""

from types import SimpleNamespace
from typing import Any

import pytest

from rmteacher.loading import load_policy
from rmteacher.sampling import Completion, end_token_ids, sample_completions

CHAT_PROMPTS = ["the cat sat on the mat", "big red dog jumps", "we walk home slowly", "a bird sings at dawn"]
PLAIN_PROMPTS = [f"Q: {p}\nA:" for p in CHAT_PROMPTS]


@pytest.fixture(scope="module")
def policies(zoo: Any) -> dict[str, tuple[Any, Any]]:
    return {name: load_policy(str(path), device="cpu") for name, path in zoo.policies.items()}


def _sample(policy: tuple[Any, Any], prompts: list[Any], **kwargs: Any) -> list[Completion]:
    model, tokenizer = policy
    options = {"samples_per_prompt": 8, "max_new_tokens": 32, "seed": 0, "progress": False, **kwargs}
    return sample_completions(model, tokenizer, prompts, **options)


def _prompts(name: str) -> list[str]:
    return PLAIN_PROMPTS if name == "neox" else CHAT_PROMPTS


def test_end_token_ids_are_the_tokenizers_eos_and_the_generation_configs() -> None:
    def model(eos: Any) -> Any:
        return SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=eos))

    tokenizer = SimpleNamespace(eos_token_id=1)
    assert end_token_ids(model([1, 4]), tokenizer) == [1, 4]
    assert end_token_ids(model([4, 1]), tokenizer) == [1, 4]  # TRL's order: the tokenizer's first, no repeats
    assert end_token_ids(model(7), tokenizer) == [1, 7]
    assert end_token_ids(model(None), tokenizer) == [1]
    assert end_token_ids(model([4]), SimpleNamespace(eos_token_id=None)) == [4]
    with pytest.raises(ValueError, match="the policy has no end token"):
        end_token_ids(model(None), SimpleNamespace(eos_token_id=None))


def test_llama3_policy_stops_at_eot(policies: dict[str, tuple[Any, Any]]) -> None:
    """generation_config.eos_token_id = [<|end_of_text|>, <|eot_id|>]: the tokenizer's EOS alone never stops it."""
    model, tokenizer = policies["llama"]
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert end_token_ids(model, tokenizer) == [tokenizer.eos_token_id, eot]
    completions = _sample(policies["llama"], CHAT_PROMPTS)
    assert sum(c.finished for c in completions) / len(completions) >= 0.9
    assert all(c.token_ids[-1] == eot for c in completions if c.finished)
    # What stopping on the tokenizer's EOS only did (issue 10, item 3): nothing finishes, text runs on.
    configured = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    try:
        old = _sample(policies["llama"], CHAT_PROMPTS)
    finally:
        model.generation_config.eos_token_id = configured
    assert sum(c.finished for c in old) / len(old) <= 0.2


@pytest.mark.parametrize(("name", "least_finished"), [("neox", 0.6), ("qwen2", 0.9), ("llama", 0.9)])
def test_completions_hold_no_special_or_end_of_turn_text(
    policies: dict[str, tuple[Any, Any]], name: str, least_finished: float
) -> None:
    model, tokenizer = policies[name]
    completions = _sample(policies[name], _prompts(name))
    ends = end_token_ids(model, tokenizer)
    specials = set(tokenizer.all_special_tokens) | {t.content for t in tokenizer.added_tokens_decoder.values()}
    assert len(completions) == 8 * len(CHAT_PROMPTS)
    assert sum(c.finished for c in completions) / len(completions) >= least_finished
    for c in completions:
        assert not any(s in c.text for s in specials), c.text
        ids = list(c.token_ids)
        if c.finished:
            assert ids[-1] in ends and not set(ids[:-1]) & set(ends)
            ids = ids[:-1]
        else:
            assert len(ids) == 32 and not set(ids) & set(ends)
        assert c.text == tokenizer.decode(ids, skip_special_tokens=True)
        assert c.num_tokens == len(c.token_ids)


def test_stop_strings_end_completions(policies: dict[str, tuple[Any, Any]]) -> None:
    tokenizer = policies["neox"][1]
    plain = _sample(policies["neox"], PLAIN_PROMPTS)
    stopped = _sample(policies["neox"], PLAIN_PROMPTS, stop=["\n", " the"])
    hits = 0
    for before, after in zip(plain, stopped, strict=True):
        assert "\n" not in after.text and " the" not in after.text
        cut = min((before.text.find(s) for s in ("\n", " the") if s in before.text), default=-1)
        if cut >= 0:  # same seed, same draws: the stopped text is the unstopped one, cut before the stop string
            hits += 1
            assert after.finished and after.text == before.text[:cut]
            assert tokenizer.decode(after.token_ids).startswith(after.text)
            assert any(s in tokenizer.decode(after.token_ids) for s in ("\n", " the"))
            assert len(after.token_ids) <= len(before.token_ids)
        else:
            assert after == before
    assert hits >= 4


def test_conversational_and_plain_prompts_give_the_same_samples(policies: dict[str, tuple[Any, Any]]) -> None:
    for name in ("qwen2", "llama"):
        conversations = [[{"role": "user", "content": p}] for p in CHAT_PROMPTS]
        assert _sample(policies[name], conversations) == _sample(policies[name], CHAT_PROMPTS)


def test_system_prompt_reaches_the_policy(policies: dict[str, tuple[Any, Any]]) -> None:
    with_system = _sample(policies["qwen2"], CHAT_PROMPTS, system_prompt="be brief.")
    conversations = [[{"role": "system", "content": "be brief."}, {"role": "user", "content": p}] for p in CHAT_PROMPTS]
    assert with_system == _sample(policies["qwen2"], conversations)
    assert with_system != _sample(policies["qwen2"], CHAT_PROMPTS)


def test_seeded_sharded_and_leaves_the_global_rng_alone(policies: dict[str, tuple[Any, Any]]) -> None:
    import torch

    options = {"prompts_per_batch": 1, "samples_per_prompt": 3}
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    whole = _sample(policies["qwen2"], CHAT_PROMPTS, **options)
    assert torch.rand(1) == expected_next
    assert whole == _sample(policies["qwen2"], CHAT_PROMPTS, **options)
    shards = [_sample(policies["qwen2"], CHAT_PROMPTS, rank=r, world_size=2, **options) for r in (0, 1)]
    assert sorted(shards[0] + shards[1], key=lambda c: (c.prompt_index, c.sample_id)) == whole
    assert whole != _sample(policies["qwen2"], CHAT_PROMPTS, **{**options, "seed": 1})


def test_bad_arguments_are_errors(policies: dict[str, tuple[Any, Any]]) -> None:
    with pytest.raises(ValueError, match="samples_per_prompt must be >= 1; got 0"):
        _sample(policies["qwen2"], CHAT_PROMPTS, samples_per_prompt=0)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1; got 0"):
        _sample(policies["qwen2"], CHAT_PROMPTS, max_new_tokens=0)
    with pytest.raises(ValueError, match="has no chat template"):
        _sample(policies["neox"], [[{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]])
