"""Candidate reward functions of different quality as teachers, in TRL's reward-function form.

Each is ``f(prompts, completions, **kwargs) -> list[float]`` and can be named as ``rmteacher.sandbox.rewards:NAME``.
They are built from the ground truth (``rmteacher.sandbox.task:ground_truth``, perfectly accurate by definition) so
their accuracy and the variance they induce are easy to reason about:

* ``noisy``: ground truth plus Gaussian noise of std 0.5 — high variance, lower accuracy.
* ``accurate_flat``: a large per-prompt offset plus 0.1 x ground truth — perfectly accurate (strictly increasing in
  the ground truth within a prompt) but almost all its spread is between prompts, so after normalization the
  within-prompt variance is tiny. The paper's point (Theorem 1): such a teacher is accurate yet slow.
* ``length_biased``: half the ground truth plus 0.1 per character — rewards longer answers, a familiar flaw.

The noise is seeded by the letters and the completion text (not global RNG state), so a reward is a fixed
function of (prompt, completion): raw and chat-templated prompts, and plain or message-list completions, score alike.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from rmteacher.sandbox.task import completion_text, prompt_letters, score

__all__ = ["CANDIDATE_REWARDS", "GROUND_TRUTH", "accurate_flat", "length_biased", "noisy"]

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


# Specs in the `--reward-model NAME=PATH_OR_CALLABLE` form: what `rmteacher evaluate` compares by default.
CANDIDATE_REWARDS: tuple[str, ...] = tuple(
    f"{name}=rmteacher.sandbox.rewards:{name}" for name in ("noisy", "accurate_flat", "length_biased")
)
GROUND_TRUTH = "rmteacher.sandbox.task:ground_truth"
