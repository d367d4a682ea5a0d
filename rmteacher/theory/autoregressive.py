"""Exact autoregressive policies (Eq. 2) over all ``|V|^L`` outputs: objective, gradient, Jacobian, gradient flow.

The logits of the next token are a one-hidden-layer network of prefix features,
``f_theta(x, y_<l) = W2 tanh(W1 phi(x, y_<l) + b1) + b2``, with ``phi`` = [one-hot prompt, one-hot position,
one-hot last token (or BOS), token counts of the prefix / L]. Every output has length ``L`` (Y = V^L, spec §1) and is
enumerated, so expectations and gradients are exact. Outputs are indexed in base ``|V|``, first token most
significant; a prefix of length ``l`` is a node of level ``l`` of the ``|V|``-ary tree, nodes stored level by level.

Shapes: ``params: [num_params]`` (flat ``W1 [H, D], b1 [H], W2 [V, H], b2 [V]``); rewards and log-probabilities
``[P, V^L]``.

Reference: Razin et al. (2025), Eq. 2, Theorem 4 (and Prop. 2: the Jacobian of ``f_theta`` enters the bound).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import log_softmax, softmax

from rmteacher.theory.validation import check_gamma, check_kl_coef, check_positive, check_rewards

__all__ = [
    "AutoregressiveFlow",
    "AutoregressivePolicy",
    "ar_gradient",
    "ar_gradient_flow",
    "ar_log_probs",
    "ar_objective",
    "init_params",
    "jacobian_norms",
    "make_policy",
]

MAX_OUTPUTS = 200_000


@dataclass(frozen=True)
class AutoregressivePolicy:
    """Architecture of a tiny autoregressive policy and the features of every (prompt, prefix) node."""

    vocab_size: int
    length: int
    num_prompts: int
    hidden: int
    features: np.ndarray  # [P, N, D] with N = sum_{l < L} V^l prefixes

    @property
    def num_outputs(self) -> int:
        return int(self.vocab_size**self.length)

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[-1])

    @property
    def num_params(self) -> int:
        return self.hidden * (self.feature_dim + 1) + self.vocab_size * (self.hidden + 1)

    def unflatten(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Splits flat parameters into ``(W1 [H, D], b1 [H], W2 [V, H], b2 [V])``."""
        h, d, v = self.hidden, self.feature_dim, self.vocab_size
        if params.shape != (self.num_params,):
            raise ValueError(f"params must have shape ({self.num_params},) for this policy; got {params.shape}")
        cuts = np.cumsum([h * d, h, v * h])
        w1, b1, w2, b2 = np.split(params, cuts)
        return w1.reshape(h, d), b1, w2.reshape(v, h), b2


def _check_int(value: int, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)


