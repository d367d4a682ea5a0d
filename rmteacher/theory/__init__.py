"""The theory lab: exact policy-gradient simulators that reproduce the paper's theorems (Razin et al., 2025, §3).

Tabular policies (Eq. 3) and small exact autoregressive policies (Eq. 2) under gradient flow (Eq. 4), the reward
models and policies built in the proofs, the bounds as functions, and the experiments behind ``rmteacher theory``.
The tabular part needs only numpy and scipy.

Stable entry point: :func:`time_to_gamma`.
"""

from rmteacher.theory.autoregressive import (
    AutoregressiveFlow,
    AutoregressivePolicy,
    ar_gradient,
    ar_gradient_flow,
    ar_log_probs,
    ar_objective,
    init_params,
    jacobian_norms,
    make_policy,
)
from rmteacher.theory.batch import time_to_gamma_batch
from rmteacher.theory.bounds import (
    prop3_lower_bound,
    theorem4_lower_bound,
    theorem5_fast_upper_bound,
    theorem5_slow_lower_bound,
    theorem6_fast_upper_bound,
    theorem6_slow_lower_bound,
)
from rmteacher.theory.constructions import (
    Theorem5Construction,
    Theorem6Construction,
    theorem5_construction,
    theorem6_construction,
)
from rmteacher.theory.tabular import (
    best_of_n_reward,
    exact_gradient_ascent,
    flow_curves,
    flow_time_to_gamma,
    rlhf_objective,
    rloo_ascent,
    rloo_gradient,
    tabular_gradient,
    time_to_gamma,
)

__all__ = [
    "AutoregressiveFlow",
    "AutoregressivePolicy",
    "Theorem5Construction",
    "Theorem6Construction",
    "ar_gradient",
    "ar_gradient_flow",
    "ar_log_probs",
    "ar_objective",
    "best_of_n_reward",
    "exact_gradient_ascent",
    "flow_curves",
    "flow_time_to_gamma",
    "init_params",
    "jacobian_norms",
    "make_policy",
    "prop3_lower_bound",
    "rlhf_objective",
    "rloo_ascent",
    "rloo_gradient",
    "tabular_gradient",
    "theorem4_lower_bound",
    "theorem5_construction",
    "theorem5_fast_upper_bound",
    "theorem5_slow_lower_bound",
    "theorem6_construction",
    "theorem6_fast_upper_bound",
    "theorem6_slow_lower_bound",
    "time_to_gamma",
    "time_to_gamma_batch",
]
