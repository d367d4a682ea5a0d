"""Statistics behind every sentence of the study's findings: intervals over RL seeds, one-sided tests, correlations
over reward models with uncertainty, and verdicts. Pure functions over arrays; no I/O.

The study (Razin et al. 2025, Section 4.1) trains a policy with each of ``R`` reward models (five trained ones, the
perfectly accurate low-variance one and the ground truth) for ``S`` RL seeds and measures, per (model, seed), the
increase of the ground-truth and of the proxy reward; per model it has one reward variance (with a CI over prompts)
and on/off-policy accuracies. Shapes: ``values_over_seeds: [num_seeds]``, ``x_per_model: [num_models]``,
``y_per_model_per_seed: [num_models, num_seeds]`` (every model with the same number of seeds).

A finding's verdict is one of three (issue 11): ``"reproduces"`` only when its test passes at ``alpha`` in the
paper's direction; ``"does not reproduce"`` when the same test passes in the opposite direction (for a pair of
reward models: the other one-sided test; for a correlation: the permutation test for the opposite sign; for a
difference of correlations: the bootstrap in the opposite direction; for Section 4.2: a test that one reward model
is best under every policy); ``"inconclusive at this budget"`` otherwise. The sentence quotes the test.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats

from rmteacher.metrics import ConfidenceInterval, percentile_interval

__all__ = [
    "Comparison",
    "CorrelationDifference",
    "CorrelationTest",
    "Finding",
    "Power",
    "SeedInterval",
    "Verdict",
    "correlation_difference",
    "correlation_with_uncertainty",
    "finding_accuracy_not_better",
    "finding_low_variance_vs_best_trained",
    "finding_low_variance_vs_ground_truth",
    "finding_on_policy_variance_gap",
    "finding_policy_dependent_best",
    "finding_variance_predicts_increase",
    "increase_interval",
    "one_sided_less",
    "resampled_correlations",
    "verdict",
]

Verdict = Literal["reproduces", "does not reproduce", "inconclusive at this budget"]
CorrelationMethod = Literal["pearson", "spearman"]

#: Largest number of models whose ``R!`` orderings the permutation test enumerates (8! = 40320).
EXACT_PERMUTATION_MODELS = 8


def _seeds(values: npt.ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must have shape [num_seeds] with at least one seed; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has a non-finite value at seed {int(np.argmax(~np.isfinite(array)))}")
    return array


def _json(value: Any) -> Any:
    """``value`` with every NaN (an undefined number), however nested, as None, for JSON."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _check_level(name: str, value: float) -> None:
    if not (0.0 < value < 1.0):
        raise ValueError(f"{name} must be in (0, 1); got {value}")


def _format_p(p: float) -> str:
    if math.isnan(p):
        return "undefined"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.2g}"


def _against(p: float, alpha: float) -> str:
    """``p = 0.02 < 0.05``; ``p = 0.31 >= 0.05``; ``p undefined``."""
    if math.isnan(p):
        return "p undefined"
    return f"p = {_format_p(p)} {'<' if p < alpha else '>='} {alpha:g}"


# ----------------------------------------------------------------------------------------------------------------
# Over RL seeds
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedInterval:
    """Mean over RL seeds, the seeds' standard deviation (``ddof = 1``) and the t-interval of the mean."""

    mean: float
    std: float
    low: float
    high: float
    confidence: float
    num_seeds: int
    defined: bool  # False with one seed: no spread to estimate, so std, low and high are NaN

    def to_dict(self) -> dict[str, Any]:
        return _json(asdict(self))

    def text(self) -> str:
        """``+0.038 ± 0.009`` (mean ± std over seeds), or ``+0.038`` for one seed."""
        return f"{self.mean:+.3f}" + (f" ± {self.std:.3f}" if self.defined else "")


def increase_interval(values_over_seeds: npt.ArrayLike, confidence: float = 0.95) -> SeedInterval:
    """Mean reward increase over RL seeds with its t-interval.

    ``mean ± t_{(1 + confidence) / 2, S - 1} * std / sqrt(S)``, ``std`` with the ``S - 1`` denominator: the
    Student-t interval for the mean of ``S`` i.i.d. normal runs (seed-to-seed noise of an RL run is a sum of many
    small effects; with 3 seeds nothing better can be checked). With one seed the spread cannot be estimated: the
    interval is undefined (NaN, ``defined=False``). All seeds equal gives a zero-width interval.

    Args:
        values_over_seeds: ``[num_seeds]`` one increase per RL seed.
        confidence: the interval's level, in (0, 1).
    """
    values = _seeds(values_over_seeds, "values_over_seeds")
    _check_level("confidence", confidence)
    mean = float(values.mean())
    if values.size == 1:
        return SeedInterval(mean, math.nan, math.nan, math.nan, confidence, 1, defined=False)
    std = float(values.std(ddof=1))
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, values.size - 1)) * std / math.sqrt(values.size)
    return SeedInterval(mean, std, mean - half, mean + half, confidence, int(values.size), defined=True)


