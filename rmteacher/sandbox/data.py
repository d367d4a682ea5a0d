"""Seeded data for the sandbox task: prompt sets, mixed-quality demonstrations, and off-policy preference pairs.

Everything here is pure Python over ``random.Random`` instances passed in, so the same seed gives the same rows
on every machine, independent of torch and of global RNG state.

The two generators of answers are built to show the mechanism that makes on-policy data matter in the paper
(Section 4.1): a reward model trained on pairs unlike the policy's outputs learns distinctions that the policy's
samples do not exhibit, so it barely varies across them.

- The SFT demonstrations come from :func:`noisy_sort`: the sorted letters with a typical *ordering* mistake, and
  with the vowels always left out (:data:`BLIND_SPOT`). The fine-tuned policy inherits both: its samples for one
  prompt differ in their order, and all of them miss the same letters.
- The off-policy preference pairs come from :func:`letters_variant`: answers in the right order whose *letters*
  are wrong (some left out, some not in the prompt added), a different distribution from the policy's samples, as
  the paper's UltraFeedback pairs are (spec §3, "Data").

A reward model trained only on those pairs learns which letters an answer has, something the policy's samples for
one prompt share; its reward moves from prompt to prompt (how many vowels each misses) and little within one, so its
normalized reward variance under the policy is low. A reward model trained on the policy's own samples learns their
ordering mistakes, and its variance is high. ``rmteacher study`` trains the five mixes in between (Table 1).
"""

from __future__ import annotations

import dataclasses
import random
import string
from collections.abc import Iterable
from typing import Any

from rmteacher.sandbox.task import MAX_LETTERS, MIN_LETTERS, make_prompt, score, target

__all__ = [
    "BLIND_SPOT",
    "LENGTH_MISTAKES",
    "ORDER_MISTAKES",
    "SandboxTables",
    "length_mistakes",
    "letters_variant",
    "make_tables",
    "noisy_sort",
    "order_mistakes",
    "preference_pair",
    "prompt_rows",
    "random_letters",
]

# Mixture of the SFT demonstrations: (probability, kind). Every kind keeps the answer's letters (before the blind
# spot), so the policy's samples for one prompt differ in order, not in which letters they have (module docstring).
DEMONSTRATION_MIX: tuple[tuple[float, str], ...] = (
    (0.35, "sorted"),
    (0.35, "swap"),
    (0.15, "copy"),
    (0.15, "prefix"),
)
#: Letters every SFT demonstration leaves out: the policy's systematic mistake, the same in all its samples.
BLIND_SPOT = frozenset("aeiou")


def random_letters(rng: random.Random) -> str:
    """``MIN_LETTERS`` to ``MAX_LETTERS`` distinct lowercase letters in random order."""
    return "".join(rng.sample(string.ascii_lowercase, rng.randint(MIN_LETTERS, MAX_LETTERS)))


def distinct_letter_sets(rng: random.Random, count: int, *, exclude: Iterable[str] = ()) -> list[str]:
    """``count`` letter strings, none repeated and none in ``exclude`` (so prompt sets can be kept disjoint)."""
    seen = set(exclude)
    out: list[str] = []
    while len(out) < count:
        letters = random_letters(rng)
        if letters not in seen:
            seen.add(letters)
            out.append(letters)
    return out


def prompt_rows(letter_sets: Iterable[str], *, prefix: str) -> list[dict[str, str]]:
    """Rows ``{"prompt_id": f"{prefix}-00000", "prompt": "sort: ..."}`` in the given order."""
    return [{"prompt_id": f"{prefix}-{i:05d}", "prompt": make_prompt(letters)} for i, letters in enumerate(letter_sets)]


