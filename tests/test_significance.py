"""rmteacher.significance: hand-computed p-values and intervals, implementations agreeing, findings text, errors."""

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats

from rmteacher.metrics import ConfidenceInterval, percentile_interval
from rmteacher.significance import (
    correlation_difference,
    correlation_with_uncertainty,
    finding_accuracy_not_better,
    finding_low_variance_vs_best_trained,
    finding_low_variance_vs_ground_truth,
    finding_on_policy_variance_gap,
    finding_policy_dependent_best,
    finding_variance_predicts_increase,
    increase_interval,
    one_sided_less,
    resampled_correlations,
    verdict,
)

# Paper Table 1 (Pythia-2.8B): the five trained reward models and the perfectly accurate low-variance one.
TABLE1_VARIANCE = np.array([0.630, 0.616, 0.555, 0.438, 0.314, 0.111])
TABLE1_ON_POLICY = np.array([0.660, 0.656, 0.640, 0.616, 0.587, 1.000])

# ------------------------------------------------------------------------------------------- over seeds, by hand


def test_increase_interval_by_hand() -> None:
    # Seeds 1, 2, 3: mean 2, std 1, half-width t_{0.975, 2} / sqrt(3) = 4.302652729911275 / 1.7320508 = 2.4841377.
    interval = increase_interval([1.0, 2.0, 3.0])
    assert (interval.mean, interval.std, interval.num_seeds, interval.defined) == (2.0, 1.0, 3, True)
    assert interval.low == pytest.approx(2 - 2.4841377, abs=1e-6)
    assert interval.high == pytest.approx(2 + 2.4841377, abs=1e-6)
    assert interval.text() == "+2.000 ± 1.000"


def test_increase_interval_of_one_seed_is_undefined() -> None:
    interval = increase_interval([0.05])
    assert not interval.defined and math.isnan(interval.low) and math.isnan(interval.std)
    assert interval.to_dict()["low"] is None
    assert interval.text() == "+0.050"


def test_welch_one_sided_by_hand() -> None:
    # a = (1, 2, 3), b = (3, 4, 5): means 2 and 4, variances 1 and 1; standard error sqrt(1/3 + 1/3); t = -sqrt(6);
    # Welch-Satterthwaite df = (2/3)^2 / ((1/3)^2 / 2 + (1/3)^2 / 2) = 4. p = P(T_4 <= -sqrt(6)).
    test = one_sided_less([1.0, 2.0, 3.0], [3.0, 4.0, 5.0])
    assert test.statistic == pytest.approx(-math.sqrt(6))
    assert test.p_value == pytest.approx(stats.t.cdf(-math.sqrt(6), 4))
    assert test.p_value == pytest.approx(0.035242, abs=1e-6)
    assert test.p_value + test.p_opposite == pytest.approx(1.0)
    assert test.test_name() == "one-sided Welch t-test"


def test_exact_permutation_one_sided_by_hand() -> None:
    # a = (1, 2, 3), b = (4, 5, 6): the observed difference -3 is the smallest of the C(6, 3) = 20 splits, so
    # p = 1/20 = 0.05: with 3 seeds per side the permutation test cannot pass alpha = 0.05 (why Welch is the default).
    test = one_sided_less([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], method="permutation")
    assert test.exact
    assert test.p_value == pytest.approx(1 / 20)
    assert test.p_opposite == pytest.approx(1.0)
    assert test.statistic == pytest.approx(-3.0)


def test_welch_needs_two_seeds_a_side() -> None:
    test = one_sided_less([0.1], [0.2, 0.3])
    assert math.isnan(test.p_value) and math.isnan(test.p_opposite)
    finding = finding_low_variance_vs_ground_truth([0.1], [0.2, 0.3])
    assert finding.verdict == "inconclusive at this budget"
    assert "needs at least 2 seeds for a test" in finding.sentence
    json.dumps(finding.to_dict(), allow_nan=False)  # an undefined number is null in JSON


def test_one_seed_wording() -> None:
    """The quick study's one seed: neither "p = undefined (undefined)" nor "over 1 seeds"."""
    finding = finding_low_variance_vs_ground_truth([0.1], [0.2])
    assert finding.sentence == (
        "The perfectly accurate low-variance reward model raised the ground truth less than the ground truth itself: "
        "+0.100 vs +0.200 (mean over 1 seed); the one-sided Welch t-test needs at least 2 seeds for a test: "
        "inconclusive at this budget."
    )
    assert (finding.label, finding.effect) == ("low-variance model < ground truth", "+0.100")
    correlation = finding_variance_predicts_increase([0.1, 0.2, 0.3], [[0.1], [0.3], [0.2]])
    assert "over models and 1 seed)" in correlation.sentence and "1 seeds" not in correlation.sentence
    for text in (finding.sentence, correlation.sentence):
        assert "undefined" not in text