@dataclass(frozen=True)
class Comparison:
    """One-sided test over seeds that reward model ``a`` raised a reward less than ``b`` did."""

    a: SeedInterval
    b: SeedInterval
    method: Literal["welch", "permutation"]
    statistic: float  # Welch's t of mean(a) - mean(b), or mean(a) - mean(b) for the permutation test
    p_value: float  # H1: mean(a) < mean(b); NaN when undefined (fewer than 2 seeds for Welch)
    p_opposite: float  # H1: mean(a) > mean(b)
    exact: bool  # permutation: every split enumerated

    def to_dict(self) -> dict[str, Any]:
        out = _json({k: v for k, v in asdict(self).items() if k not in ("a", "b")})
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), **out}

    def test_name(self) -> str:
        if self.method == "welch":
            return "one-sided Welch t-test"
        return f"one-sided {'exact ' if self.exact else ''}permutation test"


def one_sided_less(
    a_seeds: npt.ArrayLike,
    b_seeds: npt.ArrayLike,
    *,
    method: Literal["welch", "permutation"] = "welch",
    num_permutations: int = 9999,
    seed: int = 0,
) -> Comparison:
    """p-value that ``mean(a) < mean(b)`` over RL seeds, one-sided.

    ``welch`` (default): Welch's unequal-variance t-test, ``scipy.stats.ttest_ind(a, b, equal_var=False,
    alternative="less")``; it needs two seeds per side and assumes roughly normal seed-to-seed noise. ``permutation``:
    the difference of means against its distribution over all ``C(n_a + n_b, n_a)`` reassignments of the runs to the
    two models (``scipy.stats.permutation_test``; enumerated when there are at most ``num_permutations``), free of
    the normality assumption but coarse: with 3 seeds per side its p-value cannot go below ``1 / C(6, 3) = 0.05``,
    so it can never pass ``alpha = 0.05``. That is why Welch is the default for the study's 3 seeds.

    Args:
        a_seeds: ``[n_a]`` the increases of model ``a``, one per seed.
        b_seeds: ``[n_b]`` the same for model ``b``.
        method: ``"welch"`` or ``"permutation"``.
        num_permutations, seed: the Monte Carlo permutations when there are more splits than that, and their seed.
    """
    a, b = _seeds(a_seeds, "a_seeds"), _seeds(b_seeds, "b_seeds")
    a_interval, b_interval = increase_interval(a), increase_interval(b)
    if method == "welch":
        if min(a.size, b.size) < 2:
            return Comparison(a_interval, b_interval, method, math.nan, math.nan, math.nan, exact=False)
        with warnings.catch_warnings():  # equal seeds on both sides: t is undefined, p NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            less = scipy_stats.ttest_ind(a, b, equal_var=False, alternative="less")
            greater = scipy_stats.ttest_ind(a, b, equal_var=False, alternative="greater")
        return Comparison(
            a_interval,
            b_interval,
            method,
            float(less.statistic),
            float(less.pvalue),
            float(greater.pvalue),
            exact=False,
        )
    if method != "permutation":
        raise ValueError(f"method must be 'welch' or 'permutation'; got {method!r}")
    splits = math.comb(a.size + b.size, a.size)
    options: dict[str, Any] = {
        "permutation_type": "independent",
        "vectorized": True,
        "n_resamples": math.inf if splits <= num_permutations else num_permutations,
        "rng": np.random.default_rng(seed),
    }

    def difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    less = scipy_stats.permutation_test((a, b), difference, alternative="less", **options)
    options["rng"] = np.random.default_rng(seed)
    greater = scipy_stats.permutation_test((a, b), difference, alternative="greater", **options)
    return Comparison(
        a_interval,
        b_interval,
        method,
        float(less.statistic),
        float(less.pvalue),
        float(greater.pvalue),
        exact=splits <= num_permutations,
    )


# ----------------------------------------------------------------------------------------------------------------
# Correlations over reward models
# ----------------------------------------------------------------------------------------------------------------


def _models_by_seeds(x_per_model: npt.ArrayLike, y_per_model_per_seed: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x_per_model, dtype=np.float64)
    y = np.asarray(y_per_model_per_seed, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x_per_model must have shape [num_models]; got shape {x.shape}")
    if y.ndim != 2 or y.shape[0] != x.shape[0] or y.shape[1] == 0:
        raise ValueError(
            f"y_per_model_per_seed must have shape [num_models={x.shape[0]}, num_seeds >= 1]; got shape {y.shape}"
        )
    if x.shape[0] < 3:
        raise ValueError(f"a correlation over reward models needs at least 3 models; got {x.shape[0]}")
    for name, array in (("x_per_model", x), ("y_per_model_per_seed", y)):
        if not np.isfinite(array).all():
            raise ValueError(
                f"{name} has a non-finite value at index {tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])}"
            )
    return x, y


def _correlate_rows(x: np.ndarray, y: np.ndarray, method: CorrelationMethod) -> np.ndarray:
    """Correlation of each row pair of ``x, y: [batch, num_models]`` -> ``[batch]``; NaN where a row is constant."""
    if method == "spearman":
        x, y = scipy_stats.rankdata(x, axis=-1), scipy_stats.rankdata(y, axis=-1)
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman'; got {method!r}")
    constant = (np.ptp(x, axis=-1) == 0) | (np.ptp(y, axis=-1) == 0)
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=-1) / np.sqrt((xc**2).sum(axis=-1) * (yc**2).sum(axis=-1))
    return np.where(constant, np.nan, np.clip(r, -1.0, 1.0))


