"""How far an inconclusive finding is from conclusive: the seeds its test would need for 80% power at the observed
effect, or why more seeds cannot help. Pure functions over arrays; no I/O.

A finding of :mod:`rmteacher.significance` is "inconclusive at this budget" when its test does not pass; that says
nothing of whether 10 more seeds would decide it or whether its effect points the other way. Here each test's power
is computed at the effect this study observed, taken as the truth (a plug-in, "observed power": it inherits the
estimate's noise, so it is a guide to the next budget, not a second test):

- one-sided Welch tests over seeds (:func:`welch_seeds_needed`): from the observed means and stds, the power of
  Welch's test with ``n`` seeds per model is the noncentral t's tail beyond the critical value,
  ``P(T' > t_{1 - alpha, df})`` with ``T' ~ t(df, delta)``, ``delta = d / sqrt((s_a^2 + s_b^2) / n)`` and the
  Welch-Satterthwaite ``df = (n - 1) (s_a^2 + s_b^2)^2 / (s_a^4 + s_b^4)``; the smallest ``n >= 2`` with power at
  least 0.8 (Cohen 1988, Chapter 2, for the equal-variance case this reduces to);
- the Spearman permutation test over reward models (:func:`spearman_seeds_needed`) and the bootstrap of a
  difference of correlations (:func:`difference_seeds_needed`): by resampling seeds. At ``n`` seeds, each model's
  ``n`` seeds are drawn with replacement from its observed ones, the test is run on the draw, and the power is the
  fraction of draws where it passes. The models are not resampled: with ``R`` models a permutation test cannot go
  below ``1 / R!``, and as seeds grow the seed means settle on the observed ones, so when the observed means do not
  pass the test no number of seeds makes it pass ("more seeds cannot decide it": it needs more reward models).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats

from rmteacher.significance import Finding, Power, SeedInterval, _correlate_rows, correlation_difference

__all__ = [
    "MAX_SEEDS",
    "SEED_GRID",
    "TARGET_POWER",
    "difference_seeds_needed",
    "not_over_seeds",
    "resampled_power",
    "spearman_critical",
    "spearman_p_values",
    "spearman_seeds_needed",
    "welch_power",
    "welch_seeds_needed",
    "with_power",
]

#: The power a budget is sized for (Cohen 1988's convention).
TARGET_POWER = 0.8
#: The most seeds per model the Welch search goes to.
MAX_SEEDS = 1000
#: The seeds per model the resampling searches try, in order (each draw costs a test).
SEED_GRID = (*range(2, 17), 20, 24, 28, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256)


def not_over_seeds(effect: float, effect_text: str, note: str) -> Power:
    """A finding whose test is over prompts, not seeds (e.g. non-overlapping CIs of reward variance)."""
    return Power("not over seeds", effect, effect_text, None, None, TARGET_POWER, math.nan, "", note)


# ----------------------------------------------------------------------------------------------------------------
# Welch's test
# ----------------------------------------------------------------------------------------------------------------


def welch_power(effect: float, std_a: float, std_b: float, seeds: npt.ArrayLike, *, alpha: float = 0.05) -> np.ndarray:
    """Power of the one-sided Welch test of ``mean(a) < mean(b)`` with ``seeds`` runs per model, when the true
    ``mean(b) - mean(a)`` is ``effect`` and the seed-to-seed stds are ``std_a``, ``std_b``.

    ``P(T' > t_{1 - alpha, df})``, ``T'`` noncentral t with ``df = (n - 1) (va + vb)^2 / (va^2 + vb^2)`` (Welch-
    Satterthwaite at equal ``n``) and noncentrality ``effect / sqrt((va + vb) / n)``. With both stds 0, the test
    passes at any ``n >= 2`` iff ``effect > 0``.

    Args:
        seeds: ``[k]`` numbers of seeds per model, each >= 2. Returns ``[k]`` powers.
    """
    n = np.asarray(seeds, dtype=np.float64)
    if n.ndim != 1 or (n < 2).any():
        raise ValueError(f"seeds must have shape [k] with every value >= 2; got {n}")
    va, vb = std_a**2, std_b**2
    if va + vb == 0:
        return np.full(n.shape, 1.0 if effect > 0 else 0.0)
    df = (n - 1) * (va + vb) ** 2 / (va**2 + vb**2)
    noncentrality = effect / np.sqrt((va + vb) / n)
    return np.asarray(scipy_stats.nct.sf(scipy_stats.t.ppf(1 - alpha, df), df, noncentrality), dtype=np.float64)


def welch_seeds_needed(
    a: SeedInterval,
    b: SeedInterval,
    *,
    alpha: float = 0.05,
    target: float = TARGET_POWER,
    max_seeds: int = MAX_SEEDS,
    effect_name: str = "gap",
    note: str = "",
) -> Power:
    """Seeds per model for the one-sided Welch test of ``mean(a) < mean(b)`` to reach ``target`` power at the
    observed means and stds (:func:`welch_power`); ``alpha`` is the level the raw p-value must pass (divide by a
    Bonferroni factor first)."""
    effect = b.mean - a.mean
    text = f"{effect_name} {effect:+.3f}"
    method = "noncentral t at the observed means and stds"
    if not (a.defined and b.defined):
        return Power("too few seeds", effect, text, None, None, target, alpha, method, note)
    if effect <= 0:
        return Power("other way", effect, text, None, None, target, alpha, method, note)
    pooled = math.sqrt((a.std**2 + b.std**2) / 2)
    if pooled > 0:
        text += f", {effect / pooled:.2f} seed stds"
    seeds = np.arange(2, max_seeds + 1)
    power = welch_power(effect, a.std, b.std, seeds, alpha=alpha)
    enough = np.flatnonzero(power >= target)
    if enough.size == 0:
        return Power("beyond", effect, text, max_seeds, float(power[-1]), target, alpha, method, note)
    first = int(enough[0])
    return Power("reached", effect, text, int(seeds[first]), float(power[first]), target, alpha, method, note)


# ----------------------------------------------------------------------------------------------------------------
# Resampling seeds: the Spearman permutation test and the bootstrap of a difference of correlations
# ----------------------------------------------------------------------------------------------------------------


def _null_spearman(x: np.ndarray, *, num_permutations: int = 40320, seed: int = 0) -> np.ndarray:
    """Sorted null distribution of Spearman's correlation of ``x`` permuted against untied ranks: every ordering
    when ``R! <= num_permutations``, else that many drawn."""
    ranks = scipy_stats.rankdata(x)
    if math.factorial(x.size) <= num_permutations:
        orders = np.array(list(itertools.permutations(range(x.size))))
    else:
        rng = np.random.default_rng(seed)
        orders = np.array([rng.permutation(x.size) for _ in range(num_permutations)])
    target = np.broadcast_to(np.arange(x.size, dtype=np.float64), orders.shape)
    return np.sort(_correlate_rows(ranks[orders], target, "pearson"))


def spearman_p_values(x_per_model: npt.ArrayLike, y_means: npt.ArrayLike) -> np.ndarray:
    """One-sided (positive) permutation p-values of Spearman's correlation of ``x`` with each row of ``y_means``.

    The same test as :func:`rmteacher.significance.correlation_with_uncertainty`'s ``p_positive`` (``x`` permuted
    over models), with the null distribution computed once: without ties in ``y`` it does not depend on ``y``.

    Args:
        x_per_model: ``[num_models]``; y_means: ``[batch, num_models]``. Returns ``[batch]`` p-values.
    """
    x = np.asarray(x_per_model, dtype=np.float64)
    y = np.atleast_2d(np.asarray(y_means, dtype=np.float64))
    if y.shape[-1] != x.size:
        raise ValueError(f"y_means must have shape [batch, num_models={x.size}]; got {y.shape}")
    null = _null_spearman(x)
    rho = _correlate_rows(np.broadcast_to(x, y.shape), y, "spearman")
    # scipy.stats.permutation_test counts null values >= the observed one up to a relative tolerance.
    at_least = null.size - np.searchsorted(null, rho - 1e-12 * np.maximum(1.0, np.abs(rho)), side="left")
    return np.where(np.isfinite(rho), at_least / null.size, 1.0)


def spearman_critical(num_models: int, *, alpha: float = 0.05) -> float:
    """The smallest Spearman correlation over ``num_models`` models that the one-sided permutation test passes."""
    null = _null_spearman(np.arange(num_models, dtype=np.float64))
    p = (null.size - np.searchsorted(null, null - 1e-12, side="left")) / null.size
    passing = null[p < alpha]
    return float(passing.min()) if passing.size else math.inf


def resampled_power(
    y_per_model_per_seed: npt.ArrayLike,
    seeds: int,
    rejects: Any,
    *,
    num_resamples: int,
    seed: int = 0,
) -> float:
    """Fraction of resamples where a test passes with ``seeds`` seeds per model drawn with replacement from each
    model's observed ones.

    Args:
        y_per_model_per_seed: ``[num_models, num_seeds]``.
        rejects: ``rejects(y_resampled) -> [num_resamples] bool`` with ``y_resampled: [num_resamples, num_models,
            seeds]``.
    """
    y = np.asarray(y_per_model_per_seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, y.shape[1], size=(num_resamples, y.shape[0], seeds))
    drawn = y[np.arange(y.shape[0])[None, :, None], picks]  # [num_resamples, num_models, seeds]
    return float(np.mean(rejects(drawn)))


def _search(
    y: np.ndarray, rejects: Any, *, target: float, num_resamples: int, seed: int, grid: tuple[int, ...]
) -> tuple[int, float, bool]:
    """The first ``n`` of ``grid`` whose resampled power reaches ``target``: ``(n, power, reached)``."""
    power = 0.0
    for n in grid:
        power = resampled_power(y, n, rejects, num_resamples=num_resamples, seed=seed)
        if power >= target:
            return n, power, True
    return grid[-1], power, False


def spearman_seeds_needed(
    x_per_model: npt.ArrayLike,
    y_per_model_per_seed: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    target: float = TARGET_POWER,
    num_resamples: int = 400,
    seed: int = 0,
    grid: tuple[int, ...] = SEED_GRID,
) -> Power:
    """Seeds per model for the one-sided Spearman permutation test over models to reach ``target`` power, by
    resampling seeds (:func:`resampled_power`, :func:`spearman_p_values`).

    Args:
        x_per_model: ``[num_models]`` (e.g. reward variance); y_per_model_per_seed: ``[num_models, num_seeds]``.
    """
    x = np.asarray(x_per_model, dtype=np.float64)
    y = np.asarray(y_per_model_per_seed, dtype=np.float64)
    means = y.mean(axis=1)
    rho = float(_correlate_rows(x[None], means[None], "spearman")[0])
    text = f"Spearman {rho:.2f} over {x.size} models"
    method = f"resampling seeds, {num_resamples} draws per number of seeds"
    if not math.isfinite(rho) or rho <= 0:
        return Power("other way", rho, text, None, None, target, alpha, method)
    if float(spearman_p_values(x, means[None])[0]) >= alpha:
        needed = spearman_critical(x.size, alpha=alpha)
        note = (
            f"with {x.size} reward models the permutation test needs Spearman >= {needed:.2f} for p < {alpha:g}, "
            "and more seeds only settle the seed means on the observed ones; it needs more reward models"
        )
        return Power("not by seeds", rho, text, None, None, target, alpha, method, note)
    if y.shape[1] < 2:
        return Power("too few seeds", rho, text, None, None, target, alpha, method)

    def rejects(drawn: np.ndarray) -> np.ndarray:
        return spearman_p_values(x, drawn.mean(axis=-1)) < alpha

    n, power, reached = _search(y, rejects, target=target, num_resamples=num_resamples, seed=seed, grid=grid)
    return Power("reached" if reached else "beyond", rho, text, n, power, target, alpha, method)


def difference_seeds_needed(
    x_first: npt.ArrayLike,
    x_second: npt.ArrayLike,
    y_per_model_per_seed: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    target: float = TARGET_POWER,
    num_resamples: int = 200,
    inner_resamples: int = 400,
    seed: int = 0,
    grid: tuple[int, ...] = SEED_GRID,
) -> Power:
    """Seeds per model for the one-sided bootstrap of ``spearman(x_first, y) - spearman(x_second, y)``
    (:func:`rmteacher.significance.correlation_difference`) to reach ``target`` power, by resampling seeds; each
    draw runs the bootstrap with ``inner_resamples`` resamples."""
    x1, x2 = np.asarray(x_first, dtype=np.float64), np.asarray(x_second, dtype=np.float64)
    y = np.asarray(y_per_model_per_seed, dtype=np.float64)
    means = y.mean(axis=1, keepdims=True)
    observed = correlation_difference(x1, x2, means, seed=seed)  # as the finding tests it
    text = f"Spearman difference {observed.estimate:+.2f}"
    method = f"resampling seeds, {num_resamples} draws per number of seeds, {inner_resamples} bootstrap resamples each"
    if not math.isfinite(observed.estimate) or observed.estimate <= 0:
        return Power("other way", observed.estimate, text, None, None, target, alpha, method)
    if not observed.p_value < alpha:
        note = (
            f"on the observed seed means the bootstrap over the {x1.size} reward models alone gives p = "
            f"{observed.p_value:.2g}, and more seeds only settle the means there; it needs more reward models"
        )
        return Power("not by seeds", observed.estimate, text, None, None, target, alpha, method, note)
    if y.shape[1] < 2:
        return Power("too few seeds", observed.estimate, text, None, None, target, alpha, method)

    def rejects(drawn: np.ndarray) -> np.ndarray:
        return np.array(
            [
                correlation_difference(x1, x2, d, num_resamples=inner_resamples, seed=seed + i).p_value < alpha
                for i, d in enumerate(drawn)
            ]
        )

    n, power, reached = _search(y, rejects, target=target, num_resamples=num_resamples, seed=seed, grid=grid)
    return Power("reached" if reached else "beyond", observed.estimate, text, n, power, target, alpha, method)


def with_power(finding: Finding, power: Power) -> Finding:
    """``finding`` with its power recorded and stated after its sentence."""
    return replace(finding, power=power, sentence=f"{finding.sentence} {power.text()}")