def make_policy(vocab_size: int, length: int, *, num_prompts: int = 1, hidden: int = 8) -> AutoregressivePolicy:
    """Builds the prefix features of a ``|V|^L``-output policy for ``num_prompts`` prompts."""
    v = _check_int(vocab_size, "vocab_size", 2)
    length = _check_int(length, "length", 1)
    p = _check_int(num_prompts, "num_prompts", 1)
    h = _check_int(hidden, "hidden", 1)
    if v**length > MAX_OUTPUTS:
        raise ValueError(
            f"vocab_size**length = {v}**{length} = {v**length} outputs; at most {MAX_OUTPUTS} can be enumerated"
        )
    levels = []
    for level in range(length):
        prefixes = np.arange(v**level)
        digits = (prefixes[:, None] // v ** np.arange(level - 1, -1, -1)[None, :]) % v  # [V^l, l] tokens
        last = digits[:, -1] if level else np.full(len(prefixes), v)  # token v stands for BOS
        counts = np.stack([(digits == token).sum(axis=1) for token in range(v)], axis=1) / length
        position = np.zeros((len(prefixes), length))
        position[:, level] = 1.0
        levels.append(np.concatenate([position, np.eye(v + 1)[last], counts], axis=1))
    prefix_features = np.concatenate(levels)  # [N, L + 2V + 1]
    nodes = prefix_features.shape[0]
    prompt = np.broadcast_to(np.eye(p)[:, None, :], (p, nodes, p))
    features = np.concatenate([prompt, np.broadcast_to(prefix_features, (p, *prefix_features.shape))], axis=2)
    return AutoregressivePolicy(vocab_size=v, length=length, num_prompts=p, hidden=h, features=features)


def init_params(policy: AutoregressivePolicy, rng: np.random.Generator, *, scale: float = 1.0) -> np.ndarray:
    """Gaussian initial parameters; ``scale`` sets how far from uniform the initial policy is."""
    w1 = rng.normal(size=(policy.hidden, policy.feature_dim)) * scale
    b1 = rng.normal(size=policy.hidden) * scale * 0.5
    w2 = rng.normal(size=(policy.vocab_size, policy.hidden)) * scale
    b2 = rng.normal(size=policy.vocab_size) * scale * 0.5
    return np.concatenate([w1.ravel(), b1, w2.ravel(), b2])


def _forward(policy: AutoregressivePolicy, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w1, b1, w2, b2 = policy.unflatten(params)
    hidden = np.tanh(policy.features @ w1.T + b1)  # [P, N, H]
    return hidden @ w2.T + b2, hidden  # logits [P, N, V]


def _levels(policy: AutoregressivePolicy) -> list[slice]:
    starts = np.concatenate([[0], np.cumsum(policy.vocab_size ** np.arange(policy.length))])
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(starts)]


def ar_log_probs(policy: AutoregressivePolicy, params: np.ndarray) -> np.ndarray:
    """``ln pi_theta(y|x)`` of every output (Eq. 2), ``[P, V^L]``."""
    logits, _ = _forward(policy, params)
    log_probs = np.zeros((policy.num_prompts, 1))
    for level in _levels(policy):
        step = log_softmax(logits[:, level], axis=-1)  # [P, V^l, V]
        log_probs = (log_probs[:, :, None] + step).reshape(policy.num_prompts, -1)
    return log_probs


def ar_objective(
    policy: AutoregressivePolicy,
    params: np.ndarray,
    reward: np.ndarray,
    ref_log_probs: np.ndarray,
    *,
    kl_coef: float = 0.0,
) -> float:
    """Eq. 1 over the policy's prompts (``S = X``): ``mean_x (E_pi[r] - lambda KL(pi || pi_ref))``."""
    log_pi = ar_log_probs(policy, params)
    return float(np.mean(np.sum(np.exp(log_pi) * (reward - kl_coef * (log_pi - ref_log_probs)), axis=-1)))


def ar_gradient(
    policy: AutoregressivePolicy,
    params: np.ndarray,
    reward: np.ndarray,
    ref_log_probs: np.ndarray,
    *,
    kl_coef: float = 0.0,
) -> np.ndarray:
    """Exact gradient of :func:`ar_objective`, ``[num_params]``.

    ``grad = mean_x sum_y pi(y|x) (r_KL(y) - E_pi r_KL) grad ln pi(y|x)`` (the KL's own ``E_pi grad ln pi`` term is
    zero), and ``grad ln pi(y|x) = sum_l J_f(x, y_<l)^T (e_{y_l} - softmax(f(x, y_<l)))``. Summing the output weights
    over each prefix's subtree gives the gradient with respect to every node's logits, then backprop through the MLP.
    """
    _w1, _, w2, _ = policy.unflatten(params)
    logits, hidden = _forward(policy, params)
    log_pi = ar_log_probs(policy, params)
    pi = np.exp(log_pi)
    r_kl = reward - kl_coef * (log_pi - ref_log_probs) if kl_coef else reward
    weights = pi * (r_kl - np.sum(pi * r_kl, axis=-1, keepdims=True)) / policy.num_prompts  # [P, V^L]
    v, p = policy.vocab_size, policy.num_prompts
    node_grads = []
    for depth, level in enumerate(_levels(policy)):
        mass = weights.reshape(p, v**depth, v, -1).sum(axis=-1)  # [P, V^l, V]: weight of each next token
        probs = softmax(logits[:, level], axis=-1)
        node_grads.append(mass - mass.sum(axis=-1, keepdims=True) * probs)
    g = np.concatenate(node_grads, axis=1)  # [P, N, V], d objective / d logits
    d_pre = (g @ w2) * (1.0 - hidden**2)  # [P, N, H]
    d_w2 = np.einsum("pnv,pnh->vh", g, hidden)
    d_w1 = np.einsum("pnh,pnd->hd", d_pre, policy.features)
    return np.concatenate([d_w1.ravel(), d_pre.sum(axis=(0, 1)), d_w2.ravel(), g.sum(axis=(0, 1))])


def jacobian_norms(policy: AutoregressivePolicy, params: np.ndarray) -> np.ndarray:
    """Spectral norm of the Jacobian of ``f_theta(x, y_<l)`` with respect to ``theta`` at every node, ``[P, N]``.

    ``J J^T = (||h||^2 + 1) I + (||phi||^2 + 1) (W2 D)(W2 D)^T`` with ``D = diag(1 - h^2)`` (the W2, b2, W1, b1
    blocks), so ``||J||_2^2 = ||h||^2 + 1 + (||phi||^2 + 1) sigma_max(W2 D)^2``.
    """
    _, _, w2, _ = policy.unflatten(params)
    _, hidden = _forward(policy, params)
    d = 1.0 - hidden**2  # [P, N, H]
    gram = d[..., :, None] * (w2.T @ w2) * d[..., None, :]  # [P, N, H, H] = (W2 D)^T (W2 D)
    sigma_sq = np.linalg.eigvalsh(gram)[..., -1]
    phi_sq = np.sum(policy.features**2, axis=-1)
    return np.sqrt(np.sum(hidden**2, axis=-1) + 1.0 + (phi_sq + 1.0) * np.maximum(sigma_sq, 0.0))


@dataclass(frozen=True)
class AutoregressiveFlow:
    """Result of :func:`ar_gradient_flow`: ``t_gamma`` and the quantities of Theorem 4's bound along the way."""

    t_gamma: float
    jacobian_sup: float  # max of ||J_f||_2 over prompts, prefixes and the sampled times in [0, t_gamma]
    mean_variance: float  # E_{x in S} Var_{y ~ pi_0(.|x)}[r_RM(x, y)]
    times: np.ndarray  # [T] the solver's accepted times
    eval_curve: np.ndarray  # [T] mean over prompts of E_pi[r_eval]


def ar_gradient_flow(
    policy: AutoregressivePolicy,
    params0: np.ndarray,
    train_reward: Any,
    eval_reward: Any,
    gamma: float,
    *,
    kl_coef: float = 0.0,
    t_max: float = 1e5,
    jacobian_samples: int = 64,
) -> AutoregressiveFlow:
    """Gradient flow (Eq. 4) of the autoregressive policy by ``solve_ivp``, with a terminal event at ``t_gamma``.

    ``t_gamma`` is timed on the mean over prompts of ``E_pi[eval_reward]``. The Jacobian's spectral norm is taken at
    up to ``jacobian_samples`` of the solver's accepted states (and the final one), a lower estimate of the sup in
    Theorem 4, which makes the bound computed from it larger, so checking ``t_gamma >= bound`` is conservative.

    Args:
        policy: the architecture.
        params0: ``[num_params]`` initial (= reference) parameters.
        train_reward, eval_reward: ``[P, V^L]`` rewards.
        gamma: the increase, ``> 0``.
        kl_coef: ``lambda >= 0``.
        t_max: horizon.
        jacobian_samples: how many states along the trajectory get their Jacobian norms computed.
    """
    shape = (policy.num_prompts, policy.num_outputs)
    train = check_rewards(train_reward, "train_reward", shape, shape_of="the policy's [num_prompts, V^L]")
    evaluation = check_rewards(eval_reward, "eval_reward", shape, shape_of="the policy's [num_prompts, V^L]")
    gamma = check_gamma(gamma)
    lam = check_kl_coef(kl_coef)
    horizon = check_positive(t_max, "t_max")
    theta0 = np.asarray(params0, dtype=np.float64)
    ref = ar_log_probs(policy, theta0)
    pi0 = np.exp(ref)
    mean_variance = float(np.mean(np.sum(pi0 * (train - np.sum(pi0 * train, -1, keepdims=True)) ** 2, axis=-1)))
    target = float(np.mean(np.sum(pi0 * evaluation, axis=-1))) + gamma

    def rhs(_: float, theta: np.ndarray) -> np.ndarray:
        return ar_gradient(policy, theta, train, ref, kl_coef=lam)

    def reached(_: float, theta: np.ndarray) -> float:
        return float(np.mean(np.sum(np.exp(ar_log_probs(policy, theta)) * evaluation, axis=-1))) - target

    reached.terminal = True  # type: ignore[attr-defined]
    reached.direction = 1.0  # type: ignore[attr-defined]
    if np.max(np.abs(rhs(0.0, theta0))) == 0.0:
        return AutoregressiveFlow(
            math.inf,
            float(jacobian_norms(policy, theta0).max()),
            mean_variance,
            np.zeros(1),
            np.array([target - gamma]),
        )
    solution = solve_ivp(rhs, (0.0, horizon), theta0, method="DOP853", rtol=1e-9, atol=1e-12, events=[reached])
    if not solution.success:
        raise RuntimeError(f"gradient flow failed: {solution.message}")
    hit = len(solution.t_events[0]) > 0
    t_gamma = float(solution.t_events[0][0]) if hit else math.inf
    states = solution.y.T  # [T, num_params]
    picks = np.unique(np.linspace(0, len(states) - 1, min(jacobian_samples, len(states))).astype(int))
    chosen = [states[i] for i in picks] + ([solution.y_events[0][0]] if hit else [])
    jacobian_sup = max(float(jacobian_norms(policy, s).max()) for s in chosen)
    eval_curve = np.array([reached(0.0, s) + target for s in states])
    return AutoregressiveFlow(t_gamma, jacobian_sup, mean_variance, solution.t, eval_curve)