def resampled_correlations(
    x_per_model: npt.ArrayLike,
    y_per_model_per_seed: npt.ArrayLike,
    model_draws: np.ndarray,
    seed_draws: np.ndarray,
    *,
    method: CorrelationMethod = "pearson",
) -> np.ndarray:
    """The two-level bootstrap's correlation on given draws: models with replacement, then seeds within each.

    Resample ``b`` takes models ``m = model_draws[b]`` (``x[m]``) and, for the ``j``-th drawn model, the mean of its
    seeds ``seed_draws[b, j]``: ``y_b[j] = mean_s y[m_j, seed_draws[b, j, s]]``; then ``corr(x[m], y_b)``.

    Args:
        x_per_model: ``[num_models]``; y_per_model_per_seed: ``[num_models, num_seeds]``.
        model_draws: ``[num_resamples, num_models]`` model indices.
        seed_draws: ``[num_resamples, num_models, num_seeds]`` seed indices.
        method: ``"pearson"`` or ``"spearman"`` (Pearson of the ranks, ties averaged).

    Returns:
        ``[num_resamples]`` correlations, NaN where a resample's ``x`` or ``y`` is constant (e.g. one model drawn
        every time).
    """
    x, y = _models_by_seeds(x_per_model, y_per_model_per_seed)
    models, picks = np.asarray(model_draws), np.asarray(seed_draws)
    num_models, num_seeds = y.shape
    if models.ndim != 2 or models.shape[1] != num_models:
        raise ValueError(f"model_draws must have shape [num_resamples, num_models={num_models}]; got {models.shape}")
    if picks.shape != (*models.shape, num_seeds):
        raise ValueError(f"seed_draws must have shape {(*models.shape, num_seeds)}; got {picks.shape}")
    for name, draws, bound in (("model_draws", models, num_models), ("seed_draws", picks, num_seeds)):
        if not np.issubdtype(draws.dtype, np.integer) or draws.min() < 0 or draws.max() >= bound:
            raise ValueError(
                f"{name} must hold integer indices in [0, {bound}); got {draws.dtype} {draws.min()}..{draws.max()}"
            )
    y_resampled = y[models[..., None], picks].mean(axis=-1)  # [num_resamples, num_models]
    return _correlate_rows(x[models], y_resampled, method)


