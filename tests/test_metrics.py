"""rmteacher.metrics: hand-computed values, properties, two implementations agreeing, and every error path."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from rmteacher.metrics import (
    NormalizationStats,
    accuracy,
    accuracy_without_ties,
    as_reward_matrix,
    best_of_n,
    bootstrap_ci,
    bootstrap_indices,
    bootstrap_mean_ci,
    bootstrap_ratio_ci,
    fit_normalization,
    normalize,
    off_policy_accuracy,
    ordered_pairs,
    percentile_interval,
    perfectly_accurate_low_variance,
    reward_variance,
    scale_prompts,
    select_prompts,
    truth_tie_share,
)

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)


def reward_arrays(min_samples: int = 2, elements: st.SearchStrategy[float] = finite) -> st.SearchStrategy[np.ndarray]:
    shapes = st.tuples(st.integers(1, 5), st.integers(min_samples, 6))
    return shapes.flatmap(lambda shape: arrays(np.float64, shape, elements=elements))


# Quarter-integers in [-5, 5]: many ties, and monotone maps keep distinct values distinct in floating point.
on_grid = st.integers(-20, 20).map(lambda i: i / 4)


# ------------------------------------------------------------------------------------------- hand-computed values


def test_reward_variance_by_hand() -> None:
    # Prompt 0: rewards 0, 2 -> mean 1, population variance 1. Prompt 1: 1, 1, 4 -> mean 2, var (1+1+4)/3 = 2.
    rewards = [[0.0, 2.0, 1.0], [1.0, 1.0, 4.0]]
    np.testing.assert_allclose(reward_variance(rewards), [2 / 3, 2.0])
    np.testing.assert_allclose(reward_variance(rewards, unbiased=True), [1.0, 3.0])


def test_reward_variance_exact_under_probs_by_hand() -> None:
    # p = (1/2, 1/4, 1/4), r = (1, -1, 3): mean = 0.5 - 0.25 + 0.75 = 1; var = 0.5*0 + 0.25*4 + 0.25*4 = 2.
    np.testing.assert_allclose(reward_variance([[1.0, -1.0, 3.0]], probs=[[0.5, 0.25, 0.25]]), [2.0])


def test_accuracy_by_hand_with_tie_rule() -> None:
    truth = [[0.0, 1.0, 1.0, 2.0]]
    # Pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3). Proxy orders (0,1),(0,2),(0,3),(1,3) right; (2,3) wrong;
    # (1,2) ties under the truth but not under the proxy: an error. 4 / 6 correct.
    proxy = [[0.0, 1.0, 2.0, 1.5]]
    np.testing.assert_allclose(accuracy(proxy, truth), [4 / 6])
    # Both tie on (1,2): correct. Now (2,3) 1 vs 2 and proxy 1 vs 3: correct -> 6/6.
    np.testing.assert_allclose(accuracy([[0.0, 1.0, 1.0, 3.0]], truth), [1.0])
    # A tie only under the proxy is an error too.
    np.testing.assert_allclose(accuracy([[0.0, 0.0]], [[0.0, 1.0]]), [0.0])


def test_accuracy_with_pairs_and_weights_by_hand() -> None:
    proxy = [[0.0, 1.0, 2.0]]
    truth = [[0.0, 2.0, 1.0]]  # (0,1) right, (0,2) right, (1,2) wrong
    np.testing.assert_allclose(accuracy(proxy, truth, pairs=[[1, 2]]), [0.0])
    np.testing.assert_allclose(accuracy(proxy, truth, pairs=[[0, 1], [1, 2]], weights=[3.0, 1.0]), [0.75])
    per_prompt_pairs = np.array([[[0, 1]], [[1, 2]]])
    np.testing.assert_allclose(accuracy(proxy * 2, truth * 2, pairs=per_prompt_pairs), [1.0, 0.0])


def test_off_policy_accuracy_by_hand() -> None:
    result = off_policy_accuracy([1.0, 0.0, 2.0, 1.0], [0.0, 1.0, 2.0, 1.0], [1.0, 1.0, 5.0, 2.0], [0.0, 0.0, 5.0, 1.0])
    np.testing.assert_array_equal(result, [1.0, 0.0, 1.0, 0.0])  # right, wrong, both tie, proxy-only tie


def test_normalization_by_hand() -> None:
    rewards = np.array([[1.0, 3.0], [5.0, 7.0]])  # mean 4, unbiased var (9+1+1+9)/3 = 20/3
    stats = fit_normalization(rewards, eps=0.0)
    assert stats.mean == pytest.approx(4.0)
    assert stats.std == pytest.approx(np.sqrt(20 / 3))
    assert (stats.num_prompts, stats.num_samples) == (2, 2)
    np.testing.assert_allclose(normalize(rewards, stats).mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(normalize(rewards, stats).std(ddof=1), 1.0)
    # Per-prompt-std variant: mean per-prompt unbiased variance = (2 + 2) / 2 = 2.
    per_prompt = fit_normalization(rewards, method="per_prompt_std", eps=0.0)
    assert per_prompt.std == pytest.approx(np.sqrt(2.0))
    np.testing.assert_allclose(reward_variance(normalize(rewards, per_prompt), unbiased=True).mean(), 1.0)


def test_select_prompts_matches_authors_code() -> None:
    # The authors' code: np.random.RandomState(8122).permutation(len(S))[: int(len(S) * frac)].
    expected = np.sort(np.random.RandomState(8122).permutation(8284)[:4142])
    np.testing.assert_array_equal(select_prompts(8284, 0.5), expected)
    assert len(select_prompts(10, 0.0)) == 0
    assert len(select_prompts(10, 1.0)) == 10


def test_perfectly_accurate_low_variance_construction() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(-1, 1, size=(20, 8))
    scaled, chosen = perfectly_accurate_low_variance(truth, fraction=0.5, factor=1e-3, seed=3)
    assert len(chosen) == 10
    np.testing.assert_array_equal(accuracy(scaled, truth), np.ones(20))
    ratio = reward_variance(scaled) / reward_variance(truth)
    np.testing.assert_allclose(ratio[chosen], 1e-6)
    untouched = np.setdiff1d(np.arange(20), chosen)
    np.testing.assert_allclose(ratio[untouched], 1.0)


def test_authors_code_low_variance_is_rmteachers_times_sigma_ratio_by_hand() -> None:
    # Every prompt's rewards are (+a_p, -a_p): all prompt means are 0, so mu = mu' = 0 and the authors' reward is
    # exactly (sigma / sigma') times rmteacher's on every prompt. With a_p = 1, K = 2, N = 8 rewards, half the
    # prompts scaled by f: sigma^2 = 8 / 7 + eps and sigma'^2 = (4 + 4 f^2) / 7 + eps, so the factor is
    # sqrt((8 + 7 eps) / (4 + 4 f^2 + 7 eps)), about sqrt(2).
    f, eps = 1e-3, 1e-8
    raw = np.array([[1.0, -1.0]] * 4)
    stats_ = fit_normalization(raw)
    ours, chosen = perfectly_accurate_low_variance(normalize(raw, stats_), factor=f)
    theirs, same = perfectly_accurate_low_variance(raw, factor=f, construction="authors_code")
    np.testing.assert_array_equal(chosen, same)
    expected = np.sqrt((8 + 7 * eps) / (4 + 4 * f**2 + 7 * eps))
    np.testing.assert_allclose(theirs, expected * ours, rtol=1e-13)
    assert expected == pytest.approx(np.sqrt(2), rel=1e-5)


def test_authors_code_low_variance_relation_on_a_general_matrix() -> None:
    # authors = (sigma / sigma') * rmteacher + s_x (mu - mu') / sigma', exactly; the per-prompt variances differ by
    # (sigma / sigma')^2 and accuracy is 1 under both.
    rng = np.random.default_rng(2)
    raw = 0.3 + rng.normal(size=(50, 1)) + rng.uniform(0.5, 1.5, (50, 1)) * rng.normal(size=(50, 8))
    stats_ = fit_normalization(raw)
    ours, chosen = perfectly_accurate_low_variance(normalize(raw, stats_), seed=5)
    theirs, _ = perfectly_accurate_low_variance(raw, seed=5, construction="authors_code")
    scaled_stats = fit_normalization(scale_prompts(raw, chosen, 1e-3))
    ratio = stats_.std / scaled_stats.std
    s_x = np.where(np.isin(np.arange(50), chosen), 1e-3, 1.0)[:, None]
    offset = s_x * (stats_.mean - scaled_stats.mean) / scaled_stats.std
    np.testing.assert_allclose(theirs, ratio * ours + offset, rtol=0, atol=1e-12)
    np.testing.assert_allclose(reward_variance(theirs), ratio**2 * reward_variance(ours), rtol=1e-10)
    np.testing.assert_array_equal(accuracy(theirs, raw), np.ones(50))
    # rmteacher's construction does not depend on the raw reward's origin; the authors' does.
    shifted, _ = perfectly_accurate_low_variance(raw + 5.0, seed=5, construction="authors_code")
    assert not np.allclose(reward_variance(shifted), reward_variance(theirs), rtol=1e-3)
    moved = raw + 5.0
    again, _ = perfectly_accurate_low_variance(normalize(moved, fit_normalization(moved)), seed=5)
    np.testing.assert_allclose(again, ours, atol=1e-12)


def test_best_of_n_by_hand() -> None:
    # K = 2 samples with proxy order (a < b) and truths (ta, tb). Drawing N = 2 with replacement from the two:
    # best is b unless both draws are a (prob 1/4): E = 3/4 tb + 1/4 ta.
    np.testing.assert_allclose(best_of_n([[0.0, 1.0]], [[10.0, 2.0]], 2), [0.25 * 10 + 0.75 * 2])
    # N = 1 is the policy's mean.
    np.testing.assert_allclose(best_of_n([[3.0, 1.0, 2.0]], [[1.0, 2.0, 6.0]], 1), [3.0])
    # A constant proxy picks uniformly: the mean of the truth, for any N.
    np.testing.assert_allclose(best_of_n([[0.0, 0.0, 0.0]], [[1.0, 2.0, 6.0]], 5), [3.0])


# ------------------------------------------------------------------------------------------------- properties


@settings(max_examples=50, deadline=None)
@given(reward_arrays(), st.floats(-5, 5), st.floats(0.1, 5))
def test_variance_shift_invariant_and_scales_quadratically(r: np.ndarray, shift: float, c: float) -> None:
    base = reward_variance(r)
    np.testing.assert_allclose(reward_variance(r + shift), base, atol=1e-9 * (1 + abs(shift)) ** 2 * 100)
    np.testing.assert_allclose(reward_variance(c * r), c**2 * base, rtol=1e-9, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(reward_arrays())
def test_unbiased_is_population_times_k_over_k_minus_1(r: np.ndarray) -> None:
    k = r.shape[1]
    np.testing.assert_allclose(reward_variance(r, unbiased=True), reward_variance(r) * k / (k - 1), rtol=1e-12)


@settings(max_examples=50, deadline=None)
@given(reward_arrays(elements=on_grid), reward_arrays(elements=on_grid))
def test_accuracy_invariant_under_strictly_increasing_transforms(proxy: np.ndarray, truth: np.ndarray) -> None:
    truth = np.resize(truth, proxy.shape)
    base = accuracy(proxy, truth)
    np.testing.assert_array_equal(accuracy(np.tanh(proxy / 3) * 2 + 7, truth), base)
    np.testing.assert_array_equal(accuracy(proxy, np.exp(truth / 4)), base)


@settings(max_examples=50, deadline=None)
@given(reward_arrays(elements=on_grid))
def test_reward_model_ordered_like_truth_has_accuracy_one(truth: np.ndarray) -> None:
    np.testing.assert_array_equal(accuracy(3 * truth**3 + 1, truth), np.ones(truth.shape[0]))


def test_exact_variance_equals_large_sample_estimate() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(5), size=3)  # [3 prompts, 5 outputs]
    values = rng.uniform(-1, 1, size=(3, 5))
    exact = reward_variance(values, probs=probs)
    samples = np.stack([values[p, rng.choice(5, size=200_000, p=probs[p])] for p in range(3)])
    np.testing.assert_allclose(reward_variance(samples), exact, rtol=0.02)


def test_accuracy_matches_plain_loop() -> None:
    rng = np.random.default_rng(2)
    proxy = rng.integers(0, 3, size=(4, 6)).astype(float)  # many ties on purpose
    truth = rng.integers(0, 3, size=(4, 6)).astype(float)
    expected = [
        np.mean(
            [
                np.sign(proxy[p, i] - proxy[p, j]) == np.sign(truth[p, i] - truth[p, j])
                for i, j in itertools.combinations(range(6), 2)
            ]
        )
        for p in range(4)
    ]
    np.testing.assert_allclose(accuracy(proxy, truth), expected)


def test_best_of_n_matches_monte_carlo_and_proposition_1() -> None:
    rng = np.random.default_rng(3)
    truth = rng.uniform(-1, 1, size=(2, 6))
    proxy = np.round(truth + rng.normal(scale=0.5, size=truth.shape), 1)
    n = 4
    draws = rng.integers(0, 6, size=(200_000, n))
    for p in range(2):
        chosen = draws[np.arange(len(draws)), np.argmax(proxy[p][draws], axis=1)]
        # argmax takes the first of tied draws, which is uniform within a tie group by symmetry.
        assert best_of_n(proxy[p : p + 1], truth[p : p + 1], n)[0] == pytest.approx(truth[p][chosen].mean(), abs=0.01)
    # Proposition 1: ordering like the truth is optimal; E[max_i r_G(y_i)] is the value.
    perfect = best_of_n(truth, truth, n)
    for p in range(2):
        assert perfect[p] == pytest.approx(truth[p][draws].max(axis=1).mean(), abs=0.01)
    assert np.all(perfect >= best_of_n(proxy, truth, n) - 1e-12)


def test_torch_tensors_accepted() -> None:
    rewards = torch.tensor([[0.0, 2.0], [1.0, 3.0]], requires_grad=True)
    np.testing.assert_allclose(reward_variance(rewards), [1.0, 1.0])
    np.testing.assert_allclose(accuracy(rewards, rewards.detach() * 2), [1.0, 1.0])


def test_bootstrap_ci_brackets_the_estimate_and_is_seeded() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(size=200)
    ci = bootstrap_ci(np.mean, values, num_resamples=500, seed=1)
    assert ci.low < ci.estimate < ci.high
    assert ci.high - ci.low == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.25)
    assert bootstrap_ci(np.mean, values, num_resamples=500, seed=1) == ci
    # Two arrays resampled with the same prompt indices.
    proxy = rng.normal(size=(50, 4))
    paired = bootstrap_ci(lambda p, t: accuracy(p, t).mean(), proxy, proxy * 2, num_resamples=100)
    assert (paired.low, paired.estimate, paired.high) == (1.0, 1.0, 1.0)


def test_bootstrap_indices_are_scipys_resamples() -> None:
    # scipy.stats.bootstrap draws rng.integers(0, n, (n_resamples, n)) in one batch; record what it resamples.
    seen: list[np.ndarray] = []

    def record(x: np.ndarray, axis: int = -1) -> np.ndarray:
        seen.append(np.array(x))
        return np.mean(x, axis=axis)

    stats.bootstrap((np.arange(7.0),), record, vectorized=True, n_resamples=50, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(seen[0], bootstrap_indices(7, 50, seed=3))


def test_percentile_interval_by_hand() -> None:
    # Replicates 0, 1, ..., 100: the 5% and 95% quantiles (linear interpolation) are 5 and 95.
    ci = percentile_interval(50.0, np.arange(101.0), confidence=0.9)
    assert (ci.estimate, ci.low, ci.high) == pytest.approx((50.0, 5.0, 95.0))  # (1 - 0.9) / 2 is 0.0499...
    # basic: 2 * estimate minus the swapped quantiles; with estimate 40: 80 - 95 = -15 and 80 - 5 = 75.
    basic = percentile_interval(40.0, np.arange(101.0), confidence=0.9, method="basic")
    assert (basic.low, basic.high) == pytest.approx((-15.0, 75.0))


@pytest.mark.parametrize("method", ["percentile", "basic"])
def test_vectorized_mean_bootstrap_equals_scipys(method: str) -> None:
    # The vectorized path against the per-resample loop through scipy.stats.bootstrap (a lambda is not np.mean, so
    # it takes the scipy path): the same draws and quantile rule, so the same interval to rounding.
    values = np.random.default_rng(5).gamma(2.0, size=300)
    for seed in (0, 7):
        reference = bootstrap_ci(lambda v: float(np.mean(v)), values, seed=seed, method=method)  # type: ignore[arg-type]
        fast = bootstrap_ci(np.mean, values, seed=seed, method=method)  # type: ignore[arg-type]
        for a, b in ((reference.low, fast.low), (reference.high, fast.high), (reference.estimate, fast.estimate)):
            assert a == pytest.approx(b, abs=1e-12, rel=0)
        assert bootstrap_mean_ci(values, seed=seed, method=method) == fast  # type: ignore[arg-type]


def test_bootstrap_mean_ci_of_one_prompt_is_the_value() -> None:
    assert bootstrap_mean_ci([0.25]) == bootstrap_ci(np.mean, [0.25]) == bootstrap_ci(lambda v: v.mean(), [0.25])
    assert bootstrap_mean_ci([0.25]).low == 0.25


# ---------------------------------------------------------------------------------------------------- errors


def test_too_few_samples_error() -> None:
    with pytest.raises(ValueError, match=r"rewards has 1 sample\(s\) per prompt .* at least 2"):
        reward_variance([[1.0], [2.0]])
    with pytest.raises(ValueError, match="at least 2 samples per prompt"):
        accuracy([[1.0]], [[1.0]])


def test_non_finite_error_names_prompt_and_sample() -> None:
    with pytest.raises(ValueError, match="non-finite value nan at prompt 1, sample 2"):
        reward_variance([[0.0, 1.0, 2.0], [0.0, 1.0, np.nan]])
    with pytest.raises(ValueError, match="truth has a non-finite value inf at prompt 0, sample 0"):
        accuracy([[0.0, 1.0]], [[np.inf, 1.0]])


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"ragged input"):
        reward_variance([[0.0, 1.0], [1.0]])
    with pytest.raises(ValueError, match=r"shape \[num_prompts, num_samples\]; got shape \(3,\)"):
        reward_variance([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match=r"proxy has shape \(1, 2\) but truth has shape \(1, 3\)"):
        accuracy([[0.0, 1.0]], [[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match="is empty"):
        reward_variance(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"rewards has shape \(1, 2\) but probs has shape \(1, 3\)"):
        reward_variance([[0.0, 1.0]], probs=[[0.5, 0.25, 0.25]])
    with pytest.raises(ValueError, match="same shape"):
        off_policy_accuracy([1.0], [0.0, 1.0], [1.0], [0.0])


def test_probs_errors() -> None:
    with pytest.raises(ValueError, match=r"prompt 0 sums to 0\.9"):
        reward_variance([[0.0, 1.0]], probs=[[0.5, 0.4]])
    with pytest.raises(ValueError, match=r"non-negative; got -0\.5 at prompt 0, output 1"):
        reward_variance([[0.0, 1.0]], probs=[[1.5, -0.5]])
    with pytest.raises(ValueError, match="unbiased=True applies to sampled rewards only"):
        reward_variance([[0.0, 1.0]], probs=[[0.5, 0.5]], unbiased=True)


def test_pairs_and_weights_errors() -> None:
    with pytest.raises(ValueError, match=r"pairs index samples in \[0, 2\); got values from 0 to 5"):
        accuracy([[0.0, 1.0]], [[0.0, 1.0]], pairs=[[0, 5]])
    with pytest.raises(ValueError, match="pairs must have shape"):
        accuracy([[0.0, 1.0]], [[0.0, 1.0]], pairs=[0, 1])
    with pytest.raises(ValueError, match="pairs is empty"):
        accuracy([[0.0, 1.0]], [[0.0, 1.0]], pairs=np.zeros((0, 2), dtype=int))
    with pytest.raises(ValueError, match="weights must be finite and non-negative"):
        accuracy([[0.0, 1.0]], [[0.0, 1.0]], pairs=[[0, 1]], weights=[-1.0])
    with pytest.raises(ValueError, match="weights of prompt 0 sum to 0"):
        accuracy([[0.0, 1.0]], [[0.0, 1.0]], pairs=[[0, 1]], weights=[0.0])


def test_scale_and_normalization_errors() -> None:
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]; got 1.5"):
        select_prompts(10, 1.5)
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]; got -0.1"):
        perfectly_accurate_low_variance(np.ones((4, 2)), fraction=-0.1)
    with pytest.raises(ValueError, match="factor must be > 0"):
        perfectly_accurate_low_variance(np.ones((4, 2)), factor=0.0)
    with pytest.raises(ValueError, match="construction must be 'rmteacher' or 'authors_code'; got 'paper'"):
        perfectly_accurate_low_variance(np.ones((4, 2)), construction="paper")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"prompt_indices must lie in \[0, 2\)"):
        scale_prompts(np.ones((2, 2)), [3], 0.5)
    with pytest.raises(ValueError, match="method must be 'global' or 'per_prompt_std'; got 'zscore'"):
        fit_normalization([[0.0, 1.0]], method="zscore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"stats\.std must be a positive finite number; got 0\.0"):
        normalize([[0.0, 1.0]], NormalizationStats(mean=0.0, std=0.0))
    with pytest.raises(ValueError, match="n must be an integer >= 1; got 0"):
        best_of_n([[0.0, 1.0]], [[0.0, 1.0]], 0)


def test_bootstrap_errors() -> None:
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\); got 1.5"):
        bootstrap_ci(np.mean, np.ones(3), confidence=1.5)
    with pytest.raises(ValueError, match="array 0 has 3, array 1 has shape"):
        bootstrap_ci(lambda a, b: 0.0, np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="at least one array"):
        bootstrap_ci(np.mean)
    with pytest.raises(ValueError, match="num_resamples must be >= 1; got 0"):
        bootstrap_ci(np.mean, np.ones(3), num_resamples=0)
    with pytest.raises(ValueError, match=r"per_prompt must have shape \[num_prompts\].*got \(2, 2\)"):
        bootstrap_mean_ci(np.ones((2, 2)))
    with pytest.raises(ValueError, match="num_prompts must be an integer >= 1; got 0"):
        bootstrap_indices(0, 10)
    with pytest.raises(ValueError, match="num_resamples must be an integer >= 1; got 0"):
        bootstrap_indices(3, 0)
    with pytest.raises(ValueError, match=r"replicates must have shape \[num_resamples\]"):
        percentile_interval(0.0, [])
    with pytest.raises(ValueError, match="method must be 'percentile' or 'basic'; got 'BCa'"):
        percentile_interval(0.0, [1.0, 2.0], method="BCa")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\); got 0"):
        percentile_interval(0.0, [1.0, 2.0], confidence=0)


def test_as_reward_matrix_returns_float64() -> None:
    assert as_reward_matrix([[1, 2]]).dtype == np.float64


# ------------------------------------------------------------------------- accuracy with ground-truth ties left out

# Three prompts, three samples, pairs (0,1), (0,2), (1,2). Prompt 0: the ground truth ties pair (1,2) and the
# reward does not (an error of Definition 1), the other two are ordered alike. Prompt 1: the ground truth ties every
# pair; the reward ties (0,1) only. Prompt 2: every pair ordered by the ground truth, none alike (the reward ties
# (0,1), which is an error once the ground truth orders it).
TIE_PROXY = [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
TIE_TRUTH = [[0.0, 1.0, 1.0], [5.0, 5.0, 5.0], [1.0, 2.0, 3.0]]


def test_accuracy_without_ties_by_hand() -> None:
    correct, ordered = ordered_pairs(TIE_PROXY, TIE_TRUTH)
    np.testing.assert_array_equal(correct, [2, 0, 0])
    np.testing.assert_array_equal(ordered, [2, 0, 3])
    assert accuracy_without_ties(TIE_PROXY, TIE_TRUTH) == pytest.approx(2 / 5)
    np.testing.assert_allclose(truth_tie_share(TIE_TRUTH), [1 / 3, 1.0, 0.0])
    # The paper's accuracy on the same case: ties count, so prompt 1 scores 1/3 although nothing there is ordered.
    np.testing.assert_allclose(accuracy(TIE_PROXY, TIE_TRUTH), [2 / 3, 1 / 3, 0.0])
    # The ground truth against itself: every ordered pair right.
    assert accuracy_without_ties(TIE_TRUTH, TIE_TRUTH) == 1.0
    # Explicit pairs: only (1, 2) of each prompt.
    correct, ordered = ordered_pairs(TIE_PROXY, TIE_TRUTH, pairs=[[1, 2]])
    np.testing.assert_array_equal(correct, [0, 0, 0])
    np.testing.assert_array_equal(ordered, [0, 0, 1])


def test_accuracy_without_ties_is_nan_when_the_ground_truth_ties_everything() -> None:
    assert np.isnan(accuracy_without_ties([[1.0, 2.0]], [[3.0, 3.0]]))
    assert bootstrap_ratio_ci([0.0, 0.0], [0.0, 0.0], num_resamples=200) is None


def _ordered_pairs_loop(proxy: np.ndarray, truth: np.ndarray) -> tuple[list[int], list[int]]:
    """Plain reference: every unordered pair of every prompt, one at a time."""
    correct, ordered = [], []
    for p_row, t_row in zip(proxy, truth, strict=True):
        c = o = 0
        for i, j in itertools.combinations(range(len(p_row)), 2):
            if t_row[i] == t_row[j]:
                continue
            o += 1
            c += (p_row[i] - p_row[j] > 0) == (t_row[i] - t_row[j] > 0) and p_row[i] != p_row[j]
        correct.append(c)
        ordered.append(o)
    return correct, ordered


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), samples=st.integers(2, 6))
def test_ordered_pairs_agrees_with_a_plain_loop(seed: int, samples: int) -> None:
    rng = np.random.default_rng(seed)
    proxy = rng.integers(0, 3, size=(5, samples)).astype(float)  # few levels: many ties on both sides
    truth = rng.integers(0, 2, size=(5, samples)).astype(float)  # a 0/1 verifier
    correct, ordered = ordered_pairs(proxy, truth)
    expected_correct, expected_ordered = _ordered_pairs_loop(proxy, truth)
    np.testing.assert_array_equal(correct, expected_correct)
    np.testing.assert_array_equal(ordered, expected_ordered)
    pairs = samples * (samples - 1) / 2
    np.testing.assert_allclose(truth_tie_share(truth), 1 - np.array(expected_ordered) / pairs)


def test_bootstrap_ratio_ci_resamples_like_a_plain_loop() -> None:
    correct, ordered = np.array([2.0, 0.0, 0.0, 3.0, 1.0]), np.array([2.0, 0.0, 3.0, 3.0, 2.0])
    interval = bootstrap_ratio_ci(correct, ordered, num_resamples=400, seed=3)
    assert interval is not None
    assert interval.estimate == pytest.approx(6 / 10)
    replicates = []
    for row in bootstrap_indices(5, 400, seed=3):
        top = sum(correct[i] for i in row)
        bottom = sum(ordered[i] for i in row)
        if bottom > 0:
            replicates.append(top / bottom)
    low, high = np.quantile(replicates, [0.025, 0.975])
    assert (interval.low, interval.high) == pytest.approx((low, high))
    single = bootstrap_ratio_ci([1.0], [2.0], num_resamples=200)
    assert single is not None and (single.low, single.estimate, single.high) == (0.5, 0.5, 0.5)


def test_bootstrap_ratio_ci_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"numerator and denominator must have the same shape \[num_prompts\]"):
        bootstrap_ratio_ci([1.0, 2.0], [1.0])
