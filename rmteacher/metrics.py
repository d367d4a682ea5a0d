"""The paper's reward-model metrics as pure functions over arrays.

Everything here takes numpy arrays (torch tensors and nested lists are accepted and converted) and returns numpy
arrays or floats. No I/O, no logging, no global state.

Shapes: ``rewards: [num_prompts, num_samples]`` holds the reward of sample ``k`` of prompt ``p`` at ``[p, k]``. The
samples of a prompt come from the policy whose landscape we ask about (on-policy), so per-prompt statistics are
statistics under that policy.

Reference: Razin et al., "What Makes a Reward Model a Good Teacher? An Optimization Perspective" (2025),
Definitions 1-2, Section 3 (normalization, evaluation protocol), Proposition 1 (Best-of-N).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "ConfidenceInterval",
    "NormalizationStats",
    "accuracy",
    "accuracy_without_ties",
    "as_reward_matrix",
    "best_of_n",
    "bootstrap_ci",
    "bootstrap_indices",
    "bootstrap_mean_ci",
    "bootstrap_ratio_ci",
    "fit_normalization",
    "normalize",
    "off_policy_accuracy",
    "ordered_pairs",
    "percentile_interval",
    "perfectly_accurate_low_variance",
    "reward_variance",
    "scale_prompts",
    "select_prompts",
    "truth_tie_share",
]

ArrayLike = npt.ArrayLike | Any  # Any: torch tensors are accepted without importing torch here.


def _to_numpy(x: ArrayLike) -> np.ndarray:
    """Converts numpy-like input, including torch tensors (on any device, with grad), to a float64 array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor; metrics must not import torch
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def as_reward_matrix(rewards: ArrayLike, *, name: str = "rewards", min_samples: int = 1) -> np.ndarray:
    """Validates and converts a reward matrix.

    Args:
        rewards: ``[num_prompts, num_samples]`` rewards.
        name: the argument's name, used in error messages.
        min_samples: the least number of samples per prompt that the caller's metric needs.

    Returns:
        a float64 array of shape ``[num_prompts, num_samples]``.

    Raises:
        ValueError: on a wrong number of dimensions, empty input, too few samples, or a NaN/infinite entry (the
            message names the first such prompt and sample).
    """
    try:
        array = _to_numpy(rewards)
    except ValueError as error:  # ragged nested lists
        raise ValueError(
            f"{name} must be a rectangular [num_prompts, num_samples] array; got ragged input ({error})"
        ) from None
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape [num_prompts, num_samples]; got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); need at least one prompt and one sample")
    if array.shape[1] < min_samples:
        raise ValueError(
            f"{name} has {array.shape[1]} sample(s) per prompt (prompt 0 onwards); this metric needs at least "
            f"{min_samples} samples per prompt"
        )
    bad = ~np.isfinite(array)
    if bad.any():
        prompt, sample = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} has a non-finite value {array[prompt, sample]} at prompt {prompt}, sample {sample}; "
            f"rewards must be finite numbers"
        )
    return array


def _check_same_shape(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} has shape {a.shape} but {b_name} has shape {b.shape}; they must match")


# --------------------------------------------------------------------------------------------------------------
# Definition 2: reward variance
# --------------------------------------------------------------------------------------------------------------


