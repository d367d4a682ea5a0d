"""Seeded data: prompt sets, demonstrations and preference pairs."""

import random

import pytest

from rmteacher.sandbox.data import BLIND_SPOT, letters_variant, make_tables, noisy_sort, preference_pair
from rmteacher.sandbox.task import MAX_LETTERS, MIN_LETTERS, prompt_letters, score, target


@pytest.fixture(scope="module")
def tables():  # type: ignore[no-untyped-def]
    return make_tables(0, num_eval=50, num_train=200, num_demonstrations=300)


def test_same_seed_same_tables_and_other_seed_other_tables(tables) -> None:  # type: ignore[no-untyped-def]
    assert make_tables(0, num_eval=50, num_train=200, num_demonstrations=300) == tables
    other = make_tables(1, num_eval=50, num_train=200, num_demonstrations=300)
    assert other.train_prompts != tables.train_prompts
    assert other.pairs != tables.pairs


def test_prompt_sets_are_disjoint_and_well_formed(tables) -> None:  # type: ignore[no-untyped-def]
    sets = [tables.eval_prompts, tables.train_prompts, tables.demonstrations]
    texts = [{row["prompt"] for row in rows} for rows in sets]
    assert [len(t) for t in texts] == [50, 200, 300]  # no repeats within a set
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert list(tables.train_prompts[0]) == ["prompt_id", "prompt"]
    assert tables.eval_prompts[3]["prompt_id"] == "eval-00003"
    for row in tables.train_prompts:
        letters = prompt_letters(row["prompt"])
        assert MIN_LETTERS <= len(letters) <= MAX_LETTERS
        assert len(set(letters)) == len(letters)


def test_pairs_one_per_train_prompt_and_labelled_by_the_ground_truth(tables) -> None:  # type: ignore[no-untyped-def]
    assert [p["prompt_id"] for p in tables.pairs] == [r["prompt_id"] for r in tables.train_prompts]
    for pair in tables.pairs:
        assert list(pair) == ["prompt_id", "prompt", "chosen", "rejected", "score_chosen", "score_rejected"]
        letters = prompt_letters(pair["prompt"])
        assert pair["score_chosen"] == score(letters, pair["chosen"])
        assert pair["score_rejected"] == score(letters, pair["rejected"])
        assert pair["score_chosen"] > pair["score_rejected"]


def test_demonstrations_are_of_mixed_quality_and_always_miss_the_blind_spot(tables) -> None:  # type: ignore[no-untyped-def]
    scores = [row["score"] for row in tables.demonstrations]
    # Right only when drawn sorted (35%) and the prompt has no vowel (about 30% of prompts), or by chance.
    right = sum(s == 1.0 for s in scores) / len(scores)
    assert 0.05 < right < 0.25
    assert sum(s < 0.5 for s in scores) / len(scores) > 0.2
    assert len({round(s, 6) for s in scores}) > 10
    for row in tables.demonstrations:
        letters = prompt_letters(row["prompt"])
        assert sorted(row["completion"]) == sorted(c for c in letters if c not in BLIND_SPOT)  # only order varies


def test_noisy_sort_by_hand() -> None:
    outputs = {noisy_sort("qdamz", random.Random(seed)) for seed in range(200)}
    assert "dmqz" in outputs  # sorted, 'a' left out
    assert "qdmz" in outputs  # the input copied, 'a' left out
    assert all(sorted(o) == list("dmqz") for o in outputs)


def test_generators_are_seeded() -> None:
    for generator in (noisy_sort, letters_variant, preference_pair):
        assert generator("qdamz", random.Random(3)) == generator("qdamz", random.Random(3))


def test_letters_variant_is_in_order_and_varies_only_in_its_letters() -> None:
    rng = random.Random(0)
    outputs = [letters_variant("gfedcba", rng) for _ in range(300)]
    assert all(list(o) == sorted(o) and len(set(o)) == len(o) for o in outputs)
    assert target("gfedcba") in outputs
    left_out = [len(set("gfedcba") - set(o)) for o in outputs]
    added = [len(set(o) - set("gfedcba")) for o in outputs]
    assert set(left_out) == set(added) == {0, 1, 2}
    assert abs(sum(left_out) - sum(added)) < 0.15 * len(outputs)  # as many letters added as left out: length is no cue
