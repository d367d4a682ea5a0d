"""The experiments of ``rmteacher theory``: each a pure function of a seed and sizes, returning arrays and numbers.

Nothing here writes files or prints; :mod:`rmteacher.theory.report` turns the results into figures, CSV tables and
the markdown summary. Every random choice comes from a generator seeded by the caller, so a seed fixes every number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.special import softmax

from rmteacher.metrics import accuracy, perfectly_accurate_low_variance, reward_variance
from rmteacher.theory.autoregressive import ar_gradient_flow, init_params, make_policy
from rmteacher.theory.batch import time_to_gamma_batch
from rmteacher.theory.bounds import (
    prop3_lower_bound,
    theorem4_lower_bound,
    theorem5_fast_upper_bound,
    theorem5_slow_lower_bound,
    theorem6_fast_upper_bound,
    theorem6_slow_lower_bound,
)
from rmteacher.theory.constructions import theorem5_construction, theorem6_construction
from rmteacher.theory.tabular import best_of_n_reward, exact_gradient_ascent, flow_curves, rloo_ascent, time_to_gamma

__all__ = [
    "AccuracyResult",
    "BestOfNResult",
    "ConstructionsResult",
    "PracticeResult",
    "VarianceResult",
    "accuracy_experiment",
    "best_of_n_experiment",
    "constructions_experiment",
    "practice_experiment",
    "variance_experiment",
]

Table = dict[str, np.ndarray]


def _random_policy(rng: np.random.Generator, shape: tuple[int, ...], temperature: float = 1.5) -> np.ndarray:
    return np.asarray(softmax(temperature * rng.normal(size=shape), axis=-1))


def _noisy_reward(truth: np.ndarray, noise: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``truth + noise * eps`` rescaled so its largest magnitude is 1 (each row), keeping rewards in [-1, 1]."""
    raw = truth + noise[..., None] * rng.normal(size=truth.shape)
    return np.asarray(raw / np.max(np.abs(raw), axis=-1, keepdims=True))