def reward_variance(rewards: ArrayLike, *, probs: ArrayLike | None = None, unbiased: bool = False) -> np.ndarray:
    """Per-prompt reward variance under the policy (Definition 2).

    ``Var_{y~pi(.|x)}[r(x, y)] = E_pi[(r - E_pi r)^2]``. With samples this is the population variance of each row;
    ``unbiased=True`` divides by ``K - 1`` instead of ``K``, the estimator the authors' code logged (so it is
    ``K / (K - 1)`` times the default). With ``probs`` the rows enumerate a finite output set and the variance is
    exact under that distribution: ``sum_y p(y) (r(y) - sum_y' p(y') r(y'))^2``.

    Args:
        rewards: ``[num_prompts, num_samples]``, or ``[num_prompts, num_outputs]`` when ``probs`` is given.
        probs: optional ``[num_prompts, num_outputs]`` probabilities, each row non-negative and summing to one.
        unbiased: use the ``K - 1`` denominator (sample-based only).

    Returns:
        ``[num_prompts]`` variances.
    """
    if probs is None:
        r = as_reward_matrix(rewards, min_samples=2)
        return np.var(r, axis=1, ddof=1 if unbiased else 0)
    if unbiased:
        raise ValueError("unbiased=True applies to sampled rewards only; with probs the variance is exact")
    r = as_reward_matrix(rewards, min_samples=1)
    p = _to_numpy(probs)
    _check_same_shape(r, "rewards", p, "probs")
    if not np.isfinite(p).all() or (p < 0).any():
        prompt, output = (int(i) for i in np.argwhere(~np.isfinite(p) | (p < 0))[0])
        raise ValueError(
            f"probs must be finite and non-negative; got {p[prompt, output]} at prompt {prompt}, output {output}"
        )
    totals = p.sum(axis=1)
    off = np.abs(totals - 1.0) > 1e-6
    if off.any():
        prompt = int(np.argmax(off))
        raise ValueError(f"probs must sum to 1 over outputs; prompt {prompt} sums to {totals[prompt]:.8g}")
    mean = np.sum(p * r, axis=1, keepdims=True)
    return np.sum(p * (r - mean) ** 2, axis=1)


# --------------------------------------------------------------------------------------------------------------
# Definition 1: accuracy
# --------------------------------------------------------------------------------------------------------------


def _all_pairs(num_samples: int) -> np.ndarray:
    first, second = np.triu_indices(num_samples, k=1)
    return np.stack([first, second], axis=1)


