"""The constraints task: each checker, the graded ground truth, the verifier, the partial credit and brevity on
hand-computed values; prompts and pairs deterministic by seed; the errors."""

from __future__ import annotations

import json

import pytest

from rmteacher.tasks.constraints import (
    KINDS,
    Constraints,
    brevity,
    check,
    count_words,
    ground_truth,
    make_pairs,
    make_prompts,
    partial_credit,
    partial_scores,
    prompt_text,
    split_prompts,
    verifier,
)

ALL = Constraints(lowercase=True, keyword="calm", max_words=6, no_commas=True)


def column(constraints: Constraints, n: int) -> dict[str, list[str]]:
    return {"constraints": [constraints.to_json()] * n}


def test_count_words_counts_tokens_with_a_letter_or_digit() -> None:
    assert count_words("the sea - is calm, 2 days.") == 6  # "-" is not a word
    assert count_words("well-known") == 1
    assert count_words("  ") == 0


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("lowercase", "the sea is calm.", True),
        ("lowercase", "The sea is calm.", False),
        ("lowercase", "", False),  # an empty answer meets nothing
        ("keyword", "It is Calm today.", True),  # case-insensitive
        ("keyword", "it is calmer today.", False),  # a whole word only
        ("max_words", "one two three four five six", True),
        ("max_words", "one two three four five six seven", False),
        ("max_words", "...", False),
        ("no_commas", "no commas here", True),
        ("no_commas", "yes, one", False),
    ],
)
def test_check(kind: str, text: str, expected: bool) -> None:
    assert check(kind, text, ALL) is expected


def test_check_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="constraint kind 'rhyme': valid kinds"):
        check("rhyme", "a b", ALL)


def test_ground_truth_verifier_and_partial_credit_by_hand() -> None:
    texts = [
        "the sea is calm.",  # all 4 met
        "The sea is calm.",  # lowercase fails: 3/4
        "The sea, so calm, is blue and wide today.",  # lowercase, max_words (9 > 6), commas fail: 1/4
        "",  # nothing
    ]
    kwargs = column(ALL, len(texts))
    assert ground_truth([""] * 4, texts, **kwargs) == [1.0, 0.75, 0.25, 0.0]
    assert verifier([""] * 4, texts, **kwargs) == [1.0, 0.0, 0.0, 0.0]
    # Text 2: 30 letters, 1 capital; 9 words against a limit of 6; 2 commas.
    assert partial_scores(texts[2], ALL) == pytest.approx(
        {"lowercase": 29 / 30, "keyword": 1.0, "max_words": 6 / 9, "no_commas": 1 / 3}
    )
    # Text 1: 12 letters, 1 capital, everything else met.
    expected = [1.0, (11 / 12 + 3) / 4, (29 / 30 + 1 + 6 / 9 + 1 / 3) / 4, 0.0]
    assert partial_credit([""] * 4, texts, **kwargs) == pytest.approx(expected)
    assert brevity([""] * 4, texts) == pytest.approx([-0.4, -0.4, -0.9, 0.0])


def test_partial_credit_keyword_is_lenient() -> None:
    only_keyword = Constraints(keyword="calm")
    assert partial_scores("CALMER seas", only_keyword) == {"keyword": 1.0}
    assert check("keyword", "CALMER seas", only_keyword) is False


def test_rewards_read_conversational_completions() -> None:
    completion = [{"role": "assistant", "content": "the sea is calm."}]
    assert ground_truth([""], [completion], **column(ALL, 1)) == [1.0]


def test_rewards_need_the_constraints_column() -> None:
    with pytest.raises(ValueError, match="no 'constraints' column reached the reward"):
        ground_truth(["p"], ["a"])
    with pytest.raises(ValueError, match="verifier: 2 completions but 1 constraints"):
        verifier(["p", "q"], ["a", "b"], constraints=[ALL.to_json()])


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ('{"rhyme": true}', r"unknown keys \['rhyme'\]"),
        ('{"lowercase": false}', "no constraint is set"),
        ('{"max_words": 0}', "max_words must be a positive integer"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_constraints_parse_errors(value: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Constraints.parse(value)


def test_constraints_round_trip() -> None:
    assert Constraints.parse(ALL.to_json()) == ALL
    assert ALL.kinds() == list(KINDS)


def test_prompt_text() -> None:
    text = prompt_text("the sea", Constraints(keyword="calm", max_words=8))
    assert text == 'Write one sentence about the sea. Include the word "calm". Use at most 8 words.'


def test_prompts_are_deterministic_distinct_and_conversational() -> None:
    first, again, other = make_prompts(50, seed=3), make_prompts(50, seed=3), make_prompts(50, seed=4)
    assert first == again
    assert first != other
    keys = {(r["topic"], r["constraints"]) for r in first}
    assert len(keys) == 50
    for row in first:
        constraints = Constraints.parse(row["constraints"])
        assert 2 <= len(constraints.kinds()) <= 3
        assert row["prompt"] == [{"role": "user", "content": prompt_text(row["topic"], constraints)}]


def test_split_is_disjoint_and_the_training_part_is_stable() -> None:
    train, heldout = split_prompts(20, 10, seed=0)
    assert [r["prompt_id"] for r in train] == [f"train-{i:05d}" for i in range(20)]
    assert [r["prompt_id"] for r in heldout] == [f"eval-{i:05d}" for i in range(10)]
    assert not {r["constraints"] + r["topic"] for r in train} & {r["constraints"] + r["topic"] for r in heldout}
    with pytest.raises(ValueError, match="num_train and num_eval must be >= 1; got 0 and 5"):
        split_prompts(0, 5, seed=0)
    with pytest.raises(ValueError, match="num_prompts must be >= 1; got 0"):
        make_prompts(0, seed=0)


def test_pairs_the_ground_truth_strictly_prefers_chosen() -> None:
    prompts = make_prompts(60, seed=1)
    pairs = make_pairs(prompts, seed=2)
    assert pairs == make_pairs(prompts, seed=2)
    for row, pair in zip(prompts, pairs, strict=True):
        assert pair["prompt_id"] == row["prompt_id"]
        kwargs = {"constraints": [row["constraints"]] * 2}
        chosen, rejected = ground_truth(["", ""], [pair["chosen"], pair["rejected"]], **kwargs)
        assert chosen == 1.0 > rejected, (row, pair)
    assert json.dumps(pairs)  # plain JSON rows
