"""Exact policy gradient for tabular policies (Eq. 3): objective, gradient, gradient flow, discrete and sampled steps.

A tabular policy has one logit per output and prompt: ``pi_theta(y|x) = softmax(theta[x, :])_y``. Shapes below use
``logits: [..., num_prompts, num_outputs]``; leading axes are a batch of independent instances. ``num_prompts`` in the
signatures is ``|S|``, the size of the policy-gradient prompt set, which may exceed the number of prompts simulated:
prompts decouple (Lemma 7), so simulating one prompt of ``|S|`` only rescales its time by ``|S|``.

Reference: Razin et al. (2025), Eq. 1 (KL-regularized objective), Eq. 3 (tabular policy), Eq. 4 (gradient flow),
Lemma 7 (exact gradient), Proposition 1 (Best-of-N).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import log_softmax, softmax

from rmteacher.theory.validation import (
    check_distribution,
    check_gamma,
    check_kl_coef,
    check_num_prompts,
    check_positive,
    check_rewards,
)

__all__ = [
    "KLCeiling",
    "best_of_n_reward",
    "exact_gradient_ascent",
    "flow_curves",
    "flow_time_to_gamma",
    "rlhf_objective",
    "rloo_ascent",
    "rloo_gradient",
    "tabular_gradient",
    "time_to_gamma",
]

# A policy whose training reward has (numerically) zero variance under pi0 gets zero gradient and never moves.
ZERO_GRADIENT = 1e-15


class KLCeiling:
    """Proves, for ``lambda > 0``, that gradient flow will never raise ``E[r_eval]`` to a target.

    Eq. 1 equals ``-lambda KL(pi || pi*) + const`` with ``pi* ∝ pi_ref exp(r_RM / lambda)``, so under gradient flow
    ``KL(pi_t(.|x) || pi*(.|x))`` never increases (prompts decouple). By Pinsker, every later policy has
    ``E_pi[r_eval] <= E_{pi*}[r_eval] + sqrt(2 KL) (max r_eval - min r_eval) / 2``. Once the mean over prompts of
    that ceiling is below the target, ``t_gamma = inf`` and the simulation can stop.

    Shapes: ``[..., P, Y]`` as the rewards; :meth:`margin` takes logits of that shape and returns ``[...]``.
    """

    def __init__(self, ref_log_probs: np.ndarray, train: np.ndarray, evaluation: np.ndarray, kl_coef: float) -> None:
        assert kl_coef > 0
        self.log_pi_star = log_softmax(ref_log_probs + train / kl_coef, axis=-1)
        self.value_star = np.sum(np.exp(self.log_pi_star) * evaluation, axis=-1)  # [..., P]
        self.half_range = (evaluation.max(axis=-1) - evaluation.min(axis=-1)) / 2.0  # [..., P]

    def margin(self, logits: np.ndarray, target: np.ndarray | float, idx: np.ndarray | None = None) -> np.ndarray:
        """``target - ceiling``: positive once the target is provably out of reach (``idx``: a batch subset)."""
        star, value, half = self.log_pi_star, self.value_star, self.half_range
        if idx is not None:
            star, value, half = star[idx], value[idx], half[idx]
        log_pi = log_softmax(logits, axis=-1)
        kl = np.maximum(np.sum(np.exp(log_pi) * (log_pi - star), axis=-1), 0.0)
        ceiling = np.mean(value + np.sqrt(2.0 * kl) * half, axis=-1)
        return np.asarray(target - ceiling - 1e-12)


def _prompts(logits: np.ndarray, num_prompts: int | None) -> int:
    return logits.shape[-2] if num_prompts is None else num_prompts


def rlhf_objective(
    logits: np.ndarray,
    reward: np.ndarray,
    ref_logits: np.ndarray,
    *,
    kl_coef: float = 0.0,
    num_prompts: int | None = None,
) -> np.ndarray:
    """The RLHF objective of Eq. 1 restricted to the simulated prompts.

    ``phi(theta) = (1/|S|) sum_x (E_{pi(.|x)}[r(x, .)] - lambda KL(pi(.|x) || pi_ref(.|x)))``.

    Args:
        logits: ``[..., P, Y]`` tabular logits ``theta``.
        reward: ``[..., P, Y]`` training reward ``r_RM``.
        ref_logits: ``[..., P, Y]`` logits of the reference (initial) policy.
        kl_coef: ``lambda >= 0``.
        num_prompts: ``|S|``; defaults to ``P``.

    Returns:
        ``[...]`` objective values.
    """
    log_pi = log_softmax(logits, axis=-1)
    pi = np.exp(log_pi)
    per_prompt = np.sum(pi * (reward - kl_coef * (log_pi - log_softmax(ref_logits, axis=-1))), axis=-1)
    return np.asarray(per_prompt.sum(axis=-1) / _prompts(logits, num_prompts))


def tabular_gradient(
    logits: np.ndarray,
    reward: np.ndarray,
    ref_log_probs: np.ndarray,
    *,
    kl_coef: float = 0.0,
    num_prompts: int | None = None,
) -> np.ndarray:
    """Exact gradient of Eq. 1 for a tabular policy (Lemma 7).

    ``grad_{theta[x]} phi = (1/|S|) pi(.|x) * (r_KL(x, .) - E_pi[r_KL] 1)`` with
    ``r_KL(x, y) = r(x, y) - lambda ln(pi(y|x) / pi_ref(y|x))``; a prompt's logits get no gradient from the others.

    Args:
        logits: ``[..., P, Y]`` logits.
        reward: ``[..., P, Y]`` training reward.
        ref_log_probs: ``[..., P, Y]`` log-probabilities of the reference policy.
        kl_coef: ``lambda >= 0``.
        num_prompts: ``|S|``; defaults to ``P``.

    Returns:
        ``[..., P, Y]`` gradient, the right-hand side of the gradient flow Eq. 4.
    """
    log_pi = log_softmax(logits, axis=-1)
    pi = np.exp(log_pi)
    r_kl = reward - kl_coef * (log_pi - ref_log_probs) if kl_coef else reward
    centered = r_kl - np.sum(pi * r_kl, axis=-1, keepdims=True)
    return np.asarray(pi * centered / _prompts(logits, num_prompts))


def _validated(
    pi0: Any, train_reward: Any, eval_reward: Any, kl_coef: float, num_prompts: int | None, ndim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    p0 = check_distribution(pi0, "pi0", ndim=ndim)
    train = check_rewards(train_reward, "train_reward", p0.shape)
    evaluation = check_rewards(eval_reward, "eval_reward", p0.shape)
    lam = check_kl_coef(kl_coef)
    simulated = 1 if ndim == 1 else p0.shape[0]
    size = simulated if num_prompts is None else check_num_prompts(num_prompts, at_least=simulated)
    return p0, train, evaluation, lam, size


def flow_time_to_gamma(
    pi0: Any,
    train_reward: Any,
    eval_reward: Any,
    gamma: float,
    *,
    kl_coef: float = 0.0,
    num_prompts: int | None = None,
    t_max: float = 1e6,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> float:
    """``t_gamma`` of the gradient flow (Eq. 4) of several prompts, by ``solve_ivp`` with a terminal event.

    ``t_gamma = inf{t : mean_x E_{pi_t(.|x)}[r_eval] >= mean_x E_{pi_0(.|x)}[r_eval] + gamma}`` where the policy
    follows the flow of the training reward (spec §1). DOP853 with dense-output root finding locates the event to the
    integrator's tolerance.

    Args:
        pi0: ``[P, Y]`` initial (= reference) policy of each simulated prompt.
        train_reward: ``[P, Y]`` ``r_RM``, the reward the flow maximizes.
        eval_reward: ``[P, Y]`` the reward whose increase is timed (``r_G``, or ``r_RM`` itself).
        gamma: the increase, ``> 0``.
        kl_coef: ``lambda >= 0``.
        num_prompts: ``|S| >= P``; defaults to ``P``.
        t_max: the horizon; ``math.inf`` is returned when the increase is not reached by then.
        rtol, atol: ``solve_ivp`` tolerances.

    Returns:
        ``t_gamma``, or ``math.inf``.
    """
    p0, train, evaluation, lam, size = _validated(pi0, train_reward, eval_reward, kl_coef, num_prompts, ndim=2)
    return _solve_t_gamma(
        p0, train, evaluation, check_gamma(gamma), lam, size, check_positive(t_max, "t_max"), rtol, atol
    )


def time_to_gamma(
    pi0: Any,
    train_reward: Any,
    eval_reward: Any,
    gamma: float,
    *,
    kl_coef: float = 0.0,
    num_prompts: int = 1,
    t_max: float = 1e6,
) -> float:
    """Time for gradient flow on ``train_reward`` to raise the expected ``eval_reward`` of one prompt by ``gamma``.

    The stable entry point of the theory lab. The prompt is one of ``num_prompts = |S|`` prompts, so its logits move
    at ``1/|S|`` of the single-prompt speed and ``t_gamma`` grows linearly with ``|S|`` (Lemma 7). Integrated by
    ``scipy.integrate.solve_ivp`` (DOP853, ``rtol=1e-10``) with a terminal event at the increase.

    Args:
        pi0: ``[Y]`` initial policy ``pi_{theta(0)}(.|x)``, all entries ``> 0``, summing to 1.
        train_reward: ``[Y]`` ``r_RM(x, .)``, the reward policy gradient maximizes (warned when outside [-1, 1]).
        eval_reward: ``[Y]`` the reward whose expectation must rise by ``gamma`` (e.g. ``r_G(x, .)``).
        gamma: the increase, ``> 0``.
        kl_coef: the KL coefficient ``lambda >= 0`` of Eq. 1; the reference policy is ``pi0``.
        num_prompts: ``|S| >= 1``.
        t_max: horizon of the simulation.

    Returns:
        ``t_gamma``, or ``math.inf`` when the increase is not reached by ``t_max`` (or the flow stops first).

    Raises:
        ValueError: a bad ``pi0`` (naming the entry), NaN or mismatched rewards, ``gamma <= 0``, ``kl_coef < 0``,
            ``num_prompts < 1`` or ``t_max <= 0``.
    """
    p0, train, evaluation, lam, size = _validated(pi0, train_reward, eval_reward, kl_coef, num_prompts, ndim=1)
    gamma = check_gamma(gamma)
    horizon = check_positive(t_max, "t_max")
    return _solve_t_gamma(p0[None], train[None], evaluation[None], gamma, lam, size, horizon, 1e-10, 1e-12)


def _solve_t_gamma(
    pi0: np.ndarray,
    train: np.ndarray,
    evaluation: np.ndarray,
    gamma: float,
    kl_coef: float,
    num_prompts: int,
    t_max: float,
    rtol: float,
    atol: float,
) -> float:
    shape = pi0.shape  # [P, Y]
    ref_log = np.log(pi0)
    target = float(np.mean(np.sum(pi0 * evaluation, axis=-1))) + gamma

    def rhs(_: float, theta: np.ndarray) -> np.ndarray:
        return tabular_gradient(theta.reshape(shape), train, ref_log, kl_coef=kl_coef, num_prompts=num_prompts).ravel()

    def reached(_: float, theta: np.ndarray) -> float:
        pi = softmax(theta.reshape(shape), axis=-1)
        return float(np.mean(np.sum(pi * evaluation, axis=-1))) - target

    reached.terminal = True  # type: ignore[attr-defined]
    reached.direction = 1.0  # type: ignore[attr-defined]
    events = [reached]
    if np.max(np.abs(rhs(0.0, ref_log.ravel()))) <= ZERO_GRADIENT:  # zero variance: never moves (Thm 4, Var = 0)
        return math.inf
    if kl_coef > 0:
        ceiling = KLCeiling(ref_log, train, evaluation, kl_coef)

        def out_of_reach(_: float, theta: np.ndarray) -> float:
            return float(ceiling.margin(theta.reshape(shape), target))

        if out_of_reach(0.0, ref_log.ravel()) > 0:
            return math.inf
        out_of_reach.terminal = True  # type: ignore[attr-defined]
        out_of_reach.direction = 1.0  # type: ignore[attr-defined]
        events.append(out_of_reach)
    solution = solve_ivp(rhs, (0.0, t_max), ref_log.ravel(), method="DOP853", rtol=rtol, atol=atol, events=events)
    if not solution.success:
        raise RuntimeError(f"gradient flow failed: {solution.message}")
    return float(solution.t_events[0][0]) if len(solution.t_events[0]) else math.inf


def flow_curves(
    pi0: Any,
    train_reward: Any,
    eval_reward: Any,
    times: Any,
    *,
    kl_coef: float = 0.0,
    num_prompts: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected training and evaluation rewards along the gradient flow (Eq. 4), at the given times.

    Args:
        pi0: ``[P, Y]`` initial policy.
        train_reward, eval_reward: ``[P, Y]`` rewards.
        times: ``[T]`` non-decreasing times ``>= 0``.
        kl_coef: ``lambda >= 0``.
        num_prompts: ``|S| >= P``.

    Returns:
        ``(train_curve [T], eval_curve [T])``, each the mean over prompts of the expected reward.
    """
    p0, train, evaluation, lam, size = _validated(pi0, train_reward, eval_reward, kl_coef, num_prompts, ndim=2)
    grid = np.asarray(times, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or grid[0] < 0 or np.any(np.diff(grid) < 0):
        raise ValueError(f"times must be a non-empty, non-decreasing 1-D array of finite times >= 0; got {times!r}")
    shape, ref_log = p0.shape, np.log(p0)
    solution = solve_ivp(
        lambda _, th: tabular_gradient(th.reshape(shape), train, ref_log, kl_coef=lam, num_prompts=size).ravel(),
        (0.0, float(grid[-1])),
        ref_log.ravel(),
        method="DOP853",
        t_eval=grid,
        rtol=1e-10,
        atol=1e-12,
    )
    pi = softmax(solution.y.T.reshape(len(grid), *shape), axis=-1)  # [T, P, Y]
    return np.sum(pi * train, axis=-1).mean(axis=-1), np.sum(pi * evaluation, axis=-1).mean(axis=-1)


def exact_gradient_ascent(
    pi0: Any,
    train_reward: Any,
    eval_reward: Any,
    *,
    learning_rate: float,
    num_steps: int,
    kl_coef: float = 0.0,
    num_prompts: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Discrete gradient ascent with the exact gradient: the Euler discretization of Eq. 4, ``t = step * lr``.

    Returns:
        ``(train_curve [num_steps + 1], eval_curve [num_steps + 1])``, means over prompts.
    """
    p0, train, evaluation, lam, size = _validated(pi0, train_reward, eval_reward, kl_coef, num_prompts, ndim=2)
    lr = check_positive(learning_rate, "learning_rate")
    steps = _check_steps(num_steps)
    theta, ref_log = np.log(p0), np.log(p0)
    train_curve, eval_curve = np.empty(steps + 1), np.empty(steps + 1)
    for step in range(steps + 1):
        pi = softmax(theta, axis=-1)
        train_curve[step] = np.sum(pi * train, axis=-1).mean()
        eval_curve[step] = np.sum(pi * evaluation, axis=-1).mean()
        theta = theta + lr * tabular_gradient(theta, train, ref_log, kl_coef=lam, num_prompts=size)
    return train_curve, eval_curve


def _check_steps(num_steps: int) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int | np.integer) or num_steps < 0:
        raise ValueError(f"num_steps must be an integer >= 0; got {num_steps!r}")
    return int(num_steps)


def rloo_gradient(
    logits: np.ndarray,
    reward: np.ndarray,
    ref_log_probs: np.ndarray,
    rng: np.random.Generator,
    *,
    k: int,
    kl_coef: float = 0.0,
    num_prompts: int | None = None,
) -> np.ndarray:
    """One RLOO estimate of the tabular gradient: ``k`` samples per prompt, leave-one-out baseline.

    ``g[x] = (1/(|S| k)) sum_i (r_i - mean_{j != i} r_j) (e_{y_i} - pi(.|x))`` with the KL folded into the sampled
    reward, ``r_i = r(y_i) - lambda ln(pi(y_i)/pi_ref(y_i))`` (as TRL's RLOO). Unbiased for :func:`tabular_gradient`.

    Args:
        logits: ``[..., P, Y]`` logits; leading axes are independent runs.
        reward, ref_log_probs: ``[..., P, Y]``.
        rng: the random generator.
        k: samples per prompt, ``>= 2``.

    Returns:
        ``[..., P, Y]`` gradient estimate.
    """
    log_pi = log_softmax(logits, axis=-1)
    pi = np.exp(log_pi)
    cdf = np.cumsum(pi, axis=-1)  # [..., P, Y]
    uniform = rng.random((*logits.shape[:-1], k))  # [..., P, k]
    samples = np.minimum(np.sum(uniform[..., None] > cdf[..., None, :], axis=-1), logits.shape[-1] - 1)  # [..., P, k]
    r_kl = reward - kl_coef * (log_pi - ref_log_probs)
    sampled = np.take_along_axis(r_kl, samples, axis=-1)  # [..., P, k]
    advantage = sampled - (sampled.sum(axis=-1, keepdims=True) - sampled) / (k - 1)
    one_hot = samples[..., None] == np.arange(logits.shape[-1])  # [..., P, k, Y]
    weighted = np.sum(advantage[..., None] * one_hot, axis=-2)  # [..., P, Y]: sum of advantages landing on each y
    grad = (weighted - advantage.sum(axis=-1, keepdims=True) * pi) / k
    return np.asarray(grad / _prompts(logits, num_prompts))


def rloo_ascent(
    pi0: Any,
    train_reward: Any,
    eval_reward: Any,
    *,
    learning_rate: float,
    num_steps: int,
    k: int = 2,
    kl_coef: float = 0.0,
    num_prompts: int | None = None,
    num_runs: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Sampled policy gradient (RLOO, SGD) on every simulated prompt each step; ``num_runs`` seeds in one batch.

    Returns:
        ``(train_curves [num_runs, num_steps + 1], eval_curves [num_runs, num_steps + 1])``: the exact expected
        rewards of the sampled-trained policies, means over prompts.
    """
    p0, train, evaluation, lam, size = _validated(pi0, train_reward, eval_reward, kl_coef, num_prompts, ndim=2)
    lr = check_positive(learning_rate, "learning_rate")
    steps = _check_steps(num_steps)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ValueError(f"k (samples per prompt) must be an integer >= 2 for a leave-one-out baseline; got {k!r}")
    if isinstance(num_runs, bool) or not isinstance(num_runs, int | np.integer) or num_runs < 1:
        raise ValueError(f"num_runs must be an integer >= 1; got {num_runs!r}")
    rng = np.random.default_rng(seed)
    ref_log = np.log(p0)
    theta = np.broadcast_to(ref_log, (num_runs, *p0.shape)).copy()  # [R, P, Y]
    train_curves, eval_curves = np.empty((num_runs, steps + 1)), np.empty((num_runs, steps + 1))
    for step in range(steps + 1):
        pi = softmax(theta, axis=-1)
        train_curves[:, step] = np.sum(pi * train, axis=-1).mean(axis=-1)
        eval_curves[:, step] = np.sum(pi * evaluation, axis=-1).mean(axis=-1)
        theta += lr * rloo_gradient(theta, train, ref_log, rng, k=int(k), kl_coef=lam, num_prompts=size)
    return train_curves, eval_curves


def best_of_n_reward(probs: Any, proxy: Any, truth: Any, n: int) -> float:
    """Exact expected ground-truth reward of Best-of-N under a reward model, for a policy over a finite output set.

    Best-of-N draws ``y_1..y_N ~ pi`` i.i.d. and returns the one ``proxy`` scores highest (Prop. 1). Group outputs by
    proxy value ``g_1 < ... < g_m`` with cumulative probabilities ``F_j``: the returned output lies in group ``j``
    with probability ``F_j^N - F_{j-1}^N`` and, within a group, is distributed as ``pi`` restricted to it. This is
    :func:`rmteacher.metrics.best_of_n` with ``pi`` in place of the empirical distribution of samples.

    Args:
        probs: ``[Y]`` the policy.
        proxy: ``[Y]`` reward-model rewards.
        truth: ``[Y]`` ground-truth rewards.
        n: ``N >= 1``.

    Returns:
        ``E[r_G(y_BoN)]``.
    """
    pi = check_distribution(probs, "probs", ndim=1)
    r_rm = check_rewards(proxy, "proxy", pi.shape, shape_of="probs")
    r_g = check_rewards(truth, "truth", pi.shape, shape_of="probs")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}")
    values, group = np.unique(r_rm, return_inverse=True)
    mass = np.bincount(group, weights=pi, minlength=len(values))
    group_truth = np.bincount(group, weights=pi * r_g, minlength=len(values)) / mass
    cumulative = np.minimum(np.cumsum(mass), 1.0)
    prob_best = cumulative**n - np.concatenate([[0.0], cumulative[:-1]]) ** n
    return float(prob_best @ group_truth)
