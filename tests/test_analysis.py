"""rmteacher.analysis: the paper's Table 2 arithmetic, reward increase and summaries."""

import numpy as np
import pytest
from scipy import stats

from rmteacher.analysis import (
    CORRELATION_ROWS,
    correlation_table,
    normalized_variance,
    reward_increase,
    summarize_reward_model,
)
from rmteacher.metrics import fit_normalization, perfectly_accurate_low_variance

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
