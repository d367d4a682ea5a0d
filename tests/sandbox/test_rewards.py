"""The candidate reward functions: deterministic, and of the quality their docstrings claim."""

import importlib
import random

import pytest

from rmteacher.sandbox import CANDIDATE_REWARDS, GROUND_TRUTH, accurate_flat, ground_truth, length_biased, noisy
from rmteacher.sandbox.task import make_prompt

PROMPTS = [make_prompt(x) for x in ("dbca", "qwer", "zyxwv")]
ANSWERS = ["abcd", "abdc", "dbca", "dcba", "abc", "abcdefg", ""]


@pytest.mark.parametrize("reward", [noisy, accurate_flat, length_biased])
def test_deterministic_and_independent_of_global_rng(reward) -> None:  # type: ignore[no-untyped-def]
    prompts = [p for p in PROMPTS for _ in ANSWERS]
    completions = ANSWERS * len(PROMPTS)
    random.seed(1)
    first = reward(prompts, completions)
    random.seed(2)
    assert reward(prompts, completions) == first
    assert reward(list(reversed(prompts)), list(reversed(completions))) == list(reversed(first))
    messages = [[{"role": "user", "content": p}] for p in prompts]
    assert reward(messages, completions) == first


def test_accurate_flat_orders_like_the_ground_truth_within_a_prompt() -> None:
    for prompt in PROMPTS:
        truth = ground_truth([prompt] * len(ANSWERS), ANSWERS)
        proxy = accurate_flat([prompt] * len(ANSWERS), ANSWERS)
        for i in range(len(ANSWERS)):
            for j in range(len(ANSWERS)):
                assert (truth[i] > truth[j]) == (proxy[i] > proxy[j])
        # Spread across answers is 0.1 x the ground truth's; the offset differs between prompts.
        assert max(proxy) - min(proxy) == pytest.approx(0.1 * (max(truth) - min(truth)))


def test_noisy_and_length_biased_make_ordering_mistakes() -> None:
    prompt = make_prompt("dbca")
    # length_biased: a long wrong answer beats a short, nearly right one.
    assert ground_truth([prompt] * 2, ["abc", "abcdxyz"])[0] > ground_truth([prompt] * 2, ["abc", "abcdxyz"])[1]
    assert length_biased([prompt] * 2, ["abc", "abcdxyz"])[0] < length_biased([prompt] * 2, ["abc", "abcdxyz"])[1]
    answers = ["abcd", "abdc", "dbca", "dcba", "abc", "abxc", "bacd", "acbd"]
    truth = ground_truth([prompt] * len(answers), answers)
    proxy = noisy([prompt] * len(answers), answers)
    assert proxy != pytest.approx(truth)
    assert sorted(range(len(answers)), key=truth.__getitem__) != sorted(range(len(answers)), key=proxy.__getitem__)


def test_specs_name_importable_callables() -> None:
    for spec in (*CANDIDATE_REWARDS, GROUND_TRUTH):
        target = spec.partition("=")[2] or spec
        module, _, name = target.partition(":")
        function = getattr(importlib.import_module(module), name)
        assert len(function([PROMPTS[0]], ["abcd"])) == 1


def test_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        noisy(PROMPTS, ["abc"])


def test_exact_match_is_one_only_for_the_sorted_letters() -> None:
    from rmteacher.sandbox.rewards import exact_match

    prompt = make_prompt("dbca")
    assert exact_match([prompt] * len(ANSWERS), ANSWERS) == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    # A chat-templated prompt, a message-list completion and surrounding whitespace score alike.
    conversation, reply = [{"role": "user", "content": prompt}], [{"role": "assistant", "content": " abcd\n"}]
    assert exact_match([conversation], [reply]) == [1.0]
    truth = ground_truth([prompt] * len(ANSWERS), ANSWERS)
    assert [t == 1.0 for t in truth] == [e == 1.0 for e in exact_match([prompt] * len(ANSWERS), ANSWERS)]
