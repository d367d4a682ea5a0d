"""One sentence under instruction constraints (IFEval's kind), a verifiable task a 135M instruct model partly solves.

Each prompt asks for one sentence about a topic under two or three of four constraints, e.g. ``Write one sentence
about the ocean. Use only lowercase letters. Include the word "calm". Use at most 8 words.`` The constraints ride
along in the prompts table's ``constraints`` column (a JSON object), which reaches the rewards as a keyword argument
(TRL passes a dataset's other columns to reward functions; ``rmteacher evaluate`` does the same).

Why this task (issue 18, part 7): every constraint is checked exactly by a few lines of code, so the ground truth
is programmatic and *graded* (the share of a prompt's constraints met) rather than 0/1; SmolLM2-135M-Instruct meets
some constraints about half the time (a keyword, no commas) and others rarely (a word limit, all lowercase), so the
exact-match verifier is flat on most prompts and not on others; and a short answer meets the word limit while
failing the keyword, which gives the hackable reward a pull away from the truth. One-word answers and small
arithmetic are right or wrong: a graded truth for them would be an invented distance, not the task's own measure.

The candidate teachers, all ``f(prompts, completions, **kwargs) -> list[float]`` (name them as
``rmteacher.tasks.constraints:NAME``):

* :func:`ground_truth`: the share of the prompt's constraints the completion meets (graded, in [0, 1]);
* :func:`verifier`: 1 when every constraint is met, else 0 (exact match: accurate, but flat on prompts the policy
  always fails or always solves);
* :func:`partial_credit`: a soft score per constraint (share of lowercase letters, the keyword as a substring,
  ``limit / words`` past the limit, ``1 / (1 + commas)``), averaged: more variance, less accurate;
* :func:`brevity`: minus the word count over 10: shorter is better, a reward the policy can hack (an answer too
  short to hold the keyword still scores high);
* the paper's perfectly accurate, low-variance reward is built from :func:`ground_truth` by ``rmteacher evaluate
  --scale-reward ground_truth`` and ``rmteacher rl --scale-fraction 0.5 --scale-factor 0.001``.

Pure Python; no torch.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "KEYWORDS",
    "KINDS",
    "TOPICS",
    "Constraints",
    "brevity",
    "check",
    "completion_text",
    "count_words",
    "ground_truth",
    "make_pairs",
    "make_prompts",
    "partial_credit",
    "partial_scores",
    "prompt_text",
    "split_prompts",
    "verifier",
]

#: The constraint kinds, in the order they are stated in a prompt.
KINDS = ("lowercase", "keyword", "max_words", "no_commas")

TOPICS = (
    "the ocean", "a cat", "winter", "coffee", "the moon", "a forest", "music", "rain", "a city", "bread",
    "the wind", "a river", "summer", "a garden", "the sun", "a dog", "snow", "a mountain", "books", "tea",
    "a train", "the sky", "friendship", "a bicycle", "the night", "flowers", "a bird", "the sea", "apples", "a lake",
    "autumn", "a candle", "the desert", "a bridge", "clouds", "a market", "the stars", "a kitchen", "spring", "a boat",
)  # fmt: skip

#: Adjectives, so that "the TOPIC feels KEYWORD." (the off-policy pairs' chosen answer) is a sentence.
KEYWORDS = (
    "calm", "bright", "quiet", "gentle", "warm", "cold", "happy", "strange", "simple", "golden",
    "soft", "wild", "old", "fresh", "blue", "green", "small", "slow", "sweet", "dark",
)  # fmt: skip

MIN_WORD_LIMIT, MAX_WORD_LIMIT = 6, 12
_WORD = re.compile(r"[A-Za-z0-9]")


@dataclass(frozen=True)
class Constraints:
    """The constraints of one prompt; ``keyword=None`` and ``max_words=None`` mean that constraint is absent."""

    lowercase: bool = False
    keyword: str | None = None
    max_words: int | None = None
    no_commas: bool = False

    def kinds(self) -> list[str]:
        present = {
            "lowercase": self.lowercase,
            "keyword": self.keyword is not None,
            "max_words": self.max_words is not None,
            "no_commas": self.no_commas,
        }
        return [k for k in KINDS if present[k]]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, value: str | Mapping[str, Any]) -> Constraints:
        """From the ``constraints`` column: a JSON object (or an already decoded mapping) with only known keys."""
        data = json.loads(value) if isinstance(value, str) else dict(value)
        if not isinstance(data, dict):
            raise ValueError(f"constraints: expected a JSON object; got {value!r}")
        unknown = set(data) - set(KINDS)
        if unknown:
            raise ValueError(f"constraints {value!r}: unknown keys {sorted(unknown)}; valid keys are {list(KINDS)}")
        constraints = cls(**data)
        if constraints.max_words is not None and (
            not isinstance(constraints.max_words, int) or constraints.max_words < 1
        ):
            raise ValueError(f"constraints {value!r}: max_words must be a positive integer or null")
        if not constraints.kinds():
            raise ValueError(f"constraints {value!r}: no constraint is set; a prompt needs at least one")
        return constraints


# ----------------------------------------------------------------------------------------------------- checks


def count_words(text: str) -> int:
    """Whitespace-separated tokens holding at least one letter or digit ("well-known" is one word, "-" none)."""
    return sum(1 for token in text.split() if _WORD.search(token))


def check(kind: str, text: str, constraints: Constraints) -> bool:
    """Whether ``text`` meets the constraint ``kind``. An answer with no words meets none (an empty reply is not a
    sentence, so it does not pass "at most N words" or "no commas" by saying nothing)."""
    if count_words(text) == 0:
        return False
    if kind == "lowercase":
        return not any(c.isupper() for c in text)
    if kind == "keyword":
        assert constraints.keyword is not None
        return re.search(rf"\b{re.escape(constraints.keyword)}\b", text, flags=re.IGNORECASE) is not None
    if kind == "max_words":
        assert constraints.max_words is not None
        return count_words(text) <= constraints.max_words
    if kind == "no_commas":
        return "," not in text
    raise ValueError(f"constraint kind {kind!r}: valid kinds are {list(KINDS)}")


def graded_score(text: str, constraints: Constraints) -> float:
    """The ground truth of one answer: the share of the prompt's constraints it meets, in [0, 1]."""
    kinds = constraints.kinds()
    return sum(check(k, text, constraints) for k in kinds) / len(kinds)


