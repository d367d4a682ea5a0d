"""Bootstrap CIs of an `rmteacher evaluate` run: the per-resample loop against the vectorized resampling.

Run from the repository root:

    .venv/bin/python benchmarks/bench_bootstrap.py [--prompts 500] [--samples 10] [--models 7] [--repeats 3] [--quick]

The workload is what `evaluate` bootstraps on one round, on synthetic rewards of the default shape (500 prompts x
10 samples, 7 reward models and the ground truth, 1000 resamples): per reward model the normalized reward variance
(normalization re-fitted per resample), the raw variance, on-policy and off-policy accuracy, each with its CI over
prompts, and the teacher ranking.

- loop (rmteacher before issue 13): ``scipy.stats.bootstrap`` calling the statistic once per resample on the
  resampled rewards; the ranking recomputing every score per resample.
- vectorized: per-prompt statistics computed once and resampled by indexing one ``[num_resamples, num_prompts]``
  index matrix (:func:`rmteacher.metrics.bootstrap_mean_ci`, :func:`rmteacher.analysis.normalized_variance_ci`,
  :func:`rmteacher.analysis.rank_teachers`).

Both must give the same numbers (checked to 1e-12 before timing). One numpy/BLAS thread. Timing as every benchmark
here (``benchmarks/_timing.py``): variants alternate, each runs ``--repeats`` (>= 3) times; the median and the spread
((max - min) / median) are printed, and the ratio only when both spreads are under ``--max-spread``.
"""

from __future__ import annotations

import _timing

# isort: split
import argparse
from typing import Any

import numpy as np

from rmteacher.analysis import (
    normalized_variance,
    normalized_variance_ci,
    rank_teachers,
    teacher_score,
)
from rmteacher.metrics import (
    ConfidenceInterval,
    accuracy,
    bootstrap_ci,
    bootstrap_mean_ci,
    fit_normalization,
    normalize,
    reward_variance,
)


def workload(num_prompts: int, num_samples: int, num_models: int, seed: int = 0) -> dict[str, Any]:
    """Ground truth and reward models of decreasing quality; off-policy correctness on 90% of the prompts."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(num_prompts, 1)) + rng.uniform(0.3, 1.5, (num_prompts, 1)) * rng.normal(
        size=(num_prompts, num_samples)
    )
    raw = {f"rm_{i}": truth + (0.2 + 0.3 * i) * rng.normal(size=truth.shape) for i in range(num_models)}
    off = {}
    for name in raw:
        correct = rng.integers(0, 2, num_prompts).astype(np.float64)
        correct[rng.uniform(size=num_prompts) < 0.1] = np.nan
        off[name] = correct
    return {"truth": truth, "raw": raw, "off": off}


def rank_teachers_loop(
    normalized: dict[str, np.ndarray], truth: np.ndarray, off: dict[str, np.ndarray], num_resamples: int
) -> list[float]:
    """The ranking's bootstrap as rmteacher computed it before: every score recomputed per resample."""
    names = list(normalized)
    num_prompts = truth.shape[0]
    draws = np.random.default_rng(0).integers(0, num_prompts, size=(num_resamples, num_prompts))
    resampled = []
    for rows in draws:
        values = []
        for name in names:
            var = float(reward_variance(normalized[name][rows]).mean())
            on = float(accuracy(normalized[name][rows], truth[rows]).mean())
            picked = off[name][rows]
            value, _ = teacher_score(var, on, float(np.nanmean(picked)) if np.isfinite(picked).any() else None)
            values.append(value)
        resampled.append(values)
    table = np.array(resampled)
    return [float(np.quantile(table[:, i], q)) for i in range(len(names)) for q in (0.025, 0.975)]


def loop(data: dict[str, Any], num_resamples: int) -> list[float]:
    """Every interval through scipy.stats.bootstrap's per-resample loop (a lambda, so no fast path)."""
    out: list[ConfidenceInterval] = []
    options = {"num_resamples": num_resamples}
    normalized = {}
    for name, raw in data["raw"].items():
        normalized[name] = normalize(raw, fit_normalization(raw))
        out.append(bootstrap_ci(lambda r: normalized_variance(r), raw, **options))
        out.append(bootstrap_ci(lambda v: float(np.mean(v)), reward_variance(raw), **options))
        out.append(bootstrap_ci(lambda v: float(np.mean(v)), accuracy(raw, data["truth"]), **options))
        present = data["off"][name][np.isfinite(data["off"][name])]
        out.append(bootstrap_ci(lambda v: float(np.mean(v)), present, **options))
    flat = [x for ci in out for x in (ci.estimate, ci.low, ci.high)]
    return flat + rank_teachers_loop(normalized, data["truth"], data["off"], num_resamples)


def vectorized(data: dict[str, Any], num_resamples: int) -> list[float]:
    """Per-prompt statistics once, resampled by indexing."""
    out: list[ConfidenceInterval] = []
    options = {"num_resamples": num_resamples}
    normalized = {}
    for name, raw in data["raw"].items():
        normalized[name] = normalize(raw, fit_normalization(raw))
        out.append(normalized_variance_ci(raw, **options))
        out.append(bootstrap_mean_ci(reward_variance(raw), **options))
        out.append(bootstrap_mean_ci(accuracy(raw, data["truth"]), **options))
        present = data["off"][name][np.isfinite(data["off"][name])]
        out.append(bootstrap_mean_ci(present, **options))
    flat = [x for ci in out for x in (ci.estimate, ci.low, ci.high)]
    ranking = rank_teachers(normalized, data["truth"], data["off"], num_resamples=num_resamples)
    return flat + [x for name in normalized for x in (ranking.score[name].low, ranking.score[name].high)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--models", type=int, default=7, help="reward models besides the ground truth")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (>= 3), alternating")
    parser.add_argument("--max-spread", type=float, default=_timing.MAX_SPREAD, help="withhold ratios above this")
    parser.add_argument("--quick", action="store_true", help="100 prompts, 3 reward models, 200 resamples")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.models, args.resamples = 100, 3, 200

    data = workload(args.prompts, args.samples, args.models)
    reference, fast = loop(data, args.resamples), vectorized(data, args.resamples)
    difference = float(np.max(np.abs(np.array(reference) - np.array(fast))))
    if difference > 1e-12:
        raise SystemExit(f"the two differ by {difference:.3g} (> 1e-12); not timing different computations")

    _timing.header(
        "bench_bootstrap: bootstrap intervals and ranking of an evaluate round",
        threads=None,
        settings=f"{args.prompts} prompts x {args.samples} samples, {args.models} reward models, "
        f"{args.resamples} resamples; max |difference| loop vs vectorized {difference:.1e}",
    )
    results = _timing.alternate(
        {"loop": lambda: loop(data, args.resamples) and None,
         "vectorized": lambda: vectorized(data, args.resamples) and None},
        repeats=args.repeats,
        progress=False,
    )  # fmt: skip
    measures = {name: r["wall"] for name, r in results.items()}
    _timing.print_measures(measures)
    _timing.print_ratio("speed-up (loop / vectorized)", measures["loop"], measures["vectorized"],
                        max_spread=args.max_spread)  # fmt: skip
    _timing.footer()


if __name__ == "__main__":
    main()
