"""rmteacher.analysis: the paper's Table 2 arithmetic, reward increase and summaries."""

import itertools
from collections.abc import Mapping

import numpy as np
import pytest
from scipy import stats

from rmteacher.analysis import (
    CORRELATION_ROWS,
    TeacherRanking,
    correlation_table,
    normalized_variance,
    normalized_variance_ci,
    rank_teachers,
    resampled_normalized_variance,
    reward_increase,
    summarize_reward_model,
    teacher_score,
)
from rmteacher.metrics import (
    ConfidenceInterval,
    accuracy,
    bootstrap_ci,
    fit_normalization,
    perfectly_accurate_low_variance,
    reward_variance,
)

# Paper Table 1 (Pythia-2.8B): 100/75/50/25/0% on-policy reward models and the perfectly accurate low-variance one.
TABLE1_VARIANCE = [0.630, 0.616, 0.555, 0.438, 0.314, 0.111]
TABLE1_ON_POLICY = [0.660, 0.656, 0.640, 0.616, 0.587, 1.000]
TABLE1_OFF_POLICY = [0.630, 0.732, 0.758, 0.754, 0.762, 1.000]


def test_correlation_table_reproduces_table2_spearman_column() -> None:
    # Table 2 reports Spearman(variance, proxy increase) = 1, so the proxy increases rank like the variances; with
    # n = 6 and simple averages for the combined rows the paper's other Spearman values follow exactly.
    increase = np.array(TABLE1_VARIANCE) * 2 - 0.1  # any increasing function of the variance
    table = correlation_table(TABLE1_VARIANCE, TABLE1_ON_POLICY, TABLE1_OFF_POLICY, {"proxy": increase})
    reported = {
        "reward_variance": 1.000,
        "on_policy_accuracy": 0.143,
        "off_policy_accuracy": -0.943,
        "on_and_off_policy_accuracy": -0.486,
        "reward_variance_and_accuracy": 0.886,
    }
    assert list(table) == list(CORRELATION_ROWS)
    for row, value in reported.items():
        assert table[row]["proxy"].spearman == pytest.approx(value, abs=5e-4), row
        assert table[row]["proxy"].n == 6


def test_correlation_table_matches_scipy_on_the_combined_rows() -> None:
    rng = np.random.default_rng(0)
    var, on, off, inc = rng.uniform(size=(4, 7))
    table = correlation_table(var, on, off, {"gt": inc})
    combined = (var + (on + off) / 2) / 2
    expected = stats.pearsonr(combined, inc)
    assert table["reward_variance_and_accuracy"]["gt"].pearson == pytest.approx(expected.statistic)
    assert table["reward_variance_and_accuracy"]["gt"].pearson_p == pytest.approx(expected.pvalue)


def test_correlation_of_constant_column_is_nan_not_a_warning() -> None:
    table = correlation_table([0.1, 0.2, 0.3], [1.0, 1.0, 1.0], [0.5, 0.6, 0.7], {"x": [1.0, 2.0, 3.0]})
    assert np.isnan(table["on_policy_accuracy"]["x"].pearson)
    assert table["on_policy_accuracy"]["x"].to_dict()["pearson"] is None