def partial_scores(text: str, constraints: Constraints) -> dict[str, float]:
    """Soft per-constraint credit in [0, 1], lenient where :func:`check` is exact: the share of letters in lower
    case; the keyword anywhere, even inside another word, in any case; ``limit / words`` past the word limit;
    ``1 / (1 + commas)``. An answer with no words gets 0 everywhere."""
    words = count_words(text)
    if words == 0:
        return dict.fromkeys(constraints.kinds(), 0.0)
    out: dict[str, float] = {}
    for kind in constraints.kinds():
        if kind == "lowercase":
            letters = [c for c in text if c.isalpha()]
            out[kind] = sum(c.islower() for c in letters) / len(letters) if letters else 0.0
        elif kind == "keyword":
            assert constraints.keyword is not None
            out[kind] = float(constraints.keyword.lower() in text.lower())
        elif kind == "max_words":
            assert constraints.max_words is not None
            out[kind] = min(1.0, constraints.max_words / words)
        else:
            out[kind] = 1.0 / (1 + text.count(","))
    return out


# ------------------------------------------------------------------------------------- rewards in TRL's form


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """The text of a completion: a string, or TRL's conversational ``[{"role": "assistant", "content": text}]``."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content", "")) for m in completion)


def _per_completion(completions: Sequence[Any], kwargs: Mapping[str, Any], name: str) -> list[tuple[str, Constraints]]:
    if "constraints" not in kwargs:
        raise ValueError(
            f"{name}: no 'constraints' column reached the reward; give prompts made by "
            "rmteacher.tasks.constraints.make_prompts (their 'constraints' column rides along as a keyword argument)"
        )
    column = list(kwargs["constraints"])
    if len(column) != len(completions):
        raise ValueError(f"{name}: {len(completions)} completions but {len(column)} constraints")
    return [(completion_text(c), Constraints.parse(v)) for c, v in zip(completions, column, strict=True)]


def ground_truth(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """The graded ground truth: per completion, the share of its prompt's constraints met."""
    return [graded_score(t, c) for t, c in _per_completion(completions, kwargs, "ground_truth")]