# ------------------------------------------------------------------------------------------ correlations, by hand


def test_exact_permutation_p_value_by_hand() -> None:
    # x = (1, 2, 3, 4), seed means of y = (1, 3, 2, 4): Spearman = 1 - 6 * 2 / (4 * 15) = 0.8. Over the 4! = 24
    # orderings of x, rho = 1 - sum d^2 / 10 >= 0.8 needs sum d^2 <= 2: the identity and the 3 adjacent swaps.
    # p (positive) = 4/24; p (negative) = #{rho <= 0.8} / 24 = 23/24; two-sided = 2 * min = 8/24.
    y = np.array([[0.5, 1.5], [2.5, 3.5], [2.0, 2.0], [3.0, 5.0]])
    for method in ("spearman", "pearson"):  # x and the means are ranks already: the same numbers
        test = correlation_with_uncertainty([1.0, 2.0, 3.0, 4.0], y, method=method, num_resamples=200)
        assert test.estimate == pytest.approx(0.8)
        assert test.exact and test.num_permutations == 24
        assert test.p_positive == pytest.approx(4 / 24)
        assert test.p_negative == pytest.approx(23 / 24)
        assert test.p_two_sided == pytest.approx(8 / 24)


def test_permutation_p_value_against_enumeration() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=5), rng.normal(size=(5, 3))
    observed = stats.pearsonr(x, y.mean(axis=1)).statistic
    null = [stats.pearsonr(np.array(p), y.mean(axis=1)).statistic for p in itertools.permutations(x)]
    expected = np.mean(np.array(null) >= observed - 1e-12)
    test = correlation_with_uncertainty(x, y, num_resamples=100)
    assert test.estimate == pytest.approx(observed)
    assert test.p_positive == pytest.approx(expected)
    # Monte Carlo when the orderings exceed num_permutations: within its error of the exact value.
    sampled = correlation_with_uncertainty(x, y, num_resamples=100, num_permutations=100)
    assert not sampled.exact and sampled.num_permutations == 100
    assert sampled.p_positive == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / 100) + 0.01)


def test_spearman_estimate_is_scipys() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=6), rng.normal(size=(6, 3))
    test = correlation_with_uncertainty(x, y, method="spearman", num_resamples=100)
    assert test.estimate == pytest.approx(stats.spearmanr(x, y.mean(axis=1)).statistic)


def test_two_level_bootstrap_on_fixed_draws_by_hand() -> None:
    # x = (0, 1, 2); seeds y = [[0, 2], [1, 1], [4, 0]].
    x, y = np.array([0.0, 1.0, 2.0]), np.array([[0.0, 2.0], [1.0, 1.0], [4.0, 0.0]])
    models = np.array([[0, 1, 2], [2, 2, 0], [1, 1, 1], [0, 1, 2]])
    seeds = np.array(
        [
            [[0, 0], [0, 1], [1, 1]],  # y_b = (0, 1, 0) against x_b = (0, 1, 2): centred (-1, 0, 1).(-1, 2, -1)/3 = 0
            [[0, 0], [1, 0], [1, 1]],  # y_b = (4, 2, 2), x_b = (2, 2, 0): (4/3) / (24/9) = 0.5
            [[0, 0], [0, 0], [0, 0]],  # one model drawn three times: x constant, no correlation
            [[1, 1], [0, 0], [0, 0]],  # y_b = (2, 1, 4), x_b = (0, 1, 2): 2 / sqrt(2 * 42/9) = 6 / sqrt(84)
        ]
    )
    replicates = resampled_correlations(x, y, models, seeds)
    np.testing.assert_allclose(replicates[[0, 1, 3]], [0.0, 0.5, 6 / math.sqrt(84)], atol=1e-15)
    assert math.isnan(replicates[2])
    # Spearman of resample 1: ranks (2.5, 2.5, 1) and (3, 1.5, 1.5): 0.75 / 1.5 = 0.5 as well.
    assert resampled_correlations(x, y, models[1:2], seeds[1:2], method="spearman")[0] == pytest.approx(0.5)
    # The 50% percentile interval of the defined replicates (0, 0.5, 0.6547): positions 0.5 and 1.5 of the sorted
    # values, 0.25 and 0.5 + 0.5 * (0.6547 - 0.5) = 0.5773.
    interval = percentile_interval(0.0, replicates[np.isfinite(replicates)], confidence=0.5)
    assert (interval.low, interval.high) == pytest.approx((0.25, 0.5 + 0.5 * (6 / math.sqrt(84) - 0.5)))