def accuracy(
    proxy: ArrayLike,
    truth: ArrayLike,
    *,
    pairs: ArrayLike | None = None,
    weights: ArrayLike | None = None,
) -> np.ndarray:
    """Per-prompt accuracy of a reward model against the ground truth (Definition 1).

    ``acc_{x,D}(r_RM) = E_{{y, y'} ~ D}[ 1[sign(r_RM(y) - r_RM(y')) == sign(r_G(y) - r_G(y'))] ]`` with
    ``sign(0) = 0``: a pair is correct iff both rewards order it the same way or both tie; a tie under only one of
    them is an error. By default ``D`` is uniform over all ``K (K - 1) / 2`` unordered pairs of each prompt's
    samples, which is the paper's on-policy accuracy when the samples come from the policy. Take ``.mean()`` of the
    result for the accuracy over a set of prompts.

    Args:
        proxy: ``[num_prompts, num_samples]`` reward-model rewards.
        truth: ``[num_prompts, num_samples]`` ground-truth rewards of the same samples.
        pairs: optional ``[num_pairs, 2]`` (shared by all prompts) or ``[num_prompts, num_pairs, 2]`` integer sample
            indices; each row is one unordered pair.
        weights: optional ``[num_pairs]`` or ``[num_prompts, num_pairs]`` non-negative pair probabilities, renormalized
            per prompt; uniform over ``pairs`` by default.

    Returns:
        ``[num_prompts]`` accuracies in ``[0, 1]``.
    """
    proxy_sign, truth_sign = _pair_signs(proxy, truth, pairs)
    correct = (proxy_sign == truth_sign).astype(np.float64)  # [num_prompts, num_pairs]
    if weights is None:
        return correct.mean(axis=1)
    w = np.broadcast_to(_to_numpy(weights), correct.shape) if np.ndim(weights) == 1 else _to_numpy(weights)
    if w.shape != correct.shape:
        raise ValueError(f"weights must have shape [num_pairs] or {correct.shape}; got {np.shape(weights)}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    totals = w.sum(axis=1)
    if (totals <= 0).any():
        raise ValueError(f"weights of prompt {int(np.argmax(totals <= 0))} sum to 0; each prompt needs positive mass")
    return (w * correct).sum(axis=1) / totals


def _pair_signs(proxy: ArrayLike, truth: ArrayLike, pairs: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    """``sign(r(y) - r(y'))`` of every pair under the proxy and the ground truth, ``[num_prompts, num_pairs]`` each;
    ``pairs`` as in :func:`accuracy` (all pairs of each prompt's samples by default)."""
    p = as_reward_matrix(proxy, name="proxy", min_samples=1)
    t = as_reward_matrix(truth, name="truth", min_samples=1)
    _check_same_shape(p, "proxy", t, "truth")
    num_prompts, num_samples = p.shape
    if pairs is None:
        if num_samples < 2:
            raise ValueError(f"on-policy accuracy needs at least 2 samples per prompt; prompt 0 has {num_samples}")
        pair_index = np.broadcast_to(_all_pairs(num_samples), (num_prompts, num_samples * (num_samples - 1) // 2, 2))
    else:
        pair_index = np.asarray(pairs)
        if pair_index.ndim == 2:
            pair_index = np.broadcast_to(pair_index, (num_prompts, *pair_index.shape))
        if pair_index.ndim != 3 or pair_index.shape[0] != num_prompts or pair_index.shape[2] != 2:
            raise ValueError(
                f"pairs must have shape [num_pairs, 2] or [num_prompts={num_prompts}, num_pairs, 2]; "
                f"got {np.asarray(pairs).shape}"
            )
        if pair_index.shape[1] == 0:
            raise ValueError("pairs is empty; give at least one pair of sample indices")
        if not np.issubdtype(pair_index.dtype, np.integer):
            raise ValueError(f"pairs must hold integer sample indices; got dtype {pair_index.dtype}")
        if pair_index.min() < 0 or pair_index.max() >= num_samples:
            raise ValueError(
                f"pairs index samples in [0, {num_samples}); got values from {pair_index.min()} to {pair_index.max()}"
            )
    rows = np.arange(num_prompts)[:, None]
    proxy_sign = np.sign(p[rows, pair_index[..., 0]] - p[rows, pair_index[..., 1]])
    truth_sign = np.sign(t[rows, pair_index[..., 0]] - t[rows, pair_index[..., 1]])
    return proxy_sign, truth_sign


def ordered_pairs(
    proxy: ArrayLike, truth: ArrayLike, *, pairs: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt, the pairs the ground truth orders and how many of them the reward model orders the same way.

    Definition 1 counts a pair the ground truth ties as correct only when the reward model ties it too, so under a
    0/1 verifier (many tied pairs) the paper's accuracy says as much about the verifier as about the reward model.
    RewardBench counts only pairs with a preferred response; this is that count: pairs with
    ``r_G(y) != r_G(y')``, correct when ``sign(r_RM(y) - r_RM(y')) == sign(r_G(y) - r_G(y'))`` (a reward-model tie
    on them is an error).

    Args:
        proxy, truth, pairs: as :func:`accuracy`.

    Returns:
        ``(correct, ordered)``: ``[num_prompts]`` counts each, ``correct <= ordered``.
    """
    proxy_sign, truth_sign = _pair_signs(proxy, truth, pairs)
    ordered = truth_sign != 0  # [num_prompts, num_pairs]
    correct = ordered & (proxy_sign == truth_sign)
    return correct.sum(axis=1).astype(np.float64), ordered.sum(axis=1).astype(np.float64)


def accuracy_without_ties(proxy: ArrayLike, truth: ArrayLike, *, pairs: ArrayLike | None = None) -> float:
    """Accuracy over the pairs the ground truth orders, pooled over prompts (ground-truth ties left out, as
    RewardBench counts): ``sum(correct) / sum(ordered)`` of :func:`ordered_pairs`. NaN when the ground truth ties
    every pair. Shapes as :func:`accuracy`."""
    correct, ordered = ordered_pairs(proxy, truth, pairs=pairs)
    total = ordered.sum()
    return float(correct.sum() / total) if total > 0 else float("nan")


def truth_tie_share(truth: ArrayLike, *, pairs: ArrayLike | None = None) -> np.ndarray:
    """Per prompt, the share of its pairs the ground truth ties (``r_G(y) == r_G(y')``): ``[num_prompts]`` in
    ``[0, 1]``. Every such pair is an error of the paper's accuracy unless the reward model ties it too."""
    _, truth_sign = _pair_signs(truth, truth, pairs)
    return (truth_sign == 0).mean(axis=1)


def off_policy_accuracy(
    proxy_chosen: ArrayLike,
    proxy_rejected: ArrayLike,
    truth_chosen: ArrayLike,
    truth_rejected: ArrayLike,
) -> np.ndarray:
    """Accuracy on a fixed preference dataset, one pair per row (Definition 1 with ``D`` a point mass).

    The paper's off-policy accuracy uses the dataset's (chosen, rejected) pair of each prompt, labelled by the ground
    truth. The tie rule of :func:`accuracy` applies, so each entry is 0 or 1.

    Args:
        proxy_chosen, proxy_rejected: ``[num_pairs]`` reward-model rewards of the two responses.
        truth_chosen, truth_rejected: ``[num_pairs]`` ground-truth rewards of the same responses.

    Returns:
        ``[num_pairs]`` values in ``{0, 1}``.
    """
    arrays = {
        "proxy_chosen": proxy_chosen,
        "proxy_rejected": proxy_rejected,
        "truth_chosen": truth_chosen,
        "truth_rejected": truth_rejected,
    }
    columns = {}
    for name, value in arrays.items():
        v = _to_numpy(value)
        if v.ndim != 1:
            raise ValueError(f"{name} must have shape [num_pairs]; got shape {v.shape}")
        columns[name] = v
    if len({v.shape for v in columns.values()}) != 1:
        shapes = ", ".join(f"{k}={v.shape}" for k, v in columns.items())
        raise ValueError(f"the four off-policy arrays must have the same shape; got {shapes}")
    stacked = np.stack(
        [
            np.stack([columns["proxy_chosen"], columns["proxy_rejected"]], axis=1),
            np.stack([columns["truth_chosen"], columns["truth_rejected"]], axis=1),
        ]
    )  # [2, num_pairs, 2]
    proxy = as_reward_matrix(stacked[0], name="proxy_chosen/proxy_rejected")
    truth = as_reward_matrix(stacked[1], name="truth_chosen/truth_rejected")
    return accuracy(proxy, truth)


# --------------------------------------------------------------------------------------------------------------
# Section 3: normalization
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormalizationStats:
    """Shift and scale of a reward model, fitted on the initial policy's samples: ``r_norm = (r - mean) / std``."""

    mean: float
    std: float
    method: Literal["global", "per_prompt_std"] = "global"
    num_prompts: int = 0
    num_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "std": self.std,
            "method": self.method,
            "num_prompts": self.num_prompts,
            "num_samples": self.num_samples,
        }


def fit_normalization(
    rewards: ArrayLike,
    *,
    method: Literal["global", "per_prompt_std"] = "global",
    eps: float = 1e-8,
) -> NormalizationStats:
    """Fits the paper's reward normalization on the initial policy's rewards (Section 3).

    ``global`` (the paper's main normalization): mean and std over all ``num_prompts x num_samples`` rewards, the std
    with the ``n - 1`` denominator and ``std = sqrt(var + eps)``, as the authors' code (``rsqrt(var + 1e-8)``).
    ``per_prompt_std`` (the camera-ready's Table 9 ablation): the same global mean, but divide by the square root of
    the mean per-prompt variance, so the normalized rewards have mean per-prompt variance one.

    Args:
        rewards: ``[num_prompts, num_samples]`` rewards of the initial policy's samples.
        method: ``"global"`` or ``"per_prompt_std"``.
        eps: added to the variance before the square root, so a constant reward does not divide by zero.

    Returns:
        the fitted :class:`NormalizationStats`.
    """
    if method not in ("global", "per_prompt_std"):
        raise ValueError(f"method must be 'global' or 'per_prompt_std'; got {method!r}")
    r = as_reward_matrix(rewards, min_samples=2 if method == "per_prompt_std" else 1)
    with np.errstate(over="ignore"):  # rewards near the float limit: the std is inf, which every caller refuses
        mean = float(r.mean())
        if method == "global":
            variance = float(r.var(ddof=1)) if r.size > 1 else 0.0
        else:
            variance = float(reward_variance(r, unbiased=True).mean())
    return NormalizationStats(
        mean=mean,
        std=math.sqrt(variance + eps),
        method=method,
        num_prompts=r.shape[0],
        num_samples=r.shape[1],
    )


def normalize(rewards: ArrayLike, stats: NormalizationStats) -> np.ndarray:
    """Applies fitted normalization: ``(rewards - stats.mean) / stats.std``, any shape."""
    if not (math.isfinite(stats.std) and stats.std > 0):
        raise ValueError(f"stats.std must be a positive finite number; got {stats.std}")
    return (_to_numpy(rewards) - stats.mean) / stats.std


# --------------------------------------------------------------------------------------------------------------
# Section 4.1: the perfectly accurate, low-variance reward model
# --------------------------------------------------------------------------------------------------------------


def select_prompts(num_prompts: int, fraction: float, *, seed: int = 8122) -> np.ndarray:
    """Seeded choice of ``int(num_prompts * fraction)`` prompt indices, as the authors' code.

    The paper scales the rewards of half the policy-gradient prompts, chosen by
    ``np.random.RandomState(8122).permutation(n)[: int(n * fraction)]``; this reproduces that choice exactly.

    Returns:
        sorted ``[int(num_prompts * fraction)]`` integer indices.
    """
    if not (isinstance(num_prompts, int | np.integer) and num_prompts >= 0):
        raise ValueError(f"num_prompts must be a non-negative integer; got {num_prompts!r}")
    if not (0.0 <= fraction <= 1.0):
        raise ValueError(f"fraction must be in [0, 1]; got {fraction}")
    chosen = np.random.RandomState(seed).permutation(num_prompts)[: int(num_prompts * fraction)]
    return np.sort(chosen)


def scale_prompts(rewards: ArrayLike, prompt_indices: ArrayLike, factor: float) -> np.ndarray:
    """Returns a copy of ``rewards: [num_prompts, ...]`` with the rows ``prompt_indices`` multiplied by ``factor``."""
    r = _to_numpy(rewards).copy()
    indices = np.asarray(prompt_indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= r.shape[0]):
        raise ValueError(f"prompt_indices must lie in [0, {r.shape[0]}); got {indices.min()}..{indices.max()}")
    if not math.isfinite(factor):
        raise ValueError(f"factor must be finite; got {factor}")
    r[indices] *= factor
    return r


def perfectly_accurate_low_variance(
    truth: ArrayLike,
    *,
    fraction: float = 0.5,
    factor: float = 1e-3,
    seed: int = 8122,
    construction: Literal["rmteacher", "authors_code"] = "rmteacher",
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's perfectly accurate reward model with low reward variance (Section 4.1).

    Multiplies the ground-truth rewards of a seeded ``fraction`` of prompts (:func:`select_prompts`) by ``factor``.
    Scaling by a positive constant keeps every within-prompt order, so on-policy accuracy stays exactly 1, while the
    per-prompt variance of the scaled prompts drops by ``factor^2``.

    Two constructions, with ``s_x = factor`` on the chosen prompts and ``1`` elsewhere:

    - ``"rmteacher"`` (default): ``s_x * truth``. The paper scales the *normalized* reward in training, so pass the
      ground truth normalized by its own statistics, ``(r - mu) / sigma`` (:func:`fit_normalization` on the
      unscaled rewards), to get the training reward ``s_x (r - mu) / sigma``.
    - ``"authors_code"``: pass the *raw* ground truth ``r``. As the authors' code (spec Section 4, "Reward
      normalization" and "Scaling a fraction of prompts"), the statistics ``mu', sigma'`` are fitted on the raw
      rewards *after* scaling the chosen prompts, ``s_x * r``, and training scales the normalized reward again:
      returns ``s_x (r - mu') / sigma'``.

    The two are related exactly by ``authors = (sigma / sigma') * rmteacher + s_x (mu - mu') / sigma'``: the second
    term is constant within a prompt, so every prompt's centred rewards (its variance, its accuracy, RLOO's
    advantages) differ by the factor ``sigma / sigma'`` and the variance by ``(sigma / sigma')^2``. Scaling raw
    rewards pulls them toward 0, wherever the reward's origin lies, so ``sigma'`` (and the authors' reward) depends
    on the raw reward's offset; rmteacher's construction does not. Which matches the paper's Table 1: the ratio of
    the low-variance model's reward variance to the ground truth's is 0.111 / 0.256 = 0.43 in the paper; on the
    sandbox rmteacher's construction gives 0.52 and the authors' code's 0.85 (``sigma / sigma' = 1.28`` there), so
    rmteacher's is the closer one and the default. (With a reward whose origin lies far from its mean, as ArmoRM's
    may, scaling toward 0 adds between-prompt spread and ``sigma' > sigma`` can bring the authors' ratio under 0.5.)

    Args:
        truth: ``[num_prompts, num_samples]`` ground-truth rewards: normalized for ``"rmteacher"`` (any rewards are
            scaled as given), raw for ``"authors_code"``.
        fraction: share of prompts to scale, in ``[0, 1]``.
        factor: the scale factor (``0.001`` in the paper); must be positive to keep accuracy 1.
        seed: the selection seed (``8122`` in the paper's code).
        construction: ``"rmteacher"`` or ``"authors_code"``, above.

    Returns:
        ``(scaled_rewards [num_prompts, num_samples], scaled_prompt_indices [n_scaled])``.
    """
    r = as_reward_matrix(truth, name="truth")
    if not (factor > 0):
        raise ValueError(f"factor must be > 0 to keep the ground truth's order (accuracy 1); got {factor}")
    indices = select_prompts(r.shape[0], fraction, seed=seed)
    if construction == "rmteacher":
        return scale_prompts(r, indices, factor), indices
    if construction == "authors_code":
        stats = fit_normalization(scale_prompts(r, indices, factor))  # mu', sigma' of the scaled raw rewards
        return scale_prompts(normalize(r, stats), indices, factor), indices
    raise ValueError(f"construction must be 'rmteacher' or 'authors_code'; got {construction!r}")


# --------------------------------------------------------------------------------------------------------------
# Confidence intervals
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate and its bootstrap interval."""

    estimate: float
    low: float
    high: float
    confidence: float

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "confidence": self.confidence}


def _check_bootstrap_options(confidence: float, num_resamples: int) -> None:
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1; got {num_resamples}")


def bootstrap_indices(num_prompts: int, num_resamples: int, *, seed: int = 0) -> np.ndarray:
    """Prompt indices of ``num_resamples`` bootstrap resamples, drawn once: ``[num_resamples, num_prompts]``.

    Row ``b`` lists the prompts (with replacement) of resample ``b``. The draw is scipy's: ``scipy.stats.bootstrap``
    (one batch, the default) draws ``rng.integers(0, n, (n_resamples, n))`` from the generator it is given, so with
    ``rng = np.random.default_rng(seed)`` these are exactly the resamples that :func:`bootstrap_ci` hands
    ``scipy.stats.bootstrap`` the same seed for, and intervals computed from them are the same numbers.

    The matrix is a pure function of its arguments and every interval of an evaluation uses the same one, so the
    last few are cached; the returned array is read-only.
    """
    if not (isinstance(num_prompts, int | np.integer) and num_prompts >= 1):
        raise ValueError(f"num_prompts must be an integer >= 1; got {num_prompts!r}")
    if not (isinstance(num_resamples, int | np.integer) and num_resamples >= 1):
        raise ValueError(f"num_resamples must be an integer >= 1; got {num_resamples!r}")
    return _draw_indices(int(num_prompts), int(num_resamples), int(seed))


@functools.lru_cache(maxsize=4)
def _draw_indices(num_prompts: int, num_resamples: int, seed: int) -> np.ndarray:
    indices = np.random.default_rng(seed).integers(0, num_prompts, size=(num_resamples, num_prompts))
    indices.setflags(write=False)
    return indices


def percentile_interval(
    estimate: float,
    replicates: ArrayLike,
    *,
    confidence: float = 0.95,
    method: Literal["percentile", "basic"] = "percentile",
) -> ConfidenceInterval:
    """Bootstrap interval from the statistic's values on the resamples, by scipy's rule for ``method``.

    ``percentile``: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of ``replicates`` (linear
    interpolation, Hyndman-Fan type 7, as ``scipy.stats.bootstrap``); ``basic``: ``2 * estimate`` minus those,
    swapped (Davison and Hinkley 1997, eq. 5.6).

    Args:
        estimate: the statistic on the full data.
        replicates: ``[num_resamples]`` the statistic on each resample.
    """
    values = _to_numpy(replicates)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"replicates must have shape [num_resamples] with num_resamples >= 1; got {values.shape}")
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    alpha = (1 - confidence) / 2
    low, high = (float(q) for q in np.quantile(values, [alpha, 1 - alpha]))
    if method == "basic":
        low, high = 2 * estimate - high, 2 * estimate - low
    elif method != "percentile":
        raise ValueError(f"method must be 'percentile' or 'basic'; got {method!r}")
    return ConfidenceInterval(float(estimate), low, high, confidence)


def bootstrap_mean_ci(
    per_prompt: ArrayLike,
    *,
    confidence: float = 0.95,
    num_resamples: int = 1000,
    seed: int = 0,
    method: Literal["percentile", "basic"] = "percentile",
) -> ConfidenceInterval:
    """Bootstrap CI over prompts of the mean of per-prompt values (reward variance, accuracy), vectorized.

    The per-prompt values are computed once by the caller; each resample's mean is ``per_prompt[indices].mean(1)``
    over the index matrix of :func:`bootstrap_indices`. The same numbers as ``bootstrap_ci(np.mean, per_prompt)``
    through ``scipy.stats.bootstrap`` (same draws, same quantile rule), tens of times faster.

    Args:
        per_prompt: ``[num_prompts]`` finite per-prompt values.
        confidence, num_resamples, seed, method: as :func:`bootstrap_ci`.
    """
    values = _to_numpy(per_prompt)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"per_prompt must have shape [num_prompts] with num_prompts >= 1; got {values.shape}")
    _check_bootstrap_options(confidence, num_resamples)
    estimate = float(np.mean(values))
    if values.size == 1:
        return ConfidenceInterval(estimate, estimate, estimate, confidence)
    replicates = values[bootstrap_indices(values.size, num_resamples, seed=seed)].mean(axis=1)  # [num_resamples]
    return percentile_interval(estimate, replicates, confidence=confidence, method=method)


def bootstrap_ratio_ci(
    numerator: ArrayLike,
    denominator: ArrayLike,
    *,
    confidence: float = 0.95,
    num_resamples: int = 1000,
    seed: int = 0,
) -> ConfidenceInterval | None:
    """Percentile bootstrap CI over prompts of a pooled ratio ``sum(numerator) / sum(denominator)`` (e.g. correct over
    ordered pairs, :func:`ordered_pairs`), on the index matrix of :func:`bootstrap_indices` (the resamples of every
    other interval). Resamples whose denominator sums to 0 are left out; None when the full data's does.

    Args:
        numerator, denominator: ``[num_prompts]`` non-negative per-prompt sums.
    """
    top, bottom = _to_numpy(numerator), _to_numpy(denominator)
    if top.ndim != 1 or top.shape != bottom.shape or top.size == 0:
        raise ValueError(
            f"numerator and denominator must have the same shape [num_prompts]; got {top.shape} and {bottom.shape}"
        )
    _check_bootstrap_options(confidence, num_resamples)
    if bottom.sum() <= 0:
        return None
    estimate = float(top.sum() / bottom.sum())
    if top.size == 1:
        return ConfidenceInterval(estimate, estimate, estimate, confidence)
    indices = bootstrap_indices(top.size, num_resamples, seed=seed)
    totals = bottom[indices].sum(axis=1)  # [num_resamples]
    kept = totals > 0
    replicates = top[indices].sum(axis=1)[kept] / totals[kept]
    return percentile_interval(estimate, replicates, confidence=confidence)


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: ArrayLike,
    confidence: float = 0.95,
    num_resamples: int = 1000,
    seed: int = 0,
    method: Literal["percentile", "basic", "BCa"] = "percentile",
) -> ConfidenceInterval:
    """Bootstrap confidence interval over prompts for any metric (``scipy.stats.bootstrap``).

    Prompts are the unit of resampling: every array's axis 0 indexes prompts and all arrays are resampled with the
    same prompt indices, so statistics that couple prompts (e.g. a variance normalized by statistics fitted on all
    prompts) are re-fitted on each resample. Example: ``bootstrap_ci(np.mean, reward_variance(r))`` or
    ``bootstrap_ci(lambda p, t: accuracy(p, t).mean(), proxy, truth)``.

    ``statistic`` is called once per resample. ``np.mean`` of one ``[num_prompts]`` array (percentile or basic) takes
    the vectorized path of :func:`bootstrap_mean_ci` instead, with the same numbers; for a normalized variance use
    :func:`rmteacher.analysis.normalized_variance_ci`.

    Args:
        statistic: maps arrays shaped like ``arrays`` (rows resampled) to a float.
        arrays: one or more arrays with prompts on axis 0, all with the same number of prompts.
        confidence: the interval's level, in (0, 1).
        num_resamples: bootstrap resamples.
        seed: the resampling seed.
        method: scipy's interval method; percentile is robust when the statistic is degenerate.

    Returns:
        the statistic on the full data and its interval.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    _check_bootstrap_options(confidence, num_resamples)
    data = [_to_numpy(a) for a in arrays]
    num_prompts = data[0].shape[0] if data[0].ndim else 0
    for i, a in enumerate(data):
        if a.ndim == 0 or a.shape[0] != num_prompts:
            raise ValueError(
                f"all arrays must have the same number of prompts on axis 0; array 0 has {num_prompts}, "
                f"array {i} has shape {a.shape}"
            )
    if num_prompts == 0:
        raise ValueError("bootstrap_ci got no prompts")
    if statistic is np.mean and len(data) == 1 and data[0].ndim == 1 and method in ("percentile", "basic"):
        return bootstrap_mean_ci(
            data[0],
            confidence=confidence,
            num_resamples=num_resamples,
            seed=seed,
            method=method,
        )
    estimate = float(statistic(*data))
    if num_prompts == 1:
        return ConfidenceInterval(estimate, estimate, estimate, confidence)

    def on_indices(index: np.ndarray) -> float:
        rows = index.astype(np.int64)
        return float(statistic(*(a[rows] for a in data)))

    from scipy import stats as scipy_stats  # here, not at the top: importing scipy.stats takes ~0.5 s

    result = scipy_stats.bootstrap(
        (np.arange(num_prompts, dtype=np.float64),),
        on_indices,
        vectorized=False,
        n_resamples=num_resamples,
        confidence_level=confidence,
        method=method,
        rng=np.random.default_rng(seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # a degenerate statistic (all resamples equal)
        low = high = estimate
    return ConfidenceInterval(estimate, low, high, confidence)


# --------------------------------------------------------------------------------------------------------------
# Proposition 1: Best-of-N
# --------------------------------------------------------------------------------------------------------------


def best_of_n(proxy: ArrayLike, truth: ArrayLike, n: int) -> np.ndarray:
    """Expected ground-truth reward of Best-of-N under a reward model, from samples (Proposition 1).

    Best-of-N draws ``N`` outputs i.i.d. from the policy and returns the one the reward model scores highest. We
    take the policy to be the empirical distribution of each prompt's ``K`` samples and compute that expectation in
    closed form, with no Monte Carlo: sort the samples by proxy reward into groups of equal reward ``g_1 < ... <
    g_m`` with cumulative counts ``c_j``; the best drawn sample lies in group ``j`` with probability
    ``(c_j / K)^N - (c_{j-1} / K)^N``, and by symmetry it is uniform within the group. Proposition 1: a reward model
    that orders outputs exactly like the truth attains ``E[max_i r_G(y_i)]``, the most any reward model can.

    Args:
        proxy: ``[num_prompts, num_samples]`` reward-model rewards.
        truth: ``[num_prompts, num_samples]`` ground-truth rewards of the same samples.
        n: the ``N`` of Best-of-N, ``>= 1``.

    Returns:
        ``[num_prompts]`` expected ground-truth rewards.
    """
    if not (isinstance(n, int | np.integer) and n >= 1):
        raise ValueError(f"n must be an integer >= 1; got {n!r}")
    p = as_reward_matrix(proxy, name="proxy")
    t = as_reward_matrix(truth, name="truth")
    _check_same_shape(p, "proxy", t, "truth")
    num_samples = p.shape[1]
    result = np.empty(p.shape[0])
    for prompt in range(p.shape[0]):
        values, group, counts = np.unique(p[prompt], return_inverse=True, return_counts=True)
        group_truth = np.bincount(group, weights=t[prompt], minlength=len(values)) / counts
        cumulative = np.cumsum(counts) / num_samples
        prob_best = cumulative**n - np.concatenate([[0.0], cumulative[:-1]]) ** n
        result[prompt] = float(prob_best @ group_truth)
    return result
