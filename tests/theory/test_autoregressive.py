"""Exact autoregressive policy: gradient and Jacobian against finite differences, Theorem 4 on random instances."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmteacher.theory import (
    ar_gradient,
    ar_gradient_flow,
    ar_log_probs,
    ar_objective,
    init_params,
    jacobian_norms,
    make_policy,
    theorem4_lower_bound,
)
from rmteacher.theory.autoregressive import _forward


def test_log_probs_enumerate_a_distribution() -> None:
    policy = make_policy(3, 3, num_prompts=2, hidden=4)
    log_probs = ar_log_probs(policy, init_params(policy, np.random.default_rng(0)))
    assert log_probs.shape == (2, 27)
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0)


def test_single_token_policy_is_a_softmax() -> None:
    policy = make_policy(4, 1, hidden=3)
    params = init_params(policy, np.random.default_rng(1))
    logits, _ = _forward(policy, params)
    np.testing.assert_allclose(ar_log_probs(policy, params)[0], logits[0, 0] - np.log(np.exp(logits[0, 0]).sum()))


@pytest.mark.parametrize("kl_coef", [0.0, 0.4])
def test_gradient_matches_finite_differences(kl_coef: float) -> None:
    policy = make_policy(3, 3, num_prompts=2, hidden=5)
    rng = np.random.default_rng(2)
    params0 = init_params(policy, rng)
    reward = rng.uniform(-1, 1, (2, 27))
    ref = ar_log_probs(policy, params0)
    params = params0 + 0.3 * rng.normal(size=params0.shape)  # away from the reference: the KL term has a gradient
    grad = ar_gradient(policy, params, reward, ref, kl_coef=kl_coef)
    eps = 1e-6
    numeric = np.array(
        [
            (
                ar_objective(policy, params + eps * e, reward, ref, kl_coef=kl_coef)
                - ar_objective(policy, params - eps * e, reward, ref, kl_coef=kl_coef)
            )
            / (2 * eps)
            for e in np.eye(len(params))
        ]
    )
    np.testing.assert_allclose(grad, numeric, atol=1e-8)


def test_jacobian_norm_matches_finite_differences() -> None:
    policy = make_policy(3, 2, num_prompts=2, hidden=4)
    params = init_params(policy, np.random.default_rng(3))
    norms = jacobian_norms(policy, params)
    eps = 1e-6
    for prompt, node in ((0, 0), (1, 3)):
        columns = [
            (_forward(policy, params + eps * e)[0][prompt, node] - _forward(policy, params - eps * e)[0][prompt, node])
            / (2 * eps)
            for e in np.eye(len(params))
        ]
        assert norms[prompt, node] == pytest.approx(np.linalg.norm(np.stack(columns, axis=1), 2), rel=1e-6)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    prompts=st.integers(1, 2),
    scale=st.floats(0.05, 1.0),
    gamma=st.floats(0.02, 0.5),
    kl_coef=st.sampled_from([0.0, 0.1]),
)
def test_theorem4_bound_holds_on_random_instances(
    seed: int, prompts: int, scale: float, gamma: float, kl_coef: float
) -> None:
    policy = make_policy(2, 3, num_prompts=prompts, hidden=4)
    rng = np.random.default_rng(seed)
    params0 = init_params(policy, rng)
    truth = rng.uniform(-1, 1, (prompts, 8))
    flow = ar_gradient_flow(policy, params0, scale * truth, truth, gamma, kl_coef=kl_coef, t_max=1e3)
    bound = theorem4_lower_bound(
        gamma, mean_variance=flow.mean_variance, length=3, jacobian_norm=flow.jacobian_sup, kl_coef=kl_coef
    )
    assert flow.t_gamma >= bound


def test_flow_reaches_gamma_and_scales_with_the_reward() -> None:
    policy = make_policy(2, 3, hidden=4)
    rng = np.random.default_rng(4)
    params0 = init_params(policy, rng)
    truth = rng.uniform(-1, 1, (1, 8))
    full = ar_gradient_flow(policy, params0, truth, truth, 0.1)
    half = ar_gradient_flow(policy, params0, 0.5 * truth, truth, 0.1)
    assert math.isfinite(full.t_gamma)
    assert half.t_gamma == pytest.approx(2 * full.t_gamma, rel=1e-5)  # lambda = 0: time rescales by 1/s
    assert full.eval_curve[-1] == pytest.approx(full.eval_curve[0] + 0.1, abs=1e-6)


def test_bad_architecture_and_rewards_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"vocab_size must be an integer >= 2; got 1"):
        make_policy(1, 3)
    with pytest.raises(ValueError, match=r"at most 200000 can be enumerated"):
        make_policy(10, 6)
    policy = make_policy(2, 2)
    params = init_params(policy, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"train_reward has shape \(1, 3\) but the policy's"):
        ar_gradient_flow(policy, params, np.zeros((1, 3)), np.zeros((1, 4)), 0.1)
    with pytest.raises(ValueError, match=r"params must have shape"):
        ar_log_probs(policy, params[:-1])
