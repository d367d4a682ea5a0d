"""Candidate reward functions of different quality as teachers, in TRL's reward-function form.

Each is ``f(prompts, completions, **kwargs) -> list[float]`` and can be named as ``rmteacher.sandbox.rewards:NAME``.
They are built from the ground truth (``rmteacher.sandbox.task:ground_truth``, perfectly accurate by definition) so
their accuracy and the variance they induce are easy to reason about:

* ``noisy``: ground truth plus Gaussian noise of std 0.5 — high variance, lower accuracy.
* ``accurate_flat``: a large per-prompt offset plus 0.1 x ground truth — perfectly accurate (strictly increasing in
  the ground truth within a prompt) but almost all its spread is between prompts, so after normalization the
  within-prompt variance is tiny. The paper's point (Theorem 1): such a teacher is accurate yet slow.
* ``length_biased``: half the ground truth plus 0.1 per character — rewards longer answers, a familiar flaw.
* ``exact_match``: 1 for exactly the sorted letters, else 0 — a verifier's reward; many prompts get the same reward
  on every sample (zero variance), the case ``rmteacher select-prompts`` is for.

For ``rmteacher study --design policies`` (the paper's Section 4.2 and Theorem 3: the same reward model can be a good
teacher for one policy and a poor one for another), four more, each plus a per-prompt offset (see
:func:`prompt_offset`):

* ``strict``: exp(3 (r - 1)), steep near a right answer and flat among poor ones; ``lenient``: 1 - exp(-3 (r + 1)),
  steep among poor answers and flat among good ones. Both are increasing in the ground truth r, so perfectly accurate
  under every policy, but the variance each induces depends on where the policy's answers lie.
* ``letters_only`` / ``order_only``: one term each of the ground truth (see ``rmteacher.sandbox.task``), blind to the
  other: the right letters whatever their order, or alphabetical order whatever the letters.

The noise is seeded by the letters and the completion text (not global RNG state), so a reward is a fixed
function of (prompt, completion): raw and chat-templated prompts, and plain or message-list completions, score alike.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from rmteacher.sandbox.task import completion_text, prompt_letters, score, target

__all__ = [
    "CANDIDATE_REWARDS",
    "GROUND_TRUTH",
    "POLICY_STUDY_REWARDS",
    "accurate_flat",
    "exact_match",
    "length_biased",
    "lenient",
    "letters_only",
    "letters_term",
    "noisy",
    "order_only",
    "order_term",
    "prompt_offset",
    "strict",
]

Prompts = Sequence[str | Sequence[Mapping[str, Any]]]
Completions = Sequence[str | Sequence[Mapping[str, Any]]]


def _standard_normal(*parts: str) -> float:
    """A N(0, 1) draw that is a fixed function of ``parts`` (``random`` seeds strings through SHA-512)."""
    return random.Random("\x00".join(parts)).gauss(0.0, 1.0)


def _pairs(prompts: Prompts, completions: Completions) -> list[tuple[str, str]]:
    if len(prompts) != len(completions):
        raise ValueError(
            f"prompts and completions must have the same length; got {len(prompts)} and {len(completions)}"
        )
    return [(prompt_letters(p), completion_text(c)) for p, c in zip(prompts, completions, strict=True)]


def noisy(prompts: Prompts, completions: Completions, **kwargs: Any) -> list[float]:
    """Ground truth + N(0, 0.5^2) noise fixed per (prompt, completion): ``[batch]`` rewards."""
    return [score(x, y) + 0.5 * _standard_normal("noisy", x, y) for x, y in _pairs(prompts, completions)]


def accurate_flat(prompts: Prompts, completions: Completions, **kwargs: Any) -> list[float]:
    """An N(0, 1) offset per prompt + 0.1 x ground truth: ``[batch]`` rewards, accurate but nearly flat per prompt."""
    return [_standard_normal("offset", x) + 0.1 * score(x, y) for x, y in _pairs(prompts, completions)]


def length_biased(prompts: Prompts, completions: Completions, **kwargs: Any) -> list[float]:
    """0.5 x ground truth + 0.1 x characters in the completion: ``[batch]`` rewards that favour longer answers."""
    return [0.5 * score(x, y) + 0.1 * len(y) for x, y in _pairs(prompts, completions)]


def exact_match(prompts: Prompts, completions: Completions, **kwargs: Any) -> list[float]:
    """1.0 when the completion is exactly the sorted letters, else 0.0: ``[batch]`` rewards of a verifier."""
    return [float(y == target(x)) for x, y in _pairs(prompts, completions)]


def letters_term(letters: str, completion: str) -> float:
    """The ground truth's ``letters`` term in [0, 1]: right letters, each used once, over max(|y|, |t|)."""
    t, y = target(letters), completion.strip()
    return float(Fraction(sum((Counter(y) & Counter(t)).values()), max(len(y), len(t))))  # exact, as task.score


