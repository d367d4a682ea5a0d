"""Regenerates the example tables in this folder (seeded, so the output is identical every time).

Run: ``python examples/make_examples.py``
"""

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent


def rewards_table(num_prompts: int = 40, num_samples: int = 8, seed: int = 0) -> pd.DataFrame:
    """One row per sample: a ground truth and two reward models with different accuracy and variance."""
    rng = np.random.default_rng(seed)
    truth = np.tanh(rng.normal(size=(num_prompts, num_samples)))
    # Less accurate, but its spread is within prompts: high variance under the policy.
    noisy = truth + rng.normal(scale=0.6, size=truth.shape)
    # Orders every prompt's samples exactly like the truth (accuracy 1), but most of its spread is between prompts,
    # so after the paper's global normalization little variance is left within a prompt: a flat objective.
    accurate_flat = 0.5 * truth + rng.normal(size=(num_prompts, 1))
    prompt_id, sample_id = np.divmod(np.arange(truth.size), num_samples)
    return pd.DataFrame(
        {
            "prompt_id": prompt_id,
            "sample_id": sample_id,
            "ground_truth": truth.ravel().round(6),
            "rm_noisy": noisy.ravel().round(6),
            "rm_accurate_flat": accurate_flat.ravel().round(6),
        }
    )


# Razin et al. (2025), camera-ready Table 10 (Section 4.2): four public reward models x three policies, RLOO 2
# epochs, increases are means over 3 runs; off-policy accuracy does not depend on the policy.
TABLE10 = {
    "pythia1b": (
        [0.176, 0.148, 0.173, 0.108],
        [0.322, 0.272, 0.457, 0.474],
        [0.405, 0.528, 0.544, 0.549],
        [0.700, 0.700, 0.705, 0.639],
    ),
    "llama1b": (
        [0.280, 0.278, 0.320, 0.274],
        [0.487, 0.484, 0.743, 0.898],
        [0.500, 0.562, 0.600, 0.644],
        [0.716, 0.737, 0.737, 0.676],
    ),
    "llama1b_instruct": (
        [0.105, 0.124, 0.097, 0.101],
        [0.194, 0.232, 0.213, 0.339],
        [0.261, 0.323, 0.299, 0.336],
        [0.731, 0.758, 0.751, 0.647],
    ),
}
REWARD_MODELS = ["GRM-Gemma-2-2B", "GRM-Llama-3.2-3B", "RM-Tulu-V2-8B", "RM-Gemma-2B"]
OFF_POLICY = [0.802, 0.838, 0.860, 0.800]

if __name__ == "__main__":
    rewards_table().to_csv(HERE / "rewards.csv", index=False)
    for policy, (gt, proxy, var, on) in TABLE10.items():
        pd.DataFrame(
            {
                "reward_model": REWARD_MODELS,
                "reward_variance": var,
                "on_policy_accuracy": on,
                "off_policy_accuracy": OFF_POLICY,
                "increase_ground_truth": gt,
                "increase_proxy": proxy,
            }
        ).to_csv(HERE / f"table10_{policy}.csv", index=False)
