"""The sandbox task, "sort these letters", and its ground-truth reward.

A prompt shows 4 to 7 distinct lowercase letters (``"sort: qdamz"``); the right completion is the same letters in
alphabetical order (``"admqz"``). The ground truth grades every completion on a fine scale in [-1, 1] instead of
right/wrong, because reward variance under the policy is what the paper is about: a 0/1 reward on a task the
policy mostly fails would leave most prompts with zero variance and say little about the teachers.

The reward of a completion ``y`` (surrounding whitespace stripped) for the sorted target ``t`` is

    r(x, y) = edit + (letters + order) / 2 - 1            in [-1, 1]

    edit    = 1 - levenshtein(y, t) / max(|y|, |t|)        how close the string is, character by character
    letters = |multiset(y) ∩ multiset(t)| / max(|y|, |t|)  the right letters, each used once, nothing extra
    order   = fraction of adjacent pairs in s that are in order, where s is y with letters not in t removed
              (0 when s has fewer than 2 letters)

Each term is in [0, 1], so r = 1 exactly when y == t and r = -1 for an empty or letter-free answer. The sum is
computed exactly, in rationals, and rounded to a float once, so answers that are equally good tie exactly (float
arithmetic gave 0.0833...326 and 0.0833...348 for two such answers, and ties are what on-policy accuracy and
train-rm's tie handling look for). For target
``"abcd"``: ``"abc"`` -> 0.625, ``"abdc"`` -> 1/3, ``"dbca"`` (the input copied) -> 1/6, ``"dcba"`` -> -0.5.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

__all__ = [
    "MAX_LETTERS",
    "MIN_LETTERS",
    "PROMPT_PREFIX",
    "completion_text",
    "ground_truth",
    "levenshtein",
    "make_prompt",
    "prompt_letters",
    "score",
    "target",
]

PROMPT_PREFIX = "sort: "
MIN_LETTERS = 4
MAX_LETTERS = 7

# Matches the raw user text and also a prompt with the chat template applied ("<|user|>sort: qdamz<|eos|>...").
_PROMPT_PATTERN = re.compile(re.escape(PROMPT_PREFIX) + r"([a-z]+)")


def make_prompt(letters: str) -> str:
    """The user text for ``letters``: ``"qdamz"`` -> ``"sort: qdamz"``."""
    return PROMPT_PREFIX + letters


def _message_text(messages: Sequence[Mapping[str, Any]], role: str) -> str:
    """Content of the last message with ``role`` in a conversational prompt or completion (TRL's format)."""
    for message in reversed(messages):
        if message.get("role") == role:
            return str(message.get("content", ""))
    raise ValueError(f"expected a message with role {role!r}; got roles {[m.get('role') for m in messages]}")


def prompt_letters(prompt: str | Sequence[Mapping[str, Any]]) -> str:
    """The letters to sort, from a raw prompt, a chat-templated prompt, or a list of chat messages.

    Raises:
        ValueError: no ``"sort: <letters>"`` in the prompt, or fewer than 2 letters.
    """
    text = prompt if isinstance(prompt, str) else _message_text(prompt, "user")
    match = _PROMPT_PATTERN.search(text)
    if match is None:
        raise ValueError(f"prompt must contain {PROMPT_PREFIX!r} followed by lowercase letters; got {text!r}")
    letters = match.group(1)
    if len(letters) < 2:
        raise ValueError(f"prompt must have at least 2 letters to sort; got {text!r}")
    return letters


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """A completion as plain text (TRL passes a list of messages for conversational data), whitespace stripped."""
    text = completion if isinstance(completion, str) else _message_text(completion, "assistant")
    return text.strip()


def target(letters: str) -> str:
    """The right answer: the letters in alphabetical order."""
    return "".join(sorted(letters))


def levenshtein(a: str, b: str) -> int:
    """Edit distance between two strings (insertions, deletions and substitutions each cost 1).

    Plain dynamic programming over one row, O(|a| |b|); the strings here are a few characters long.
    """
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def score(letters: str, completion: str) -> float:
    """The ground-truth reward of one completion for the letters ``letters`` (formula in the module docstring).

    Args:
        letters: the letters shown in the prompt, e.g. ``"qdamz"`` (see :func:`prompt_letters`).
        completion: the completion text; surrounding whitespace is ignored.

    Returns:
        A reward in [-1, 1]; 1 exactly when the completion is the sorted letters.
    """
    t = target(letters)
    y = completion.strip()
    longest = max(len(y), len(t))
    edit = 1 - Fraction(levenshtein(y, t), longest)
    letters_term = Fraction(sum((Counter(y) & Counter(t)).values()), longest)
    kept = [c for c in y if c in t]
    pairs = len(kept) - 1
    order = Fraction(sum(a <= b for a, b in itertools.pairwise(kept)), pairs) if pairs > 0 else Fraction(0)
    return float(edit + (letters_term + order) / 2 - 1)


def ground_truth(
    prompts: Sequence[str | Sequence[Mapping[str, Any]]],
    completions: Sequence[str | Sequence[Mapping[str, Any]]],
    **kwargs: Any,
) -> list[float]:
    """The ground-truth reward in TRL's reward-function form, usable as ``rmteacher.sandbox.task:ground_truth``.

    Args:
        prompts: ``[batch]`` raw or chat-templated prompt strings, or lists of chat messages.
        completions: ``[batch]`` completion strings, or lists of chat messages (TRL's conversational format).
        **kwargs: whatever else the trainer passes (``completion_ids``, dataset columns, ...); ignored.

    Returns:
        ``[batch]`` rewards in [-1, 1].
    """
    if len(prompts) != len(completions):
        raise ValueError(
            f"prompts and completions must have the same length; got {len(prompts)} and {len(completions)}"
        )
    return [score(prompt_letters(p), completion_text(c)) for p, c in zip(prompts, completions, strict=True)]
