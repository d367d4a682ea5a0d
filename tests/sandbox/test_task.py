"""The ground truth: values computed by hand, range, and TRL's reward-function form."""

import random
import string
from fractions import Fraction

import pytest

from rmteacher.sandbox.task import ground_truth, levenshtein, make_prompt, prompt_letters, score, target
from rmteacher.sandbox.tokenizer import build_tokenizer


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("abc", "abc", 0), ("abcd", "dcba", 4)],
)
def test_levenshtein_by_hand(a: str, b: str, distance: int) -> None:
    assert levenshtein(a, b) == distance


# Letters "dbca", target "abcd"; r = edit + (letters + order) / 2 - 1 (see rmteacher/sandbox/task.py).
@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("abcd", 1.0),  # right
        (" abcd\n", 1.0),  # surrounding whitespace ignored
        ("abc", 0.75 + (0.75 + 1.0) / 2 - 1),  # one letter missing: 0.625
        ("abcdd", 0.8 + (0.8 + 1.0) / 2 - 1),  # one letter extra: 0.7
        ("abdc", 0.5 + (1.0 + 2 / 3) / 2 - 1),  # neighbours swapped: 1/3
        ("abxc", 0.5 + (0.75 + 1.0) / 2 - 1),  # a wrong letter, the right ones in order: 0.375
        ("dbca", 0.5 + (1.0 + 1 / 3) / 2 - 1),  # the input copied: 1/6
        ("dcba", 0.0 + (1.0 + 0.0) / 2 - 1),  # reversed: -0.5
        ("xyz", -1.0),  # no right letter
        ("", -1.0),  # nothing
    ],
)
def test_score_by_hand(completion: str, expected: float) -> None:
    assert score("dbca", completion) == pytest.approx(expected, abs=1e-12)


def test_different_wrong_answers_get_different_rewards() -> None:
    wrong = ["abc", "abcdd", "abdc", "abxc", "dbca", "dcba", "xyz"]
    values = [score("dbca", y) for y in wrong]
    assert len({round(v, 9) for v in values}) == len(wrong)
    assert all(v < 1.0 for v in values)


def test_score_range_and_maximum_only_at_the_sorted_string() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        letters = "".join(rng.sample(string.ascii_lowercase, rng.randint(2, 8)))
        completion = "".join(rng.choices(string.ascii_lowercase + " ", k=rng.randint(0, 10)))
        value = score(letters, completion)
        assert -1.0 <= value <= 1.0
        assert (value == 1.0) == (completion.strip() == target(letters))
        assert score(letters, target(letters)) == 1.0


def test_ground_truth_accepts_raw_templated_and_conversational_prompts() -> None:
    tokenizer = build_tokenizer()
    raw = make_prompt("dbca")
    messages = [{"role": "user", "content": raw}]
    templated = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    completion = [{"role": "assistant", "content": "abdc"}]
    rewards = ground_truth([raw, templated, messages], ["abdc", "abdc", completion], completion_ids=None)
    assert rewards == pytest.approx([1 / 3] * 3)


def test_prompt_letters() -> None:
    assert prompt_letters("sort: qdamz") == "qdamz"
    assert prompt_letters("<|user|>sort: qdamz<|eos|><|assistant|>") == "qdamz"


@pytest.mark.parametrize(
    ("prompt", "match"),
    [("sort these: abc", "must contain 'sort: '"), ("sort: a", "at least 2 letters"), ([], "role 'user'")],
)
def test_bad_prompts_are_named(prompt: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ground_truth([prompt], ["abc"])  # type: ignore[list-item]


def test_ground_truth_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length; got 2 and 1"):
        ground_truth(["sort: ab", "sort: cd"], ["ab"])


def test_equally_good_answers_tie_exactly() -> None:
    # Equal rationals, summed in different orders of float terms: float arithmetic gave -0.05000000000000004 and
    # -0.04999999999999993 for the first pair; the exact sum rounds both to one float.
    assert score("lcdjn", "jdn") == score("lcdjn", "jlndc") == -0.05
    assert score("vxozck", "czo") == score("vxozck", "xzkv") == float(Fraction(-1, 6))
    # "jdn" for target "cdjln": edit 1 - 3/5 (3 edits), letters 3/5, order 1/2 (j > d, d < n).
    assert score("lcdjn", "jdn") == float(1 - Fraction(3, 5) + (Fraction(3, 5) + Fraction(1, 2)) / 2 - 1)