def test_two_level_bootstrap_deterministic_degenerate_case() -> None:
    # A strictly increasing x and seeds that agree: every resample with two distinct models has Spearman 1; the
    # resamples that drew one model 4 times (probability 4/4^4) have none and are left out.
    y = np.repeat(np.array([[0.1], [0.2], [0.3], [0.4]]), 3, axis=1)
    test = correlation_with_uncertainty([1.0, 2.0, 3.0, 4.0], y, method="spearman", num_resamples=2000, seed=1)
    assert (test.estimate, test.low, test.high) == (1.0, 1.0, 1.0)
    assert 10 < test.degenerate_resamples < 60  # about 2000 * 4 / 256 = 31
    assert test.p_positive == pytest.approx(1 / 24)


def test_two_level_interval_widens_with_seed_noise() -> None:
    rng = np.random.default_rng(2)
    x = np.arange(6.0)
    quiet = x[:, None] + 0.1 * rng.normal(size=(6, 3))
    noisy = x[:, None] + 3.0 * rng.normal(size=(6, 3))
    width = [(lambda t: t.high - t.low)(correlation_with_uncertainty(x, y, num_resamples=500)) for y in (quiet, noisy)]
    assert width[0] < width[1]


def test_correlation_difference_is_paired() -> None:
    # The same x twice: every resample's difference is exactly 0, so neither direction is supported.
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=6), rng.normal(size=(6, 3))
    same = correlation_difference(x, x, y, num_resamples=300)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    assert same.p_value == pytest.approx(1.0) and same.p_opposite == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------------ verdicts


def test_verdict_rules() -> None:
    assert verdict(0.01, 0.99) == "reproduces"
    assert verdict(0.99, 0.01) == "does not reproduce"
    assert verdict(0.2, 0.8) == "inconclusive at this budget"
    assert verdict(math.nan, math.nan) == "inconclusive at this budget"
    assert verdict(0.04, 0.96, alpha=0.01) == "inconclusive at this budget"


def test_finding_text_significant_case() -> None:
    # The example: the low-variance model raised the ground truth less than the ground truth itself.
    low, truth = [0.030, 0.040, 0.045], [0.050, 0.055, 0.060]
    p = stats.ttest_ind(low, truth, equal_var=False, alternative="less").pvalue  # 0.0210
    finding = finding_low_variance_vs_ground_truth(low, truth)
    assert finding.verdict == "reproduces"
    assert finding.p_value == pytest.approx(p)
    assert finding.sentence == (
        "The perfectly accurate low-variance reward model raised the ground truth less than the ground truth itself: "
        "+0.038 ± 0.008 vs +0.055 ± 0.005 (mean ± std over 3 seeds), one-sided Welch t-test p = 0.021 < 0.05: "
        "reproduces."
    )


def test_finding_text_non_significant_case() -> None:
    finding = finding_low_variance_vs_ground_truth([0.030, 0.060, 0.045], [0.050, 0.040, 0.060])
    assert finding.verdict == "inconclusive at this budget"
    assert "one-sided Welch t-test p = 0.33 >= 0.05: inconclusive at this budget." in finding.sentence
    assert "reproduces" not in finding.sentence


def test_finding_text_opposite_case() -> None:
    finding = finding_low_variance_vs_ground_truth([0.090, 0.100, 0.095], [0.050, 0.040, 0.060])
    assert finding.verdict == "does not reproduce"
    assert "the opposite direction has p = 0.0032 < 0.05: does not reproduce." in finding.sentence
    assert finding.to_dict()["details"]["a"]["num_seeds"] == 3


def test_best_trained_finding_corrects_for_picking_the_best() -> None:
    low = [0.030, 0.040, 0.045]
    trained = {"rm_100": [0.050, 0.055, 0.060], "rm_0": [0.020, 0.030, 0.010]}
    raw = stats.ttest_ind(low, trained["rm_100"], equal_var=False, alternative="less").pvalue
    finding = finding_low_variance_vs_best_trained(low, trained)
    assert finding.details["best"] == "rm_100"
    assert finding.p_value == pytest.approx(2 * raw)
    assert "x2 Bonferroni for picking the best = 0.042 < 0.05: reproduces." in finding.sentence
    # Five candidates: 5 * 0.021 = 0.105, no longer significant.
    more = {**trained, **{f"rm_{i}": [0.0, 0.01, 0.02] for i in (25, 50, 75)}}
    assert finding_low_variance_vs_best_trained(low, more).verdict == "inconclusive at this budget"
    fixed_beforehand = finding_low_variance_vs_best_trained(low, more, picked_from_these_runs=False)
    assert fixed_beforehand.verdict == "reproduces" and "Bonferroni" not in fixed_beforehand.sentence


