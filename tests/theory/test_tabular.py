"""Tabular simulator: exact gradient, closed forms, integrator accuracy, batching, sampled vs exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from rmteacher.metrics import best_of_n
from rmteacher.theory import (
    best_of_n_reward,
    exact_gradient_ascent,
    flow_curves,
    flow_time_to_gamma,
    rlhf_objective,
    rloo_ascent,
    rloo_gradient,
    tabular_gradient,
    time_to_gamma,
    time_to_gamma_batch,
)


def random_instance(seed: int, num_outputs: int = 8, prompts: int | None = None) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    shape = (num_outputs,) if prompts is None else (prompts, num_outputs)
    pi0 = softmax(1.5 * rng.normal(size=shape), axis=-1)
    return pi0, rng.uniform(-1, 1, shape), rng.uniform(-1, 1, shape)


def rk4_time_to_gamma(pi0: np.ndarray, train: np.ndarray, evaluation: np.ndarray, gamma: float, h: float) -> float:
    """A plain fixed-step RK4 reference with linear interpolation of the crossing."""
    theta, ref = np.log(pi0)[None], np.log(pi0)[None]
    target = pi0 @ evaluation + gamma

    def f(th: np.ndarray) -> np.ndarray:
        return tabular_gradient(th, train[None], ref)

    t, gap = 0.0, -gamma
    while True:
        k1 = f(theta)
        k2 = f(theta + h / 2 * k1)
        k3 = f(theta + h / 2 * k2)
        k4 = f(theta + h * k3)
        theta = theta + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        new_gap = float(softmax(theta[0]) @ evaluation) - target
        if new_gap >= 0:
            return t + h * (-gap) / (new_gap - gap)
        t, gap = t + h, new_gap


@pytest.mark.parametrize("kl_coef", [0.0, 0.3])
def test_gradient_matches_finite_differences(kl_coef: float) -> None:
    pi0, train, _ = random_instance(0, prompts=3)
    rng = np.random.default_rng(1)
    ref = np.log(pi0)
    logits = ref + 0.5 * rng.normal(size=ref.shape)  # away from the reference, so the KL gradient is not zero
    grad = tabular_gradient(logits, train, ref, kl_coef=kl_coef, num_prompts=5)
    eps = 1e-6
    numeric = np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
        step = np.zeros_like(logits)
        step[index] = eps
        plus = rlhf_objective(logits + step, train, ref, kl_coef=kl_coef, num_prompts=5)
        minus = rlhf_objective(logits - step, train, ref, kl_coef=kl_coef, num_prompts=5)
        numeric[index] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, atol=1e-9)


def test_gradient_by_hand_two_outputs() -> None:
    # pi = (1/2, 1/2), r = (1, -1): grad = pi * (r - V) = (1/2, -1/2)
    grad = tabular_gradient(np.zeros((1, 2)), np.array([[1.0, -1.0]]), np.log(np.full((1, 2), 0.5)))
    np.testing.assert_allclose(grad, [[0.5, -0.5]])


@pytest.mark.parametrize("num_prompts", [1, 3])
def test_two_output_closed_form(num_prompts: int) -> None:
    # With Y = 2 and lambda = 0, d = theta_1 - theta_2 obeys d' = 2 Delta sigma(d)(1 - sigma(d)) / |S|, which
    # integrates to 2 d + 2 sinh(d) = 2 Delta t / |S| + const.
    r = np.array([0.8, -0.4])
    delta, gamma = r[0] - r[1], 0.5
    p0 = 0.2
    p_star = p0 + gamma / delta
    d0, d_star = math.log(p0 / (1 - p0)), math.log(p_star / (1 - p_star))
    expected = num_prompts * ((2 * d_star + 2 * math.sinh(d_star)) - (2 * d0 + 2 * math.sinh(d0))) / (2 * delta)
    got = time_to_gamma([p0, 1 - p0], r, r, gamma, num_prompts=num_prompts)
    assert got == pytest.approx(expected, rel=1e-8)


def test_time_to_gamma_matches_fine_rk4() -> None:
    for seed in range(3):
        pi0, train, evaluation = random_instance(seed)
        evaluation = train  # reachable: the flow maximizes it
        gamma = 0.3
        exact = time_to_gamma(pi0, train, evaluation, gamma)
        reference = rk4_time_to_gamma(pi0, train, evaluation, gamma, h=exact / 4000)
        assert abs(exact - reference) / reference < 1e-4


def test_time_is_linear_in_num_prompts() -> None:
    pi0, train, _ = random_instance(3)
    one = time_to_gamma(pi0, train, train, 0.2)
    for size in (2, 7, 50):
        assert time_to_gamma(pi0, train, train, 0.2, num_prompts=size) == pytest.approx(size * one, rel=1e-7)


def test_train_reward_increases_monotonically_under_gradient_flow() -> None:
    pi0, train, evaluation = random_instance(4, prompts=3)
    times = np.linspace(0, 30, 300)
    train_curve, _ = flow_curves(pi0, train, evaluation, times)
    assert np.all(np.diff(train_curve) >= -1e-12)
    assert train_curve[-1] > train_curve[0]


def test_unreachable_increase_is_infinite() -> None:
    pi0 = np.array([0.5, 0.3, 0.2])
    assert time_to_gamma(pi0, [0.1, 0.1, 0.1], [1.0, -1.0, 0.0], 0.1) == math.inf  # zero variance: never moves
    assert time_to_gamma(pi0, [1.0, 0.0, -1.0], [1.0, 0.0, -1.0], 1.9, t_max=100.0) == math.inf  # max is 1 < 0.1+1.9
    assert time_to_gamma(pi0, [1.0, 0.0, -1.0], [-1.0, 0.0, 1.0], 0.1) == math.inf  # trains against eval


def test_kl_flow_stops_at_its_stationary_point() -> None:
    pi0 = np.array([0.5, 0.3, 0.2])
    r = np.array([0.2, 0.0, -0.2])
    # with lambda = 1 the optimum pi ∝ pi0 e^{r} raises E[r] by far less than 0.3
    assert time_to_gamma(pi0, r, r, 0.3, kl_coef=1.0) == math.inf


def test_batch_solver_matches_solve_ivp() -> None:
    rng = np.random.default_rng(5)
    pi0 = softmax(1.5 * rng.normal(size=(40, 2, 12)), axis=-1)
    truth = rng.uniform(-1, 1, pi0.shape)
    train = truth * 10 ** rng.uniform(-1.5, 0, (40, 1, 1))
    for kl_coef in (0.0, 0.05):
        batch = time_to_gamma_batch(pi0, train, truth, 0.1, kl_coef=kl_coef, num_prompts=4, t_max=1e4)
        single = np.array(
            [
                flow_time_to_gamma(p, r, e, 0.1, kl_coef=kl_coef, num_prompts=4, t_max=1e4)
                for p, r, e in zip(pi0, train, truth, strict=True)
            ]
        )
        assert np.array_equal(np.isfinite(batch), np.isfinite(single))
        finite = np.isfinite(single)
        assert finite.sum() > 20
        np.testing.assert_allclose(batch[finite], single[finite], rtol=1e-6)


def test_batch_solver_is_deterministic_and_accepts_per_instance_gamma() -> None:
    pi0, train, _ = random_instance(6, prompts=5)  # five instances of one prompt each
    gammas = np.array([0.05, 0.1, 0.2, 0.3, 0.4])
    first = time_to_gamma_batch(pi0, train, train, gammas)
    np.testing.assert_array_equal(first, time_to_gamma_batch(pi0, train, train, gammas))
    for b in range(5):
        assert first[b] == pytest.approx(time_to_gamma(pi0[b], train[b], train[b], gammas[b]), rel=1e-6, abs=0)


def test_exact_steps_approach_the_flow_for_small_steps() -> None:
    pi0, train, evaluation = random_instance(7, prompts=2)
    train_steps, eval_steps = exact_gradient_ascent(pi0, train, evaluation, learning_rate=0.01, num_steps=500)
    train_flow, eval_flow = flow_curves(pi0, train, evaluation, np.arange(501) * 0.01)
    np.testing.assert_allclose(train_steps, train_flow, atol=2e-3)
    np.testing.assert_allclose(eval_steps, eval_flow, atol=2e-3)


@pytest.mark.parametrize("kl_coef", [0.0, 0.2])
def test_rloo_gradient_is_unbiased(kl_coef: float) -> None:
    pi0, train, _ = random_instance(8, num_outputs=5, prompts=2)
    ref = np.log(pi0)
    logits = ref + 0.3 * np.random.default_rng(0).normal(size=ref.shape)
    runs = np.broadcast_to(logits, (40_000, *logits.shape))
    estimates = rloo_gradient(runs, train, ref, np.random.default_rng(1), k=3, kl_coef=kl_coef)
    exact = tabular_gradient(logits, train, ref, kl_coef=kl_coef)
    np.testing.assert_allclose(estimates.mean(axis=0), exact, atol=6 * estimates.std(axis=0).max() / 200)


def test_rloo_ascent_tracks_exact_steps_and_is_seeded() -> None:
    pi0, train, evaluation = random_instance(9, prompts=4)
    train_runs, _ = rloo_ascent(pi0, train, evaluation, learning_rate=0.5, num_steps=40, num_runs=64, seed=3)
    again, _ = rloo_ascent(pi0, train, evaluation, learning_rate=0.5, num_steps=40, num_runs=64, seed=3)
    np.testing.assert_array_equal(train_runs, again)
    exact, _ = exact_gradient_ascent(pi0, train, evaluation, learning_rate=0.5, num_steps=40)
    assert abs(train_runs.mean(axis=0)[-1] - exact[-1]) < 4 * train_runs.std(axis=0)[-1] / 8 + 1e-3


def test_best_of_n_reward_matches_metrics_for_uniform_policy() -> None:
    rng = np.random.default_rng(10)
    proxy = np.round(rng.uniform(-1, 1, 9), 1)  # with ties
    truth = rng.uniform(-1, 1, 9)
    for n in (1, 3, 16):
        expected = best_of_n(proxy[None], truth[None], n)[0]
        assert best_of_n_reward(np.full(9, 1 / 9), proxy, truth, n) == pytest.approx(expected, rel=1e-12)


def test_best_of_n_proposition_1() -> None:
    pi0, _, truth = random_instance(11)
    order_preserving = 0.01 * np.argsort(np.argsort(truth)) / len(truth)  # same order as r_G, tiny variance
    for n in (1, 4, 32):
        optimum = best_of_n_reward(pi0, truth, truth, n)
        assert best_of_n_reward(pi0, order_preserving, truth, n) == pytest.approx(optimum)
        for seed in range(5):
            other = np.random.default_rng(seed).uniform(-1, 1, len(truth))
            assert best_of_n_reward(pi0, other, truth, n) <= optimum + 1e-12
    # E[max of N draws] by enumeration for N = 2
    pairs = pi0[:, None] * pi0[None, :]
    assert best_of_n_reward(pi0, truth, truth, 2) == pytest.approx(
        float(np.sum(pairs * np.maximum.outer(truth, truth)))
    )


def test_objective_is_mean_over_prompts_at_reference() -> None:
    pi0, train, _ = random_instance(12, prompts=3)
    ref = np.log(pi0)
    value = rlhf_objective(ref, train, ref, kl_coef=0.7)
    assert float(value) == pytest.approx(float(np.mean(np.sum(pi0 * train, axis=-1))))
    assert np.allclose(log_softmax(ref, axis=-1), ref)