def _on_policy_accuracy(proxy: np.ndarray, truth: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Definition 1 with D = pi0 x pi0 restricted to unordered pairs of distinct outputs, per row."""
    first, second = np.triu_indices(proxy.shape[-1], k=1)
    pairs = np.stack([first, second], axis=1)
    return accuracy(proxy, truth, pairs=pairs, weights=probs[:, first] * probs[:, second])


def _fit_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of ``log10 y`` on ``log10 x``."""
    slope, intercept = np.polyfit(np.log10(x), np.log10(y), 1)
    return float(slope), float(intercept)


# --------------------------------------------------------------------------------------------------------------
# t_gamma vs reward variance (Prop. 3 and Theorem 4)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VarianceResult:
    """t_gamma of the ground-truth increase against the training reward's variance, tabular and autoregressive."""

    tabular: Table  # base, scale, accuracy, variance, t_gamma, bound
    autoregressive: Table  # base, scale, variance, jacobian_sup, t_gamma, bound
    gamma: float
    numbers: dict[str, float] = field(default_factory=dict)


def variance_experiment(
    rng: np.random.Generator,
    *,
    num_instances: int = 1000,
    num_outputs: int = 20,
    num_scales: int = 5,
    gamma: float = 0.1,
    ar_bases: int = 6,
    vocab_size: int = 3,
    length: int = 4,
    t_max: float = 1e5,
) -> VarianceResult:
    """Random instances at several reward scalings: simulated t_gamma against the bounds of Prop. 3 and Theorem 4.

    Each base instance draws an initial policy, a ground truth ``r_G ~ U[-1, 1]`` and a reward model (``r_G`` itself
    for half the bases, a noisy version for the rest); the reward model is then scaled by ``s`` in
    ``logspace(-2, 0)``. Gradient flow maximizes ``s r_RM`` and t_gamma times the increase of ``r_G``.
    """
    scales = np.logspace(-2, 0, num_scales)
    bases = max(1, num_instances // num_scales)
    truth = rng.uniform(-1, 1, (bases, num_outputs))
    pi0 = _random_policy(rng, (bases, num_outputs))
    noise = np.where(np.arange(bases) % 2 == 0, 0.0, rng.uniform(0.2, 1.0, bases))
    proxy = _noisy_reward(truth, noise, rng)
    base_acc = _on_policy_accuracy(proxy, truth, pi0)
    # [bases * scales] instances, scale varying fastest: one batched solver call for the whole sweep
    train = (proxy[:, None, :] * scales[None, :, None]).reshape(-1, num_outputs)
    rep = np.repeat(np.arange(bases), num_scales)
    t_gamma = time_to_gamma_batch(pi0[rep], train, truth[rep], gamma, t_max=t_max)
    variance = reward_variance(train, probs=pi0[rep])
    bound = np.array([prop3_lower_bound(pi0[b], r, gamma) for b, r in zip(rep, train, strict=True)])
    tabular: Table = {
        "base": rep,
        "scale": np.tile(scales, bases),
        "on_policy_accuracy": base_acc[rep],
        "variance": variance,
        "t_gamma": t_gamma,
        "prop3_bound": bound,
    }
    finite = np.isfinite(t_gamma)
    slope, intercept = _fit_slope(variance[finite], t_gamma[finite])
    top = finite & (tabular["scale"] == 1.0)
    slope_unscaled, _ = _fit_slope(variance[top], t_gamma[top]) if top.sum() > 2 else (math.nan, math.nan)

    policy = make_policy(vocab_size, length, num_prompts=2, hidden=6)
    ar_rows: dict[str, list[float]] = {k: [] for k in ("base", "scale", "variance", "jacobian_sup", "t_gamma", "bound")}
    for base in range(ar_bases):
        params0 = init_params(policy, rng)
        ar_truth = rng.uniform(-1, 1, (policy.num_prompts, policy.num_outputs))
        ar_proxy = _noisy_reward(ar_truth, np.full(policy.num_prompts, 0.0 if base % 2 == 0 else 0.5), rng)
        for scale in scales:
            flow = ar_gradient_flow(policy, params0, scale * ar_proxy, ar_truth, gamma, t_max=t_max)
            ar_rows["base"].append(base)
            ar_rows["scale"].append(float(scale))
            ar_rows["variance"].append(flow.mean_variance)
            ar_rows["jacobian_sup"].append(flow.jacobian_sup)
            ar_rows["t_gamma"].append(flow.t_gamma)
            ar_rows["bound"].append(
                theorem4_lower_bound(
                    gamma, mean_variance=flow.mean_variance, length=length, jacobian_norm=flow.jacobian_sup
                )
            )
    autoregressive = {k: np.asarray(v) for k, v in ar_rows.items()}
    ar_finite = np.isfinite(autoregressive["t_gamma"])
    ar_slope, _ = _fit_slope(autoregressive["variance"][ar_finite], autoregressive["t_gamma"][ar_finite])
    numbers = {
        "tabular_instances": float(len(t_gamma)),
        "tabular_reached": float(finite.sum()),
        "tabular_slope": slope,
        "tabular_intercept": intercept,
        "tabular_slope_scale1": slope_unscaled,
        "tabular_min_ratio_to_bound": float(np.min(t_gamma[finite] / bound[finite])),
        "tabular_fraction_above_bound": float(np.mean(t_gamma[finite] >= bound[finite])),
        "ar_instances": float(len(ar_finite)),
        "ar_reached": float(ar_finite.sum()),
        "ar_slope": ar_slope,
        "ar_min_ratio_to_bound": float(
            np.min(autoregressive["t_gamma"][ar_finite] / autoregressive["bound"][ar_finite])
        ),
        "ar_fraction_above_bound": float(
            np.mean(autoregressive["t_gamma"][ar_finite] >= autoregressive["bound"][ar_finite])
        ),
    }
    return VarianceResult(tabular=tabular, autoregressive=autoregressive, gamma=gamma, numbers=numbers)


# --------------------------------------------------------------------------------------------------------------
# Accuracy vs variance as predictors of t_gamma (Section 3, Table 2 in the simulator)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccuracyResult:
    """Many reward models for one ground truth and one initial policy: accuracy, variance and t_gamma."""

    table: Table  # noise, scale, accuracy, on_policy_accuracy, variance, t_gamma, speed
    gamma: float
    t_max: float
    numbers: dict[str, float] = field(default_factory=dict)


def accuracy_experiment(
    rng: np.random.Generator,
    *,
    num_reward_models: int = 500,
    num_outputs: int = 30,
    gamma: float = 0.1,
    t_max: float = 1e4,
) -> AccuracyResult:
    """Random reward models at many accuracy levels and scales; correlate accuracy and variance with speed.

    Reward model ``i`` is ``s_i * normalize(r_G + sigma_i eps)`` with ``sigma_i ~ U[0, 2]`` (accuracy from 1 down to
    near chance) and ``s_i`` log-uniform in ``[0.03, 1]``. Speed is ``1 / t_gamma`` of the ground-truth increase
    (``0`` when not reached by ``t_max``).
    """
    truth = rng.uniform(-1, 1, num_outputs)
    pi0 = _random_policy(rng, (num_outputs,))
    noise = rng.uniform(0.0, 2.0, num_reward_models)
    scale = 10 ** rng.uniform(math.log10(0.03), 0.0, num_reward_models)
    proxy = _noisy_reward(np.broadcast_to(truth, (num_reward_models, num_outputs)), noise, rng) * scale[:, None]
    truths = np.broadcast_to(truth, proxy.shape)
    policies = np.broadcast_to(pi0, proxy.shape)
    t_gamma = time_to_gamma_batch(policies, proxy, truths, gamma, t_max=t_max)
    speed = np.where(np.isfinite(t_gamma), 1.0 / t_gamma, 0.0)
    table: Table = {
        "noise": noise,
        "scale": scale,
        "accuracy": accuracy(proxy, truths),
        "on_policy_accuracy": _on_policy_accuracy(proxy, truths, policies),
        "variance": reward_variance(proxy, probs=policies),
        "t_gamma": t_gamma,
        "speed": speed,
    }
    numbers = {"reward_models": float(num_reward_models), "reached": float(np.isfinite(t_gamma).sum())}
    accurate = table["on_policy_accuracy"] >= 0.9  # among good reward models, does more accuracy still help?
    numbers["accurate_models"] = float(accurate.sum())
    for name in ("variance", "on_policy_accuracy", "accuracy"):
        numbers[f"pearson_{name}"] = float(stats.pearsonr(table[name], speed).statistic)
        numbers[f"spearman_{name}"] = float(stats.spearmanr(table[name], speed).statistic)
        if accurate.sum() > 2:
            numbers[f"spearman_{name}_accurate"] = float(
                stats.spearmanr(table[name][accurate], speed[accurate]).statistic
            )
    return AccuracyResult(table=table, gamma=gamma, t_max=t_max, numbers=numbers)


# --------------------------------------------------------------------------------------------------------------
# Theorem 2/5 and Theorem 3/6 constructions
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstructionsResult:
    """t_gamma and bounds of the proofs' constructions, and their ground-truth reward curves."""

    table: Table  # theorem, policy, reward_model, accuracy, variance, t_gamma, bound_kind, bound
    labels: list[str]  # one per table row: "Thm 5: slow (acc 1)" ...
    times: np.ndarray  # [T] curve times
    curves: np.ndarray  # [rows, T] ground-truth increase E[r_G](t) - E[r_G](0)
    gamma: float
    T: float


def constructions_experiment(
    rng: np.random.Generator,
    *,
    num_outputs: int = 10,
    gamma: float = 0.2,
    T: float = 30.0,
    c: float = 0.2,
    v0: float = -0.2,
) -> ConstructionsResult:
    """The App. D.8 and D.9 constructions on a random ground truth: their t_gamma against the theorems' bounds."""
    truth = np.sort(rng.uniform(-1, 1, num_outputs))
    truth[-2:] = np.sort(rng.uniform(0.5, 1.0, 2))  # Theorem 6 needs two outputs above v0 + gamma
    pi0 = _random_policy(rng, (num_outputs,))
    thm5 = theorem5_construction(truth, pi0, gamma, T)
    thm6 = theorem6_construction(truth, gamma, T, c, v0)
    rows = [
        ("5", "pi0 (random)", "slow: b_y < 1/T, acc 1", pi0, thm5.slow, "lower", theorem5_slow_lower_bound(gamma, T)),
        (
            "5",
            "pi0 (random)",
            "fast: y_gamma first, acc <= 2/|Y|",
            pi0,
            thm5.fast,
            "upper",
            theorem5_fast_upper_bound(pi0, truth, thm5.y_gamma, gamma),
        ),
    ]
    for policy_name, pi, favoured in (("Pi", thm6.pi, thm6.y_gamma), ("Pi'", thm6.pi_prime, thm6.y_gamma_prime)):
        for reward_name, reward, target in (
            ("r = 1[y_gamma]", thm6.reward, thm6.y_gamma),
            ("r' = 1[y'_gamma]", thm6.reward_prime, thm6.y_gamma_prime),
        ):
            if target == favoured:
                bound = theorem6_fast_upper_bound(pi, truth, target, gamma, c)
                rows.append(("6", policy_name, reward_name, pi, reward, "upper", bound))
            else:
                rows.append(("6", policy_name, reward_name, pi, reward, "lower", theorem6_slow_lower_bound(gamma, T)))
    t_gamma = np.array([time_to_gamma(pi, r, truth, gamma) for _, _, _, pi, r, _, _ in rows])
    horizon = 2.0 * float(np.max(t_gamma[np.isfinite(t_gamma)]))
    times = np.concatenate([[0.0], np.logspace(-2, math.log10(horizon), 200)])
    curves = np.stack(
        [flow_curves(pi[None], r[None], truth[None], times)[1] - pi @ truth for _, _, _, pi, r, _, _ in rows]
    )
    policies = np.stack([row[3] for row in rows])
    rewards = np.stack([row[4] for row in rows])
    table: Table = {
        "theorem": np.array([row[0] for row in rows]),
        "policy": np.array([row[1] for row in rows]),
        "reward_model": np.array([row[2] for row in rows]),
        "accuracy": accuracy(rewards, np.broadcast_to(truth, rewards.shape)),
        "variance": reward_variance(rewards, probs=policies),
        "t_gamma": t_gamma,
        "bound_kind": np.array([row[5] for row in rows]),
        "bound": np.array([row[6] for row in rows]),
    }
    labels = [f"Thm {row[0]}: {row[1]}, {row[2]}" for row in rows]
    return ConstructionsResult(table=table, labels=labels, times=times, curves=curves, gamma=gamma, T=T)


# --------------------------------------------------------------------------------------------------------------
# Best-of-N vs policy gradient (Prop. 1)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BestOfNResult:
    """Best-of-N ground-truth reward and policy-gradient t_gamma of the same reward models."""

    ns: np.ndarray  # [K]
    names: list[str]
    best_of_n: np.ndarray  # [models, K] E[r_G] of Best-of-N
    expected_max: np.ndarray  # [K] E[max_i r_G(y_i)], the optimum (Prop. 1)
    table: Table  # reward_model, accuracy, variance, best_of_16, t_gamma
    gamma: float


def best_of_n_experiment(
    rng: np.random.Generator, *, num_outputs: int = 20, gamma: float = 0.2, T: float = 30.0, max_n: int = 64
) -> BestOfNResult:
    """A perfectly accurate, low-variance reward model is optimal for Best-of-N yet slowest for policy gradient."""
    truth = rng.uniform(-1, 1, num_outputs)
    pi0 = _random_policy(rng, (num_outputs,))
    thm5 = theorem5_construction(truth, pi0, gamma, T)
    noisy = _noisy_reward(truth[None], np.array([0.7]), rng)[0]
    models = {
        "ground truth r_G": truth,
        "acc 1, low variance (Thm 5 slow)": thm5.slow,
        "noisy r_G (acc < 1)": noisy,
        "y_gamma first, acc <= 2/|Y| (Thm 5 fast)": thm5.fast,
    }
    ns = 2 ** np.arange(int(math.log2(max_n)) + 1)
    bon = np.array([[best_of_n_reward(pi0, r, truth, int(n)) for n in ns] for r in models.values()])
    expected_max = np.array([best_of_n_reward(pi0, truth, truth, int(n)) for n in ns])
    rewards = np.stack(list(models.values()))
    sixteen = int(np.flatnonzero(ns == 16)[0]) if 16 in ns else len(ns) - 1
    table: Table = {
        "reward_model": np.array(list(models)),
        "accuracy": _on_policy_accuracy(
            rewards, np.broadcast_to(truth, rewards.shape), np.broadcast_to(pi0, rewards.shape)
        ),
        "variance": reward_variance(rewards, probs=np.broadcast_to(pi0, rewards.shape)),
        f"best_of_{int(ns[sixteen])}": bon[:, sixteen],
        "t_gamma": np.array([time_to_gamma(pi0, r, truth, gamma) for r in models.values()]),
    }
    return BestOfNResult(ns=ns, names=list(models), best_of_n=bon, expected_max=expected_max, table=table, gamma=gamma)


# --------------------------------------------------------------------------------------------------------------
# Theory vs practice: gradient flow, exact gradient steps and sampled RLOO
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PracticeResult:
    """Reward curves of one instance under gradient flow, exact steps and RLOO, for two reward models."""

    times: np.ndarray  # [steps + 1] = step * learning_rate
    names: list[str]
    flow: np.ndarray  # [models, 2, steps + 1]: (proxy, ground truth) increase under gradient flow
    exact: np.ndarray  # [models, 2, steps + 1] under exact-gradient steps
    rloo_mean: np.ndarray  # [models, 2, steps + 1] mean over runs of RLOO
    rloo_std: np.ndarray  # [models, 2, steps + 1]
    table: Table  # reward_model, accuracy, variance, final increases
    k: int
    num_runs: int
    learning_rate: float


def practice_experiment(
    rng: np.random.Generator,
    *,
    num_prompts: int = 8,
    num_outputs: int = 20,
    num_steps: int = 200,
    learning_rate: float = 1.0,
    k: int = 2,
    num_runs: int = 16,
    kl_coef: float = 0.0,
    low_variance_factor: float = 0.01,
    noise: float = 0.4,
    seed: int = 0,
) -> PracticeResult:
    """Gradient flow against discrete exact steps and sampled RLOO (SGD, ``k`` samples per prompt) on one instance.

    The two reward models follow Section 4.1: the ground truth with half the prompts' rewards scaled by
    ``low_variance_factor`` (accuracy 1, low variance; :func:`rmteacher.metrics.perfectly_accurate_low_variance`) and
    the ground truth plus Gaussian ``noise`` (lower accuracy, higher variance).
    """
    truth = rng.uniform(-1, 1, (num_prompts, num_outputs))
    pi0 = _random_policy(rng, (num_prompts, num_outputs))
    low_variance, _ = perfectly_accurate_low_variance(truth, fraction=0.5, factor=low_variance_factor, seed=seed)
    noisy = _noisy_reward(truth, np.full(num_prompts, noise), rng)
    models = {
        f"acc 1, low variance (half the prompts x{low_variance_factor:g})": low_variance,
        f"noisy r_G (+{noise:g} N(0,1), acc < 1)": noisy,
    }
    times = np.arange(num_steps + 1) * learning_rate
    flow, exact, rloo_mean, rloo_std = [], [], [], []
    for index, reward in enumerate(models.values()):
        start = np.array([np.mean(np.sum(pi0 * reward, -1)), np.mean(np.sum(pi0 * truth, -1))])[:, None]
        flow.append(np.stack(flow_curves(pi0, reward, truth, times, kl_coef=kl_coef)) - start)
        exact.append(
            np.stack(
                exact_gradient_ascent(
                    pi0, reward, truth, learning_rate=learning_rate, num_steps=num_steps, kl_coef=kl_coef
                )
            )
            - start
        )
        train_runs, eval_runs = rloo_ascent(
            pi0,
            reward,
            truth,
            learning_rate=learning_rate,
            num_steps=num_steps,
            k=k,
            kl_coef=kl_coef,
            num_runs=num_runs,
            seed=seed * 1000 + index,
        )
        runs = np.stack([train_runs, eval_runs], axis=1) - start[None]  # [R, 2, steps + 1]
        rloo_mean.append(runs.mean(axis=0))
        rloo_std.append(runs.std(axis=0))
    rewards = np.stack(list(models.values()))  # [models, P, Y]
    truths = np.broadcast_to(truth, rewards.shape)
    policies = np.broadcast_to(pi0, rewards.shape)
    flat = (-1, num_outputs)
    table: Table = {
        "reward_model": np.array(list(models)),
        "on_policy_accuracy": _on_policy_accuracy(rewards.reshape(flat), truths.reshape(flat), policies.reshape(flat))
        .reshape(len(models), num_prompts)
        .mean(axis=1),
        "variance": reward_variance(rewards.reshape(flat), probs=policies.reshape(flat))
        .reshape(len(models), num_prompts)
        .mean(axis=1),
        "flow_gt_increase": np.array([f[1, -1] for f in flow]),
        "exact_steps_gt_increase": np.array([e[1, -1] for e in exact]),
        "rloo_gt_increase": np.array([m[1, -1] for m in rloo_mean]),
        "rloo_gt_increase_std": np.array([s[1, -1] for s in rloo_std]),
    }
    return PracticeResult(
        times=times,
        names=list(models),
        flow=np.stack(flow),
        exact=np.stack(exact),
        rloo_mean=np.stack(rloo_mean),
        rloo_std=np.stack(rloo_std),
        table=table,
        k=k,
        num_runs=num_runs,
        learning_rate=learning_rate,
    )