def _draws(num_models: int, num_seeds: int, num_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1; got {num_resamples}")
    rng = np.random.default_rng(seed)
    models = rng.integers(0, num_models, size=(num_resamples, num_models))
    return models, rng.integers(0, num_seeds, size=(num_resamples, num_models, num_seeds))


@dataclass(frozen=True)
class CorrelationTest:
    """A correlation over reward models with a two-level bootstrap interval and permutation p-values."""

    method: CorrelationMethod
    estimate: float  # over models, y averaged over seeds
    low: float
    high: float
    confidence: float
    p_positive: float  # permutation, H1: positive association
    p_negative: float  # permutation, H1: negative association
    p_two_sided: float  # 2 * min(p_positive, p_negative), at most 1 (scipy's convention)
    num_models: int
    num_seeds: int
    num_permutations: int
    exact: bool  # all num_models! orderings enumerated
    degenerate_resamples: int  # bootstrap resamples with an undefined correlation, left out of the interval

    def to_dict(self) -> dict[str, Any]:
        return _json(asdict(self))

    def interval_text(self) -> str:
        return f"{self.confidence:.0%} CI {self.low:.2f} to {self.high:.2f}"

    def permutation_text(self) -> str:
        kind = f"exact over {self.num_permutations} orderings" if self.exact else f"{self.num_permutations} draws"
        return f"permutation test over models ({kind})"


def correlation_with_uncertainty(
    x_per_model: npt.ArrayLike,
    y_per_model_per_seed: npt.ArrayLike,
    *,
    method: CorrelationMethod = "pearson",
    confidence: float = 0.95,
    num_resamples: int = 2000,
    seed: int = 0,
    num_permutations: int = math.factorial(EXACT_PERMUTATION_MODELS),
) -> CorrelationTest:
    """Correlation of a reward-model property with a reward increase (Table 2), with both sources of uncertainty.

    Estimate: ``corr(x, mean over seeds of y)`` over the ``R`` models (``scipy.stats.pearsonr``/``spearmanr``).

    Interval: a two-level bootstrap (Davison and Hinkley 1997, Section 3.8), percentile: resample the ``R`` models
    with replacement (the finite set of reward models), then each drawn model's ``S`` seeds with replacement (the
    RL noise), and correlate (:func:`resampled_correlations`). Resamples whose ``x`` or ``y`` is constant have no
    correlation and are left out (counted in ``degenerate_resamples``). ``x`` is taken as known; its own
    uncertainty over prompts is not included. With few seeds the inner level under-states the seed noise by a factor
    ``(S - 1) / S`` in variance, the usual bootstrap bias.

    p-values: a permutation test over models, ``x`` permuted against the seed-mean ``y`` (``scipy.stats.
    permutation_test``, ``permutation_type="pairings"``), exact over all ``R!`` orderings when ``R! <=
    num_permutations`` (``R <= 8`` by default), Monte Carlo otherwise. It is exact under the null of no association
    whatever the seed noise, which only adds to ``y``'s noise. One-sided in the paper's direction (positive) and the
    other, and two-sided.

    Args:
        x_per_model: ``[num_models]`` the property (e.g. reward variance), ``num_models >= 3``.
        y_per_model_per_seed: ``[num_models, num_seeds]`` the increase per model and seed.
        method: ``"pearson"`` or ``"spearman"``.
        confidence, num_resamples, seed: the bootstrap's level, resamples and seed (also seeds Monte Carlo
            permutations).
        num_permutations: enumerate all orderings up to this many, else draw this many.
    """
    x, y = _models_by_seeds(x_per_model, y_per_model_per_seed)
    _check_level("confidence", confidence)
    mean_y = y.mean(axis=1)
    estimate = float(_correlate_rows(x[None], mean_y[None], method)[0])
    replicates = resampled_correlations(x, y, *_draws(y.shape[0], y.shape[1], num_resamples, seed), method=method)
    valid = replicates[np.isfinite(replicates)]
    if valid.size and math.isfinite(estimate):
        interval = percentile_interval(estimate, valid, confidence=confidence)
        low, high = interval.low, interval.high
    else:
        low = high = math.nan

    def statistic(permuted: np.ndarray, axis: int = -1) -> np.ndarray:
        return _correlate_rows(permuted, np.broadcast_to(mean_y, permuted.shape), method)

    exact = math.factorial(x.size) <= num_permutations
    p: dict[str, float] = {}
    for alternative in ("greater", "less", "two-sided"):
        if not math.isfinite(estimate):
            p[alternative] = math.nan
            continue
        result = scipy_stats.permutation_test(
            (x,),
            statistic,
            permutation_type="pairings",
            vectorized=True,
            n_resamples=math.inf if exact else num_permutations,
            alternative=alternative,
            rng=np.random.default_rng(seed),
        )
        p[alternative] = float(result.pvalue)
    return CorrelationTest(
        method=method,
        estimate=estimate,
        low=low,
        high=high,
        confidence=confidence,
        p_positive=p["greater"],
        p_negative=p["less"],
        p_two_sided=p["two-sided"],
        num_models=int(x.size),
        num_seeds=int(y.shape[1]),
        num_permutations=math.factorial(x.size) if exact else num_permutations,
        exact=exact,
        degenerate_resamples=int(replicates.size - valid.size),
    )


@dataclass(frozen=True)
class CorrelationDifference:
    """``corr(x_first, y) - corr(x_second, y)`` over models, with a paired two-level bootstrap."""

    method: CorrelationMethod
    first: float
    second: float
    estimate: float
    low: float
    high: float
    confidence: float
    p_value: float  # one-sided bootstrap, H1: the first correlates more
    p_opposite: float  # H1: the second correlates more
    num_resamples: int  # resamples where both correlations are defined

    def to_dict(self) -> dict[str, Any]:
        return _json(asdict(self))


def correlation_difference(
    x_first: npt.ArrayLike,
    x_second: npt.ArrayLike,
    y_per_model_per_seed: npt.ArrayLike,
    *,
    method: CorrelationMethod = "spearman",
    confidence: float = 0.95,
    num_resamples: int = 2000,
    seed: int = 0,
) -> CorrelationDifference:
    """Does ``x_first`` predict ``y`` better than ``x_second``? The difference of their correlations, bootstrapped.

    Both correlations are computed on the same two-level resamples (:func:`resampled_correlations`), so the
    difference is paired. Interval: percentile. One-sided bootstrap p-value for "the first correlates more":
    ``(1 + #{d_b <= 0}) / (1 + B)`` over the ``B`` resamples where both are defined, the smallest level at which the
    one-sided percentile interval excludes 0 (Davison and Hinkley 1997, Section 4.4); ``p_opposite`` likewise with
    ``d_b >= 0``.

    Args:
        x_first, x_second: ``[num_models]`` two properties (e.g. reward variance and on-policy accuracy).
        y_per_model_per_seed: ``[num_models, num_seeds]`` the increase.
        method, confidence, num_resamples, seed: as :func:`correlation_with_uncertainty`.
    """
    x1, y = _models_by_seeds(x_first, y_per_model_per_seed)
    x2, _ = _models_by_seeds(x_second, y_per_model_per_seed)
    _check_level("confidence", confidence)
    mean_y = y.mean(axis=1)[None]
    first = float(_correlate_rows(x1[None], mean_y, method)[0])
    second = float(_correlate_rows(x2[None], mean_y, method)[0])
    draws = _draws(y.shape[0], y.shape[1], num_resamples, seed)
    d = resampled_correlations(x1, y, *draws, method=method) - resampled_correlations(x2, y, *draws, method=method)
    d = d[np.isfinite(d)]
    estimate = first - second
    if d.size == 0 or not math.isfinite(estimate):
        nan = math.nan
        return CorrelationDifference(method, first, second, estimate, nan, nan, confidence, nan, nan, 0)
    interval = percentile_interval(estimate, d, confidence=confidence)
    return CorrelationDifference(
        method=method,
        first=first,
        second=second,
        estimate=estimate,
        low=interval.low,
        high=interval.high,
        confidence=confidence,
        p_value=float((1 + np.sum(d <= 0)) / (1 + d.size)),
        p_opposite=float((1 + np.sum(d >= 0)) / (1 + d.size)),
        num_resamples=int(d.size),
    )


# ----------------------------------------------------------------------------------------------------------------
# Findings
# ----------------------------------------------------------------------------------------------------------------


Status = Literal["reached", "beyond", "other way", "not by seeds", "too few seeds", "not over seeds"]


@dataclass(frozen=True)
class Power:
    """The seeds a test needs for 80% power (:data:`rmteacher.power.TARGET_POWER`) at the observed effect, or why not.

    ``status``: ``reached`` (``seeds_needed`` seeds per model give ``power``), ``beyond`` (not within the search),
    ``other way`` (the observed effect points against the claim), ``not by seeds`` (the observed means themselves
    do not pass: more reward models are needed, not seeds), ``too few seeds`` (one seed: no spread to resample or
    estimate), ``not over seeds`` (a test over prompts, not seeds).
    """

    status: Status
    effect: float  # in the claim's direction (positive supports it); NaN when undefined
    effect_text: str  # e.g. "gap +0.018" or "Spearman 0.60"
    seeds_needed: int | None
    power: float | None  # at seeds_needed, or at the largest number tried
    target: float
    alpha: float
    method: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _json(asdict(self))

    def cell(self) -> str:
        """The verdict table's "seeds for 80% power" cell."""
        return {
            "reached": f"{self.seeds_needed}",
            "beyond": f"> {self.seeds_needed}",
            "other way": "effect points the other way",
            "not by seeds": "not by more seeds (needs more reward models)",
            "too few seeds": "needs at least 2 seeds",
            "not over seeds": "over prompts, not seeds",
        }[self.status]

    def text(self) -> str:
        """One sentence for the findings' prose."""
        power = f"{self.target:.0%} power"
        if self.status == "reached":
            return (
                f"At the observed effect ({self.effect_text}) its test would reach {power} with {self.seeds_needed} "
                f"seeds per reward model ({self.method}, alpha {self.alpha:g}{self.note})."
            )
        if self.status == "beyond":
            return (
                f"At the observed effect ({self.effect_text}) its test would need more than {self.seeds_needed} seeds "
                f"per reward model for {power} ({self.method}, alpha {self.alpha:g}{self.note})."
            )
        if self.status == "other way":
            return f"The observed effect points the other way ({self.effect_text})."
        if self.status == "not by seeds":
            return f"More seeds cannot decide it ({self.effect_text}): {self.note}."
        if self.status == "too few seeds":
            return f"Its power needs at least 2 seeds per reward model to estimate ({self.effect_text})."
        return f"{self.note[0].upper()}{self.note[1:]}."


@dataclass(frozen=True)
class Finding:
    """One of the paper's claims, the verdict of its test on this study and a sentence that quotes the test."""

    claim: str
    verdict: Verdict
    sentence: str
    test: str
    p_value: float  # in the paper's direction; NaN for a test without one (non-overlapping CIs)
    details: dict[str, Any]
    label: str = ""  # the claim in a few words, for the verdict table
    effect: str = ""  # the observed effect in a few words, for the verdict table
    power: Power | None = None  # for an inconclusive finding: the seeds its test needs (rmteacher.power)

    def to_dict(self) -> dict[str, Any]:
        return _json(asdict(self))


def verdict(p_value: float, p_opposite: float, *, alpha: float = 0.05) -> Verdict:
    """``"reproduces"`` iff ``p_value < alpha`` (the test in the paper's direction), ``"does not reproduce"`` iff
    ``p_opposite < alpha`` (the same test in the opposite direction), else ``"inconclusive at this budget"``. A NaN
    p-value never passes."""
    _check_level("alpha", alpha)
    if p_value < alpha:  # False for NaN
        return "reproduces"
    if p_opposite < alpha:
        return "does not reproduce"
    return "inconclusive at this budget"


def _bonferroni_text(factor: int, reason: str, adjusted: float) -> str:
    return f", x{factor} Bonferroni {reason} = {_format_p(adjusted)}" if factor > 1 else ""


def _sentence(body: str, result: Verdict) -> str:
    return f"{body[0].upper()}{body[1:]}: {result}."


def _comparison_finding(
    claim: str, comparison: Comparison, alpha: float, *, label: str, adjust: int = 1, adjust_reason: str = ""
) -> Finding:
    p = min(1.0, comparison.p_value * adjust) if not math.isnan(comparison.p_value) else math.nan
    result = verdict(p, comparison.p_opposite, alpha=alpha)
    a, b = comparison.a, comparison.b
    seeds = f"{a.num_seeds} seed{'s' if a.num_seeds != 1 else ''}" if a.num_seeds == b.num_seeds else "their seeds"
    spread = "mean ± std" if a.defined and b.defined else "mean"
    effect = f"{b.mean - a.mean:+.3f}"
    if comparison.method == "welch" and min(a.num_seeds, b.num_seeds) < 2:
        body = f"{claim}: {a.text()} vs {b.text()} ({spread} over {seeds}); the {comparison.test_name()} needs at "
        body += "least 2 seeds for a test"
        return Finding(claim, result, _sentence(body, result), comparison.test_name(), p, comparison.to_dict(),
                       label, effect)  # fmt: skip
    test = f"{comparison.test_name()} p = {_format_p(comparison.p_value)}"
    if adjust > 1:
        test += f", x{adjust} Bonferroni {adjust_reason} = {_format_p(p)}"
    if result == "does not reproduce":
        test += f"; the opposite direction has {_against(comparison.p_opposite, alpha)}"
    else:
        test += f" {'<' if p < alpha else '>='} {alpha:g}" if not math.isnan(p) else " (p undefined: equal seeds)"
    body = f"{claim}: {a.text()} vs {b.text()} ({spread} over {seeds}), {test}"
    return Finding(
        claim, result, _sentence(body, result), comparison.test_name(), p, comparison.to_dict(), label, effect
    )


def finding_low_variance_vs_ground_truth(
    low_variance: npt.ArrayLike,
    ground_truth: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    method: Literal["welch", "permutation"] = "welch",
) -> Finding:
    """Section 4.1, Figure 2: the perfectly accurate, low-variance reward model raises the ground truth less than
    training on the ground truth itself. One-sided test over seeds (:func:`one_sided_less`).

    Args:
        low_variance, ground_truth: ``[num_seeds]`` ground-truth increases of the two runs.
    """
    claim = "the perfectly accurate low-variance reward model raised the ground truth less than the ground truth itself"
    comparison = one_sided_less(low_variance, ground_truth, method=method)
    return _comparison_finding(claim, comparison, alpha, label="low-variance model < ground truth")


def finding_low_variance_vs_best_trained(
    low_variance: npt.ArrayLike,
    trained: Mapping[str, npt.ArrayLike],
    *,
    alpha: float = 0.05,
    method: Literal["welch", "permutation"] = "welch",
    picked_from_these_runs: bool = True,
) -> Finding:
    """Section 4.1: a less accurate trained reward model raises the ground truth more than the perfectly accurate,
    low-variance one.

    The best trained model is the one with the highest mean ground-truth increase. Picking it from the same runs
    that test it favours it (its mean is the largest of ``k``), so its one-sided p-value is multiplied by ``k``
    (Bonferroni over the candidates it was picked from; with 3 seeds and ``k = 5`` the raw p-value must be under
    0.01). Pass ``picked_from_these_runs=False`` only when the best was fixed beforehand (e.g. on other seeds).
    The opposite direction (the low-variance model beats the best one) needs no correction, as picking the best
    only makes that harder.

    Args:
        low_variance: ``[num_seeds]`` ground-truth increases of the low-variance model.
        trained: per trained reward model, ``[num_seeds]`` ground-truth increases.
    """
    if not trained:
        raise ValueError("trained is empty; give at least one trained reward model's increases")
    means = {name: float(_seeds(v, f"trained[{name!r}]").mean()) for name, v in trained.items()}
    best = max(means, key=lambda name: means[name])
    comparison = one_sided_less(low_variance, trained[best], method=method)
    how = f"the highest mean of {len(trained)}" if picked_from_these_runs else "picked beforehand"
    claim = (
        f"the perfectly accurate low-variance reward model raised the ground truth less than the best trained "
        f"reward model ({best}, {how})"
    )
    adjust = len(trained) if picked_from_these_runs else 1
    finding = _comparison_finding(
        claim, comparison, alpha, label=f"low-variance model < best trained ({best})", adjust=adjust,
        adjust_reason="for picking the best",
    )  # fmt: skip
    return replace(finding, details={**finding.details, "best": best, "candidates": len(trained), "bonferroni": adjust})


def finding_variance_predicts_increase(
    variance: npt.ArrayLike,
    increase: npt.ArrayLike,
    *,
    increase_name: str = "proxy increase",
    method: CorrelationMethod = "spearman",
    alpha: float = 0.05,
    confidence: float = 0.95,
    num_resamples: int = 2000,
    seed: int = 0,
) -> Finding:
    """Table 2: reward variance predicts the reward increase over the proxy reward models (the paper: Spearman 1.0
    with the proxy increase over its 6 proxies). Verdict from the one-sided permutation test over models
    (:func:`correlation_with_uncertainty`): positive at ``alpha`` reproduces, negative at ``alpha`` does not.

    Args:
        variance: ``[num_models]`` reward variance per proxy reward model.
        increase: ``[num_models, num_seeds]`` the increase per model and seed.
    """
    test = correlation_with_uncertainty(
        variance, increase, method=method, confidence=confidence, num_resamples=num_resamples, seed=seed
    )
    result = verdict(test.p_positive, test.p_negative, alpha=alpha)
    claim = f"reward variance predicts the {increase_name} over the {test.num_models} proxy reward models"
    p_text = (
        f"one-sided {test.permutation_text()} {_against(test.p_positive, alpha)}"
        if result != "does not reproduce"
        else f"negative association, {test.permutation_text()} {_against(test.p_negative, alpha)}"
    )
    body = (
        f"{claim}: {method.capitalize()} {test.estimate:.2f} ({test.interval_text()}, two-level bootstrap over models "
        f"and {test.num_seeds} seed{'s' if test.num_seeds != 1 else ''}), {p_text}"
    )
    return Finding(
        claim, result, _sentence(body, result), f"{method} permutation test", test.p_positive, test.to_dict(),
        f"reward variance predicts the {increase_name}", f"{method.capitalize()} {test.estimate:.2f}",
    )  # fmt: skip


def finding_accuracy_not_better(
    variance: npt.ArrayLike,
    accuracy: npt.ArrayLike,
    increase: npt.ArrayLike,
    *,
    accuracy_name: str = "on-policy accuracy",
    increase_name: str = "proxy increase",
    method: CorrelationMethod = "spearman",
    alpha: float = 0.05,
    confidence: float = 0.95,
    num_resamples: int = 2000,
    seed: int = 0,
) -> Finding:
    """Table 2: accuracy does not predict the increase better than reward variance does.

    Read strictly: "reproduces" when variance correlates *more* than accuracy, significantly (one-sided bootstrap
    of the paired difference, :func:`correlation_difference`); "does not reproduce" when accuracy correlates
    significantly more; equal-looking correlations are "inconclusive at this budget" (a finite study cannot show
    "not better" without a margin).

    Args:
        variance, accuracy: ``[num_models]`` per proxy reward model.
        increase: ``[num_models, num_seeds]`` the increase per model and seed.
    """
    test = correlation_difference(
        variance, accuracy, increase, method=method, confidence=confidence, num_resamples=num_resamples, seed=seed
    )
    result = verdict(test.p_value, test.p_opposite, alpha=alpha)
    claim = f"{accuracy_name} does not predict the {increase_name} better than reward variance"
    p_text = (
        f"one-sided bootstrap {_against(test.p_value, alpha)}"
        if result != "does not reproduce"
        else f"accuracy better, one-sided bootstrap {_against(test.p_opposite, alpha)}"
    )
    body = (
        f"{claim}: {method.capitalize()} {test.first:.2f} for reward variance vs {test.second:.2f} for "
        f"{accuracy_name}, difference {test.estimate:+.2f} ({test.confidence:.0%} CI {test.low:+.2f} to "
        f"{test.high:+.2f}, paired two-level bootstrap), {p_text}"
    )
    return Finding(
        claim, result, _sentence(body, result), "bootstrap of the difference", test.p_value, test.to_dict(),
        f"{accuracy_name} no better than variance ({increase_name})", f"difference {test.estimate:+.2f}",
    )  # fmt: skip


def finding_on_policy_variance_gap(
    more_on_policy: ConfidenceInterval,
    less_on_policy: ConfidenceInterval,
    *,
    min_gap: float = 0.1,
    names: tuple[str, str] = ("100% on-policy", "0% on-policy"),
) -> Finding:
    """Table 1: the reward model trained on more on-policy data induces more reward variance.

    The test (issue 11's target): non-overlapping CIs over prompts (``more.low > less.high``) and a gap of the
    estimates of at least ``min_gap``. Non-overlapping 95% CIs is a conservative test of a difference (about
    ``p < 0.006`` for equal widths) that ignores that both are measured on the same prompts, which only makes it
    more conservative. "Does not reproduce" when the CIs do not overlap in the opposite order; a significant gap
    below ``min_gap`` is "inconclusive at this budget", with the reason in the sentence.

    Args:
        more_on_policy, less_on_policy: the normalized reward variance of the two models with CIs over prompts.
    """
    more, less = more_on_policy, less_on_policy
    gap = more.estimate - less.estimate
    separated, opposite = more.low > less.high, more.high < less.low
    result: Verdict
    if separated and gap >= min_gap:
        result, reason = "reproduces", f"gap {gap:.3f} >= {min_gap:g} and non-overlapping CIs"
    elif opposite:
        result, reason = "does not reproduce", f"gap {gap:+.3f}, non-overlapping CIs in the opposite order"
    else:
        result = "inconclusive at this budget"
        reason = (
            f"gap {gap:.3f} < {min_gap:g} although the CIs do not overlap"
            if separated
            else f"gap {gap:+.3f}, overlapping CIs"
        )
    claim = f"the {names[0]} reward model induced more reward variance than the {names[1]} one"
    body = (
        f"{claim}: {more.estimate:.3f} ({more.confidence:.0%} CI {more.low:.3f} to {more.high:.3f}) vs "
        f"{less.estimate:.3f} ({less.low:.3f} to {less.high:.3f}) over prompts, {reason}"
    )
    details = {"more": more.to_dict(), "less": less.to_dict(), "gap": gap, "min_gap": min_gap}
    return Finding(
        claim, result, _sentence(body, result), "non-overlapping CIs and a minimum gap", math.nan, details,
        f"{names[0]} > {names[1]} in reward variance", f"gap {gap:+.3f}",
    )  # fmt: skip


def _beaten(runs: Mapping[str, np.ndarray], target: str) -> tuple[float, str, Comparison]:
    """Under one policy: is ``target`` beaten by some other model? The smallest one-sided Welch p-value of
    ``target < other`` over the others, times their number (Bonferroni)."""
    tests = {other: one_sided_less(runs[target], runs[other]) for other in runs if other != target}
    winner = min(tests, key=lambda other: (np.nan_to_num(tests[other].p_value, nan=1.0), other))
    p = tests[winner].p_value
    return (min(1.0, p * len(tests)) if not math.isnan(p) else math.nan), winner, tests[winner]


def finding_policy_dependent_best(
    increases: Mapping[str, Mapping[str, npt.ArrayLike]],
    *,
    alpha: float = 0.05,
) -> Finding:
    """Section 4.2 (Theorem 3): the best reward model depends on the policy.

    ``increases[policy][model]``: ``[num_seeds]`` ground-truth increases; every policy with the same models.

    Per policy ``p`` the winner ``w_p`` has the highest mean ground-truth increase. For two policies with different
    winners, the claim holds for them if the winners cross: under ``p``, ``w_q`` is beaten and under ``q``, ``w_p``
    is beaten. "``w_q`` is beaten under ``p``" is tested on ``p``'s runs, while ``w_q`` was picked on ``q``'s
    (independent) runs, so the pick does not bias the test: the smallest one-sided Welch p-value of ``w_q < A``
    over the other models ``A`` (in practice ``A = w_p``), times ``M - 1`` (Bonferroni). The crossing's p-value is
    the larger of its two (an intersection-union test); the claim's is the smallest crossing p-value times the
    number of policy pairs (Bonferroni). "Does not reproduce": one model wins under every policy and, under each
    policy, beats every other model (each one-sided Welch test; the largest p-value over models and policies is the
    test's); the winner is then also the winner on the other policies' runs, so again the pick is independent of
    the runs that test it.
    """
    policies = list(increases)
    if len(policies) < 2:
        raise ValueError(f"need at least 2 policies to compare their best reward models; got {len(policies)}")
    models = list(increases[policies[0]])
    if len(models) < 2:
        raise ValueError(f"need at least 2 reward models per policy; got {len(models)}")
    runs: dict[str, dict[str, np.ndarray]] = {}
    for policy in policies:
        if list(increases[policy]) != models:
            raise ValueError(f"policy {policy!r} has models {list(increases[policy])}; every policy needs {models}")
        runs[policy] = {m: _seeds(v, f"increases[{policy!r}][{m!r}]") for m, v in increases[policy].items()}
    winners = {p: max(models, key=lambda m: float(runs[p][m].mean())) for p in policies}
    pairs = list(itertools.combinations(policies, 2))
    claim = f"the best reward model differs between policies ({', '.join(policies)})"
    winner_text = ", ".join(f"{p}: {w}" for p, w in winners.items())
    details: dict[str, Any] = {"winners": winners, "policy_pairs": len(pairs)}
    if min(v.size for r in runs.values() for v in r.values()) < 2:  # --quick: one seed, no spread to test against
        body = (
            f"{claim}: winners by mean ground-truth increase {winner_text} (one seed); its one-sided Welch tests need "
            "at least 2 seeds for a test"
        )
        result: Verdict = "inconclusive at this budget"
        return Finding(
            claim, result, _sentence(body, result), "crossing winners, Welch", math.nan, details,
            "the best reward model depends on the policy", f"winners {winner_text}",
        )  # fmt: skip
    crossings = []
    for p, q in pairs:
        if winners[p] == winners[q]:
            continue
        p_under_p, beater_p, test_p = _beaten(runs[p], winners[q])
        p_under_q, beater_q, test_q = _beaten(runs[q], winners[p])
        crossing = max(p_under_p, p_under_q) if not (math.isnan(p_under_p) or math.isnan(p_under_q)) else math.nan
        crossings.append((crossing, p, q, (p_under_p, beater_p, test_p), (p_under_q, beater_q, test_q)))
    if crossings:
        crossing, p, q, under_p, under_q = min(crossings, key=lambda c: np.nan_to_num(c[0], nan=2.0))
        adjusted = min(1.0, crossing * len(pairs)) if not math.isnan(crossing) else math.nan
        result = verdict(adjusted, math.nan, alpha=alpha)

        def under(policy: str, loser: str, side: tuple[float, str, Comparison]) -> str:
            adjusted_side, beater, test = side
            bonferroni = _bonferroni_text(len(models) - 1, "over the other models", adjusted_side)
            return (
                f"under {policy}, {loser} raised the ground truth less than {beater} ({test.a.text()} vs "
                f"{test.b.text()}, one-sided Welch p = {_format_p(test.p_value)}{bonferroni})"
            )

        body = (
            f"{claim}: winners by mean ground-truth increase {winner_text}; {under(p, winners[q], under_p)} and "
            f"{under(q, winners[p], under_q)}; the crossing (the larger of the two) "
            + (
                f"p = {_format_p(crossing)}{_bonferroni_text(len(pairs), 'over policy pairs', adjusted)} "
                f"{'<' if adjusted < alpha else '>='} {alpha:g}"
                if len(pairs) > 1 and not math.isnan(adjusted)
                else _against(adjusted, alpha)
            )
        )
        details.update({"crossing": [p, q], "p_crossing": crossing})
        return Finding(
            claim, result, _sentence(body, result), "crossing winners, Welch", adjusted, details,
            "the best reward model depends on the policy", f"winners {winner_text}",
        )  # fmt: skip
    # One winner under every policy: does it beat every other model under every policy?
    common = winners[policies[0]]
    tests = [
        (one_sided_less(runs[p][m], runs[p][common]).p_value, p, m) for p in policies for m in models if m != common
    ]
    worst = max(tests, key=lambda t: np.nan_to_num(t[0], nan=2.0))  # a NaN p-value (one seed) is the worst
    p_same = worst[0]
    result = verdict(math.nan, p_same, alpha=alpha)
    body = (
        f"{claim}: {common} has the highest mean ground-truth increase under all {len(policies)} policies; that it "
        f"beats every other model under every policy has one-sided Welch {_against(p_same, alpha)} (the largest over "
        f"policies and models, {worst[2]} under {worst[1]})"
    )
    details.update({"common_winner": common, "p_same_best": p_same})
    return Finding(
        claim, result, _sentence(body, result), "one winner everywhere, Welch", math.nan, details,
        "the best reward model depends on the policy", f"{common} best under every policy",
    )  # fmt: skip