def noisy_sort(letters: str, rng: random.Random) -> str:
    """A demonstration of mixed quality: the sorted letters, or with one typical ordering mistake; vowels left out.

    Kinds (probabilities in :data:`DEMONSTRATION_MIX`): ``sorted`` (right), ``swap`` (two neighbours exchanged),
    ``copy`` (the input unchanged), ``prefix`` (a sorted prefix, then the remaining letters in input order). Then the
    letters of :data:`BLIND_SPOT` are removed, whatever the kind: ``"qdamz"`` -> ``"dmqz"`` at best.
    """
    kinds = [kind for _, kind in DEMONSTRATION_MIX]
    weights = [p for p, _ in DEMONSTRATION_MIX]
    kind = rng.choices(kinds, weights=weights)[0]
    answer = list(target(letters))
    if kind == "swap":
        i = rng.randrange(len(answer) - 1)
        answer[i], answer[i + 1] = answer[i + 1], answer[i]
    elif kind == "copy":
        answer = list(letters)
    elif kind == "prefix":
        head = answer[: rng.randrange(1, len(answer))]
        answer = head + [c for c in letters if c not in head]
    return "".join(c for c in answer if c not in BLIND_SPOT)


# Two more demonstration mixes for `rmteacher study --design policies` (the paper's Section 4.2: initial policies
# fine-tuned on differently distributed data). Both are right as often as DEMONSTRATION_MIX (35%); they differ in
# *which* property of the answer their mistakes break, so each later policy spreads its samples along another axis.
LENGTH_MISTAKES: tuple[tuple[float, str], ...] = (
    (0.35, "sorted"),
    (0.25, "drop"),
    (0.10, "drop2"),
    (0.15, "duplicate"),
    (0.15, "extra"),
)
ORDER_MISTAKES: tuple[tuple[float, str], ...] = (
    (0.35, "sorted"),
    (0.25, "swap"),
    (0.15, "swap2"),
    (0.15, "transpose"),
    (0.10, "reverse"),
)


def length_mistakes(letters: str, rng: random.Random) -> str:
    """A demonstration whose mistakes change the answer's letters and length but never their order.

    Kinds (probabilities in :data:`LENGTH_MISTAKES`): ``sorted`` (right), ``drop``/``drop2`` (one/two letters left
    out), ``duplicate`` (one letter written twice, in place), ``extra`` (a letter not in the prompt inserted in
    alphabetical place). The answer is always in alphabetical order.
    """
    kind = rng.choices([k for _, k in LENGTH_MISTAKES], weights=[p for p, _ in LENGTH_MISTAKES])[0]
    answer = list(target(letters))
    if kind in ("drop", "drop2"):
        for _ in range(1 if kind == "drop" else 2):
            del answer[rng.randrange(len(answer))]
    elif kind == "duplicate":
        i = rng.randrange(len(answer))
        answer.insert(i, answer[i])
    elif kind == "extra":
        answer.append(rng.choice([c for c in string.ascii_lowercase if c not in letters]))
        answer.sort()
    return "".join(answer)


def order_mistakes(letters: str, rng: random.Random) -> str:
    """A demonstration with exactly the prompt's letters, whose mistakes are only in their order.

    Kinds (probabilities in :data:`ORDER_MISTAKES`): ``sorted`` (right), ``swap``/``swap2`` (one/two exchanges of
    neighbours), ``transpose`` (two letters anywhere exchanged), ``reverse`` (reverse alphabetical order). Each is a
    perturbation of the sorted answer, as :func:`length_mistakes`' are, so both policies learn the task about as
    well; the length and the letters are always right.
    """
    kind = rng.choices([k for _, k in ORDER_MISTAKES], weights=[p for p, _ in ORDER_MISTAKES])[0]
    answer = list(target(letters))
    if kind in ("swap", "swap2"):
        for _ in range(1 if kind == "swap" else 2):
            i = rng.randrange(len(answer) - 1)
            answer[i], answer[i + 1] = answer[i + 1], answer[i]
    elif kind == "transpose":
        i, j = rng.sample(range(len(answer)), 2)
        answer[i], answer[j] = answer[j], answer[i]
    elif kind == "reverse":
        answer.reverse()
    return "".join(answer)