def order_term(letters: str, completion: str) -> float:
    """The ground truth's ``order`` term in [0, 1]: share of adjacent pairs in order among the prompt's letters."""
    kept = [c for c in completion.strip() if c in letters]
    return float(Fraction(sum(a <= b for a, b in itertools.pairwise(kept)), len(kept) - 1)) if len(kept) > 1 else 0.0


#: Std of :func:`prompt_offset`, in the units of the rewards it is added to (all in [0, 1]).
PROMPT_OFFSET_STD = 0.2
#: Curvature of ``strict`` and ``lenient``.
SHARPNESS = 3.0


def prompt_offset(letters: str) -> float:
    """A N(0, PROMPT_OFFSET_STD^2) constant per prompt, as trained reward models carry.

    A Bradley-Terry loss sees only differences of rewards within a prompt, so a trained reward model is free to add
    any constant per prompt, and they do. RLOO's baseline cancels it, but the paper's normalization (one mean and
    std over all prompts x samples, spec §3) does not: the offset sets the scale against which the within-prompt
    spread is measured, so the normalized reward variance (the paper's Table 1 and 10 rows) tracks how much the
    reward varies *within* a prompt under the policy. Without it, a reward that varies only within prompts would
    have normalized variance near 1 under any policy.
    """
    return PROMPT_OFFSET_STD * _standard_normal("prompt-offset", letters)


def strict(prompts: Prompts, completions: Completions, **kwargs: Any) -> list[float]:
    """exp(3 (r - 1)) + offset: ``[batch]`` rewards, perfectly accurate, steep only near the right answer."""
    return [math.exp(SHARPNESS * (score(x, y) - 1.0)) + prompt_offset(x) for x, y in _pairs(prompts, completions)]


def lenient(prompts: Prompts, completions: Completions, **kwargs: Any) -> list[float]:
    """1 - exp(-3 (r + 1)) + offset: ``[batch]`` rewards, perfectly accurate, steep only among poor answers."""
    return [
        1.0 - math.exp(-SHARPNESS * (score(x, y) + 1.0)) + prompt_offset(x) for x, y in _pairs(prompts, completions)
    ]


def letters_only(prompts: Prompts, completions: Completions, **kwargs: Any) -> list[float]:
    """The ground truth's letters term + offset: ``[batch]`` rewards blind to the order of the letters."""
    return [letters_term(x, y) + prompt_offset(x) for x, y in _pairs(prompts, completions)]


def order_only(prompts: Prompts, completions: Completions, **kwargs: Any) -> list[float]:
    """The ground truth's order term + offset: ``[batch]`` rewards blind to which letters are written."""
    return [order_term(x, y) + prompt_offset(x) for x, y in _pairs(prompts, completions)]


# Specs in the `--reward-model NAME=PATH_OR_CALLABLE` form: what `rmteacher evaluate` compares by default.
CANDIDATE_REWARDS: tuple[str, ...] = tuple(
    f"{name}=rmteacher.sandbox.rewards:{name}" for name in ("noisy", "accurate_flat", "length_biased")
)
GROUND_TRUTH = "rmteacher.sandbox.task:ground_truth"
# The reward models of `rmteacher study --design policies` (Section 4.2 analogue), in its table's column order.
POLICY_STUDY_REWARDS: tuple[str, ...] = tuple(
    f"{name}=rmteacher.sandbox.rewards:{name}" for name in ("strict", "lenient", "letters_only", "order_only")
)