def test_variance_predicts_increase_finding() -> None:
    # Proxy increases that rank like Table 1's variances (the paper's Spearman 1.0), with seed noise.
    rng = np.random.default_rng(4)
    increase = 0.5 * TABLE1_VARIANCE[:, None] + 0.005 * rng.normal(size=(6, 3))
    finding = finding_variance_predicts_increase(TABLE1_VARIANCE, increase)
    assert finding.verdict == "reproduces"
    assert finding.p_value == pytest.approx(1 / 720)
    assert "Spearman 1.00" in finding.sentence
    assert "exact over 720 orderings) p = 0.0014 < 0.05: reproduces." in finding.sentence
    # A reversed relation is the opposite direction, significant: does not reproduce.
    reversed_finding = finding_variance_predicts_increase(TABLE1_VARIANCE, -increase)
    assert reversed_finding.verdict == "does not reproduce"
    assert "negative association" in reversed_finding.sentence


def test_accuracy_not_better_finding() -> None:
    rng = np.random.default_rng(5)
    variance = np.linspace(0.1, 0.7, 8)
    increase = variance[:, None] + 0.01 * rng.normal(size=(8, 3))
    accuracy = rng.permutation(np.linspace(0.6, 0.8, 8))  # unrelated to the increase
    finding = finding_accuracy_not_better(variance, accuracy, increase)
    assert finding.verdict == "reproduces"
    assert "one-sided bootstrap p = " in finding.sentence
    # The paper's own Table 1: among the five trained models accuracy ranks like variance, so resamples without
    # the low-variance model (about (5/6)^6 = 33%) tie: not significant at this size.
    paper = finding_accuracy_not_better(TABLE1_VARIANCE, TABLE1_ON_POLICY, 0.5 * TABLE1_VARIANCE[:, None])
    assert paper.verdict == "inconclusive at this budget"
    assert paper.details["first"] == pytest.approx(1.0) and paper.details["second"] == pytest.approx(0.143, abs=1e-3)


def test_on_policy_variance_gap_finding() -> None:
    wide_apart = finding_on_policy_variance_gap(
        ConfidenceInterval(0.630, 0.610, 0.650, 0.95), ConfidenceInterval(0.314, 0.290, 0.330, 0.95)
    )
    assert wide_apart.verdict == "reproduces"
    assert "gap 0.316 >= 0.1 and non-overlapping CIs: reproduces." in wide_apart.sentence
    small = finding_on_policy_variance_gap(
        ConfidenceInterval(0.36, 0.34, 0.38, 0.95), ConfidenceInterval(0.31, 0.29, 0.33, 0.95)
    )
    assert small.verdict == "inconclusive at this budget"
    assert "gap 0.050 < 0.1 although the CIs do not overlap" in small.sentence
    overlapping = finding_on_policy_variance_gap(
        ConfidenceInterval(0.80, 0.70, 0.90, 0.95), ConfidenceInterval(0.65, 0.55, 0.75, 0.95)
    )
    assert overlapping.verdict == "inconclusive at this budget"
    opposite = finding_on_policy_variance_gap(
        ConfidenceInterval(0.30, 0.28, 0.32, 0.95), ConfidenceInterval(0.60, 0.58, 0.62, 0.95)
    )
    assert opposite.verdict == "does not reproduce"


def test_policy_dependent_best_crossing() -> None:
    increases = {
        "pythia": {"a": [0.17, 0.18, 0.175], "b": [0.15, 0.14, 0.148], "c": [0.11, 0.10, 0.12]},
        "llama": {"a": [0.27, 0.28, 0.275], "b": [0.32, 0.33, 0.31], "c": [0.27, 0.28, 0.265]},
    }
    finding = finding_policy_dependent_best(increases)
    assert finding.verdict == "reproduces"
    assert finding.details["winners"] == {"pythia": "a", "llama": "b"}
    # Under pythia, llama's winner b is beaten by a; under llama, pythia's winner a is beaten by b (Bonferroni x2
    # over the other models each); the crossing's p-value is the larger of the two.
    under_pythia = 2 * stats.ttest_ind(increases["pythia"]["b"], increases["pythia"]["a"], equal_var=False,
                                       alternative="less").pvalue  # fmt: skip
    under_llama = 2 * stats.ttest_ind(increases["llama"]["a"], increases["llama"]["b"], equal_var=False,
                                      alternative="less").pvalue  # fmt: skip
    assert finding.p_value == pytest.approx(max(under_pythia, under_llama))
    assert f"p = {finding.p_value:.2g} < 0.05: reproduces." in finding.sentence