def test_correlation_table_errors() -> None:
    with pytest.raises(ValueError, match="at least 3 reward models; got 2"):
        correlation_table([0.1, 0.2], [0.5, 0.6], [0.5, 0.6], {"x": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"x has shape \(2,\); every column needs one value per reward model \(3\)"):
        correlation_table([0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [0.5, 0.6, 0.7], {"x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="increases is empty"):
        correlation_table([0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [0.5, 0.6, 0.7], {})
    with pytest.raises(ValueError, match="on_policy_accuracy has a non-finite value at reward model 1"):
        correlation_table([0.1, 0.2, 0.3], [0.5, np.nan, 0.7], [0.5, 0.6, 0.7], {"x": [1.0, 2.0, 3.0]})


def test_reward_increase_by_hand() -> None:
    initial = np.array([[0.0, 2.0], [2.0, 4.0]])  # mean 2, unbiased std sqrt(8/3)
    later = initial + 1.0
    stats_ = fit_normalization(initial, eps=0.0)
    assert reward_increase(later, initial, stats=stats_) == pytest.approx(1 / np.sqrt(8 / 3))
    assert reward_increase(initial, initial) == pytest.approx(0.0, abs=1e-12)


def test_normalized_variance_and_summary() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(60, 10))
    # Variance all within prompts: normalized variance close to 1 (population, K/(K-1) off from unbiased).
    assert normalized_variance(truth, unbiased=True) == pytest.approx(1.0, abs=0.05)
    # Normalize the truth, then scale half the prompts by 0.001 (the paper's order): about half the variance left.
    normalized = (truth - truth.mean()) / truth.std(ddof=1)
    low, chosen = perfectly_accurate_low_variance(normalized, fraction=0.5, factor=1e-3)
    summary = summarize_reward_model(low, truth, num_resamples=200)
    assert summary.on_policy_accuracy is not None
    assert summary.on_policy_accuracy.estimate == 1.0
    assert summary.raw_reward_variance.estimate == pytest.approx(0.45, abs=0.07)
    assert summary.raw_reward_variance.low < summary.raw_reward_variance.estimate < summary.raw_reward_variance.high
    assert summary.to_dict()["normalization"]["num_samples"] == 10
    assert len(chosen) == 30


# ------------------------------------------------------------------ vectorized bootstrap against the per-resample loop


def rank_teachers_loop(
    normalized_rewards: Mapping[str, np.ndarray],
    truth: np.ndarray | None,
    off_policy_correct: Mapping[str, np.ndarray] | None,
    *,
    unbiased: bool = False,
    confidence: float = 0.95,
    num_resamples: int = 1000,
    seed: int = 0,
) -> TeacherRanking:
    """The ranking as rmteacher computed it before the vectorized bootstrap: every score recomputed per resample."""
    names = list(normalized_rewards)
    num_prompts = next(iter(normalized_rewards.values())).shape[0]

    def scores(rows: np.ndarray) -> tuple[np.ndarray, str]:
        values, criterion = [], ""
        for name in names:
            var = float(reward_variance(normalized_rewards[name][rows], unbiased=unbiased).mean())
            on = None if truth is None else float(accuracy(normalized_rewards[name][rows], truth[rows]).mean())
            off = None
            if off_policy_correct is not None and name in off_policy_correct:
                picked = off_policy_correct[name][rows]
                off = float(np.nanmean(picked)) if np.isfinite(picked).any() else None
            value, criterion = teacher_score(var, on, off)
            values.append(value)
        return np.array(values), criterion

    full, criterion = scores(np.arange(num_prompts))
    draws = np.random.default_rng(seed).integers(0, num_prompts, size=(num_resamples, num_prompts))
    resampled = np.stack([scores(rows)[0] for rows in draws])
    alpha = (1 - confidence) / 2
    order_index = np.argsort(-full, kind="stable")
    adjacent_confidence, separated = [], []
    for upper, lower in itertools.pairwise(order_index):
        difference = resampled[:, upper] - resampled[:, lower]
        adjacent_confidence.append(float(np.mean(difference > 0)))
        separated.append(bool(np.quantile(difference, alpha) > 0))
    score = {
        names[i]: ConfidenceInterval(
            float(full[i]),
            float(np.quantile(resampled[:, i], alpha)),
            float(np.quantile(resampled[:, i], 1 - alpha)),
            confidence,
        )
        for i in range(len(names))
    }
    return TeacherRanking(criterion, [names[i] for i in order_index], score, adjacent_confidence, separated)


def assert_rankings_equal(new: TeacherRanking, old: TeacherRanking) -> None:
    assert (new.criterion, new.order, new.confidence, new.separated) == (
        old.criterion,
        old.order,
        old.confidence,
        old.separated,
    )
    for name, ci in old.score.items():
        got = new.score[name]
        np.testing.assert_allclose(
            [got.estimate, got.low, got.high], [ci.estimate, ci.low, ci.high], rtol=0, atol=1e-12
        )


def reward_table(seed: int, num_prompts: int = 40, num_samples: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(num_prompts, num_samples))
    return {
        "truth": truth,
        "close": truth + 0.3 * rng.normal(size=truth.shape),
        "far": 0.5 * truth + rng.normal(size=truth.shape),
        "coarse": np.round(truth),  # ties: accuracy below 1 from the tie rule
    }


@pytest.mark.parametrize("unbiased", [False, True])
def test_rank_teachers_equals_the_per_resample_loop(unbiased: bool) -> None:
    table = reward_table(0)
    truth = table.pop("truth")
    rng = np.random.default_rng(1)
    # Off-policy pairs on 3 prompts of 40, so some resamples hold no pair (the score then drops the off-policy
    # accuracy, as teacher_score does); "coarse" has no pairs at all.
    sparse = np.full(40, np.nan)
    sparse[[3, 17, 29]] = [1.0, 0.0, 1.0]
    off = {"close": sparse, "far": rng.integers(0, 2, size=40).astype(float)}
    options = {"unbiased": unbiased, "num_resamples": 300, "seed": 4}
    for args in ((table, truth, off), (table, truth, None), (table, None, off), (table, None, None)):
        assert_rankings_equal(rank_teachers(*args, **options), rank_teachers_loop(*args, **options))  # type: ignore[arg-type]


def test_rank_teachers_without_off_policy_pairs_in_some_resamples() -> None:
    # With one prompt of 5 holding a pair, about (4/5)^5 = 33% of resamples have no pair at all.
    table = reward_table(2, num_prompts=5)
    truth = table.pop("truth")
    off = {name: np.array([np.nan, 1.0, np.nan, np.nan, np.nan]) for name in table}
    new = rank_teachers(table, truth, off, num_resamples=200, seed=0)
    assert_rankings_equal(new, rank_teachers_loop(table, truth, off, num_resamples=200, seed=0))
    assert new.criterion == "reward_variance_and_accuracy"


@pytest.mark.parametrize("unbiased", [False, True])
def test_normalized_variance_ci_equals_scipys_loop(unbiased: bool) -> None:
    # Rewards with a large common offset and unequal prompt means: the between-prompt part of the global variance
    # matters, and the resample's statistics must be re-fitted from its own prompts.
    rng = np.random.default_rng(3)
    rewards = 5.0 + rng.normal(size=(80, 1)) + rng.uniform(0.2, 2.0, size=(80, 1)) * rng.normal(size=(80, 10))
    reference = bootstrap_ci(lambda r: normalized_variance(r, unbiased=unbiased), rewards, num_resamples=400, seed=2)
    fast = normalized_variance_ci(rewards, unbiased=unbiased, num_resamples=400, seed=2)
    np.testing.assert_allclose(
        [fast.estimate, fast.low, fast.high], [reference.estimate, reference.low, reference.high], rtol=0, atol=1e-12
    )


def test_resampled_normalized_variance_by_hand() -> None:
    # Prompt 0: (0, 2), prompt 1: (2, 4). All four: mean 2, unbiased variance (4 + 0 + 0 + 4) / 3 = 8/3; per-prompt
    # population variances 1 and 1, so the normalized variance is 1 / (8/3) = 3/8 (eps = 0).
    rewards = np.array([[0.0, 2.0], [2.0, 4.0]])
    got = resampled_normalized_variance(rewards, np.array([[0, 1], [0, 0], [1, 0]]), eps=0.0)
    # Resample (0, 0): rewards 0, 2, 0, 2, unbiased variance 4/3, normalized variance 1 / (4/3) = 3/4.
    np.testing.assert_allclose(got, [3 / 8, 3 / 4, 3 / 8])
    assert got[0] == pytest.approx(normalized_variance(rewards), rel=1e-7)  # eps = 1e-8 there


def test_resampled_normalized_variance_errors() -> None:
    with pytest.raises(ValueError, match=r"indices must be an integer \[num_resamples, num_prompts\] array"):
        resampled_normalized_variance(np.ones((2, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 2\); got 0\.\.2"):
        resampled_normalized_variance(np.ones((2, 2)), np.array([[0, 2]]))
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\); got 2"):
        normalized_variance_ci(np.ones((2, 2)), confidence=2)