def verifier(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """Exact match: 1.0 when every constraint is met, else 0.0."""
    return [float(graded_score(t, c) == 1.0) for t, c in _per_completion(completions, kwargs, "verifier")]


def partial_credit(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """The mean of :func:`partial_scores` over the prompt's constraints."""
    out = []
    for text, constraints in _per_completion(completions, kwargs, "partial_credit"):
        scores = partial_scores(text, constraints)
        out.append(sum(scores.values()) / len(scores))
    return out


def brevity(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """Minus the word count over 10: rewards short answers whatever they say (hackable; needs no constraints)."""
    return [-count_words(completion_text(c)) / 10 for c in completions]


# ------------------------------------------------------------------------------------------------ prompts


def prompt_text(topic: str, constraints: Constraints) -> str:
    """The user message for ``topic`` under ``constraints``, one sentence per constraint in :data:`KINDS` order."""
    parts = [f"Write one sentence about {topic}."]
    if constraints.lowercase:
        parts.append("Use only lowercase letters, no capitals.")
    if constraints.keyword is not None:
        parts.append(f'Include the word "{constraints.keyword}".')
    if constraints.max_words is not None:
        parts.append(f"Use at most {constraints.max_words} words.")
    if constraints.no_commas:
        parts.append("Do not use any commas.")
    return " ".join(parts)


def _draw_constraints(rng: random.Random) -> Constraints:
    kinds = set(rng.sample(KINDS, rng.choice((2, 3))))
    return Constraints(
        lowercase="lowercase" in kinds,
        keyword=rng.choice(KEYWORDS) if "keyword" in kinds else None,
        max_words=rng.randint(MIN_WORD_LIMIT, MAX_WORD_LIMIT) if "max_words" in kinds else None,
        no_commas="no_commas" in kinds,
    )


def make_prompts(num_prompts: int, *, seed: int) -> list[dict[str, Any]]:
    """``num_prompts`` distinct prompts, a fixed function of ``seed``: rows ``{prompt_id, prompt, topic,
    constraints}`` with ``prompt`` in TRL's conversational form (``[{"role": "user", "content": ...}]``) and
    ``constraints`` a JSON object (:meth:`Constraints.to_json`)."""
    if num_prompts < 1:
        raise ValueError(f"num_prompts must be >= 1; got {num_prompts}")
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    attempts = 0
    while len(rows) < num_prompts:
        attempts += 1
        if attempts > 100 * num_prompts + 1000:
            raise ValueError(f"num_prompts={num_prompts}: more than this task has distinct prompts")
        topic, constraints = rng.choice(TOPICS), _draw_constraints(rng)
        key = (topic, constraints.to_json())
        if key in seen:
            continue
        seen.add(key)
        rows.append(
            {
                "prompt_id": f"c{len(rows):05d}",
                "prompt": [{"role": "user", "content": prompt_text(topic, constraints)}],
                "topic": topic,
                "constraints": constraints.to_json(),
            }
        )
    return rows


def split_prompts(num_train: int, num_eval: int, *, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Disjoint training and held-out evaluation prompts: one seeded draw, cut in two (ids ``train-...``,
    ``eval-...``)."""
    if num_train < 1 or num_eval < 1:
        raise ValueError(f"num_train and num_eval must be >= 1; got {num_train} and {num_eval}")
    rows = make_prompts(num_train + num_eval, seed=seed)
    for i, row in enumerate(rows):
        row["prompt_id"] = f"train-{i:05d}" if i < num_train else f"eval-{i - num_train:05d}"
    return rows[:num_train], rows[num_train:]


# ------------------------------------------------------------------------------------------ off-policy pairs

_PADDING = "and it stays that way for a very long time every single day of the year"


def make_pairs(prompts: Sequence[Mapping[str, Any]], *, seed: int) -> list[dict[str, Any]]:
    """One off-policy preference pair per prompt, written by a program: ``chosen`` meets every constraint
    (``the TOPIC feels KEYWORD.``), ``rejected`` is ``chosen`` broken on a seeded non-empty subset of them, so the
    ground truth strictly prefers ``chosen``. Rows ``{prompt_id, chosen, rejected}``."""
    rng = random.Random(seed)
    pairs = []
    for row in prompts:
        constraints = Constraints.parse(row["constraints"])
        keyword = constraints.keyword or rng.choice(KEYWORDS)
        sentence = f"the {str(row['topic']).removeprefix('the ').removeprefix('a ')} feels {keyword}."
        chosen = sentence if constraints.lowercase else sentence[0].upper() + sentence[1:]
        kinds = constraints.kinds()
        broken = set(rng.sample(kinds, rng.randint(1, len(kinds))))
        rejected = chosen.removesuffix(".")
        if "keyword" in broken:
            other = next(k for k in KEYWORDS if k != keyword)
            rejected = rejected.replace(f" {keyword}", f" {other}")
        if "max_words" in broken:
            assert constraints.max_words is not None
            rejected += " " + " ".join(_PADDING.split()[: constraints.max_words])
        if "no_commas" in broken:
            rejected += ", truly"
        rejected += "."
        if "lowercase" in broken:
            rejected = rejected[0].upper() + rejected[1:]
        pairs.append({"prompt_id": row["prompt_id"], "chosen": chosen, "rejected": rejected})
    return pairs
