"""The reward columns evaluate trains and measures on: the two constructions of the low-variance reward model."""

from typing import Literal

import numpy as np
import pytest

from rmteacher.metrics import fit_normalization, normalize, perfectly_accurate_low_variance, reward_variance
from rmteacher.teachers import training_rewards

Construction = Literal["rmteacher", "authors_code"]


def _scaled_column(raw: np.ndarray, rows: np.ndarray, construction: Construction) -> np.ndarray:
    ids = np.array([f"p{i}" for i in range(raw.shape[0])])
    columns = training_rewards(
        {"ground_truth": raw},
        ids,
        scaled_ids=ids[rows],
        scale_reward=["ground_truth"],
        scale_factor=1e-3,
        construction=construction,
    )
    return columns["ground_truth_scaled"].values


def test_authors_construction_is_rmteachers_times_the_ratio_of_the_two_stds() -> None:
    # Rewards in [-1, 1] with their mean away from 0, as the sandbox's ground truth (mean about 0.3).
    rng = np.random.default_rng(0)
    raw = np.clip(0.3 + rng.normal(0, 0.2, (40, 1)) + rng.normal(0, 0.45, (40, 10)), -1, 1)
    library_authors, rows = perfectly_accurate_low_variance(raw, construction="authors_code")
    library_ours, same_rows = perfectly_accurate_low_variance(normalize(raw, fit_normalization(raw)))
    np.testing.assert_array_equal(rows, same_rows)
    ours, theirs = _scaled_column(raw, rows, "rmteacher"), _scaled_column(raw, rows, "authors_code")
    # evaluate's columns are the library's constructions.
    np.testing.assert_allclose(ours, library_ours, atol=1e-12)
    np.testing.assert_allclose(theirs, library_authors, atol=1e-12)
    # Within every prompt the authors' reward is rmteacher's times sigma / sigma' (plus a per-prompt constant), so
    # its variance is (sigma / sigma')^2 times rmteacher's: on the sandbox sigma / sigma' = 1.28.
    scaled = raw.copy()
    scaled[rows] *= 1e-3
    ratio = fit_normalization(raw).std / fit_normalization(scaled).std
    assert ratio > 1.1  # scaling toward 0 shrinks the spread when the mean lies away from 0

    def centred(m: np.ndarray) -> np.ndarray:
        return m - m.mean(axis=1, keepdims=True)

    np.testing.assert_allclose(centred(theirs), ratio * centred(ours), atol=1e-12)
    assert reward_variance(theirs).mean() / reward_variance(ours).mean() == pytest.approx(ratio**2, rel=1e-9)