def letters_variant(letters: str, rng: random.Random) -> str:
    """An off-policy answer, always in alphabetical order, whose letters are wrong in a random way.

    0, 1 or 2 of the prompt's letters are left out and 0, 1 or 2 letters not in the prompt are added, each count
    uniform: ``"qdamz"`` -> ``"admqz"``, ``"admz"``, ``"adkmqwz"``. Leaving out and adding are equally likely, so an
    answer's length says nothing of its quality on average and a reward model cannot learn "longer is better" from
    these pairs (a generator that left out more letters than it added taught exactly that, and RL from its reward
    model then appended letters). The answers differ in their letters only, which the policy's samples for one
    prompt do not (module docstring).
    """
    answer = sorted(letters)
    kept = rng.sample(answer, len(answer) - rng.choice((0, 1, 2)))
    extra = rng.sample([c for c in string.ascii_lowercase if c not in letters], rng.choice((0, 1, 2)))
    return "".join(sorted(kept + extra))


def preference_pair(letters: str, rng: random.Random, *, max_tries: int = 100) -> tuple[str, str, float, float]:
    """Two :func:`letters_variant` answers ordered by the ground truth, redrawn until their scores differ.

    Returns:
        ``(chosen, rejected, score_chosen, score_rejected)`` with ``score_chosen > score_rejected``.
    """
    for _ in range(max_tries):
        first, second = letters_variant(letters, rng), letters_variant(letters, rng)
        first_score, second_score = score(letters, first), score(letters, second)
        if first_score > second_score:
            return first, second, first_score, second_score
        if second_score > first_score:
            return second, first, second_score, first_score
    raise RuntimeError(f"no two answers with different scores for {letters!r} in {max_tries} tries")


@dataclasses.dataclass(frozen=True)
class SandboxTables:
    """The rows of the sandbox's data files, before they are written."""

    eval_prompts: list[dict[str, Any]]  # prompt_id, prompt
    train_prompts: list[dict[str, Any]]  # prompt_id, prompt
    demonstrations: list[dict[str, Any]]  # prompt_id, prompt, completion, score
    pairs: list[dict[str, Any]]  # prompt_id, prompt, chosen, rejected, score_chosen, score_rejected


def make_tables(seed: int, *, num_eval: int, num_train: int, num_demonstrations: int) -> SandboxTables:
    """All data of one sandbox build: a fixed function of the arguments.

    Each table has its own ``random.Random`` stream named after the seed, so changing one size leaves the others'
    draws alone. Eval prompts are drawn first, then train and demonstration prompts excluding what came before,
    so the three prompt sets are disjoint. There is one preference pair per train prompt.
    """
    eval_letters = distinct_letter_sets(random.Random(f"{seed}:eval"), num_eval)
    train_letters = distinct_letter_sets(random.Random(f"{seed}:train"), num_train, exclude=eval_letters)
    demo_letters = distinct_letter_sets(
        random.Random(f"{seed}:demonstrations"), num_demonstrations, exclude=eval_letters + train_letters
    )
    demo_rng = random.Random(f"{seed}:demonstration-answers")
    demonstrations: list[dict[str, Any]] = []
    for row, letters in zip(prompt_rows(demo_letters, prefix="demo"), demo_letters, strict=True):
        completion = noisy_sort(letters, demo_rng)
        demonstrations.append(row | {"completion": completion, "score": score(letters, completion)})
    train_prompts = prompt_rows(train_letters, prefix="train")
    pair_rng = random.Random(f"{seed}:pairs")
    pairs: list[dict[str, Any]] = []
    for row, letters in zip(train_prompts, train_letters, strict=True):
        chosen, rejected, score_chosen, score_rejected = preference_pair(letters, pair_rng)
        pair = {"chosen": chosen, "rejected": rejected, "score_chosen": score_chosen, "score_rejected": score_rejected}
        pairs.append(row | pair)
    return SandboxTables(prompt_rows(eval_letters, prefix="eval"), train_prompts, demonstrations, pairs)