def test_policy_dependent_best_same_winner() -> None:
    clear = {"pythia": {"a": [0.17, 0.18, 0.175], "b": [0.15, 0.14, 0.148]},
             "llama": {"a": [0.33, 0.34, 0.335], "b": [0.32, 0.31, 0.31]}}  # fmt: skip
    finding = finding_policy_dependent_best(clear)
    assert finding.verdict == "does not reproduce"
    assert finding.details["common_winner"] == "a"
    assert "the largest over policies and models, b under llama" in finding.sentence
    noisy = {"pythia": {"a": [0.17, 0.10, 0.2], "b": [0.15, 0.14, 0.148]},
             "llama": {"a": [0.33, 0.30, 0.335], "b": [0.32, 0.31, 0.31]}}  # fmt: skip
    assert finding_policy_dependent_best(noisy).verdict == "inconclusive at this budget"
    one_seed = {"pythia": {"a": [0.2], "b": [0.1]}, "llama": {"a": [0.3], "b": [0.1]}}
    undefined = finding_policy_dependent_best(one_seed)
    assert undefined.verdict == "inconclusive at this budget"
    assert undefined.sentence.endswith(
        "(one seed); its one-sided Welch tests need at least 2 seeds for a test: inconclusive at this budget."
    )
    json.dumps(undefined.to_dict(), allow_nan=False)


# ------------------------------------------------------------------------------------------------------- errors


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"values_over_seeds must have shape \[num_seeds\]"):
        increase_interval([])
    with pytest.raises(ValueError, match="a_seeds has a non-finite value at seed 1"):
        one_sided_less([0.1, np.nan], [0.2, 0.3])
    with pytest.raises(ValueError, match="method must be 'welch' or 'permutation'; got 'z'"):
        one_sided_less([0.1, 0.2], [0.2, 0.3], method="z")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 3 models; got 2"):
        correlation_with_uncertainty([1.0, 2.0], [[1.0], [2.0]])
    with pytest.raises(ValueError, match=r"y_per_model_per_seed must have shape \[num_models=3, num_seeds >= 1\]"):
        correlation_with_uncertainty([1.0, 2.0, 3.0], [[1.0], [2.0]])
    with pytest.raises(ValueError, match=r"y_per_model_per_seed has a non-finite value at index \(1, 0\)"):
        correlation_with_uncertainty([1.0, 2.0, 3.0], [[1.0], [np.inf], [2.0]])
    with pytest.raises(ValueError, match="method must be 'pearson' or 'spearman'; got 'kendall'"):
        correlation_with_uncertainty([1.0, 2.0, 3.0], [[1.0], [3.0], [2.0]], method="kendall")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\); got 95"):
        correlation_with_uncertainty([1.0, 2.0, 3.0], [[1.0], [3.0], [2.0]], confidence=95)
    with pytest.raises(ValueError, match=r"seed_draws must have shape \(1, 3, 1\)"):
        resampled_correlations([1.0, 2.0, 3.0], [[1.0], [3.0], [2.0]], np.zeros((1, 3), int), np.zeros((1, 3), int))
    with pytest.raises(ValueError, match=r"model_draws must hold integer indices in \[0, 3\)"):
        resampled_correlations([1.0, 2.0, 3.0], [[1.0], [3.0], [2.0]], np.full((1, 3), 3), np.zeros((1, 3, 1), int))
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\); got 5"):
        verdict(0.01, 0.9, alpha=5)
    with pytest.raises(ValueError, match="trained is empty"):
        finding_low_variance_vs_best_trained([0.1, 0.2], {})
    with pytest.raises(ValueError, match="need at least 2 policies"):
        finding_policy_dependent_best({"p": {"a": [0.1], "b": [0.2]}})
    with pytest.raises(ValueError, match=r"policy 'q' has models \['a'\]; every policy needs \['a', 'b'\]"):
        finding_policy_dependent_best({"p": {"a": [0.1], "b": [0.2]}, "q": {"a": [0.1]}})
