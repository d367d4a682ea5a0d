"""`rmteacher theory`: the theory lab's experiments, written as PNG figures, CSV tables and ``summary.md``.

Run ``rmteacher theory all --out runs/theory`` (well under a minute on two CPU cores) or one experiment by name.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from rmteacher.options import option
from rmteacher.rundir import open_run
from rmteacher.tables import write_json_atomic, write_text_atomic

Experiment = Literal["all", "variance", "accuracy", "constructions", "best-of-n", "practice"]
EXPERIMENTS: tuple[str, ...] = ("variance", "accuracy", "constructions", "best-of-n", "practice")


@dataclass
class TheoryConfig:
    """Options of `rmteacher theory`: exact gradient-flow experiments reproducing Theorems 1-3 and Proposition 1."""

    experiment: Experiment = option(
        "all",
        help="which experiment: variance (t_gamma vs variance, Prop. 3/Thm 4), accuracy (accuracy vs variance as "
        "predictors), constructions (Thm 2/3), best-of-n (Prop. 1), practice (flow vs RLOO), or all",
        positional=True,
    )
    out: Path = option(Path("runs/theory"), help="output directory for figures, CSV tables and summary.md")
    seed: int = option(0, help="seed of every random choice")
    gamma: float = option(0.1, help="ground-truth increase timed by t_gamma in the variance and accuracy sweeps")
    num_instances: int = option(1000, help="tabular instances in the variance sweep (one batched solver call)")
    num_outputs: int = option(20, help="outputs per prompt of the random tabular instances")
    num_reward_models: int = option(500, help="random reward models in the accuracy experiment")
    ar_bases: int = option(10, help="random autoregressive base instances (each at 5 reward scalings)")
    vocab_size: int = option(3, help="vocabulary size |V| of the autoregressive policy")
    length: int = option(5, help="output length L of the autoregressive policy (|V|^L outputs enumerated)")
    rloo_k: int = option(2, help="samples per prompt of RLOO in the practice experiment")
    rloo_runs: int = option(16, help="RLOO seeds in the practice experiment")
    kl_coef: float = option(0.0, help="KL coefficient lambda of the practice experiment")
    overwrite: bool = option(
        False, help="replace the theory run --out holds with other options (only what it wrote is deleted)"
    )

    def __post_init__(self) -> None:
        if not (np.isfinite(self.gamma) and 0 < self.gamma < 1):
            raise ValueError(f"--gamma must be in (0, 1) for rewards in [-1, 1]; got {self.gamma}")
        for name, low in (
            ("num_instances", 5),
            ("num_outputs", 3),
            ("num_reward_models", 3),
            ("ar_bases", 1),
            ("vocab_size", 2),
            ("length", 1),
            ("rloo_k", 2),
            ("rloo_runs", 1),
        ):
            value = getattr(self, name)
            if value < low:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {low}; got {value}")
        if self.vocab_size**self.length > 100_000:
            raise ValueError(
                f"--vocab-size ** --length = {self.vocab_size}**{self.length} = {self.vocab_size**self.length} "
                "outputs; at most 100000 are enumerated"
            )
        if not (np.isfinite(self.kl_coef) and self.kl_coef >= 0):
            raise ValueError(f"--kl-coef must be >= 0; got {self.kl_coef}")


def run_theory(config: TheoryConfig) -> str:
    """Runs the chosen experiments, writes their files under ``config.out`` and returns a short report to print."""
    out = config.out
    options = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()}
    identity = {k: v for k, v in options.items() if k not in ("out", "overwrite")}
    # The same options again recompute the same numbers (every experiment is seeded), so they need no --resume.
    with open_run(
        out, command="theory", identity=identity, resume=False, overwrite=config.overwrite, outputs=OUTPUTS,
        rerun_continues=True,
    ):  # fmt: skip
        write_json_atomic(out / "config.json", options)
        return _run(config, out)


#: Top-level entries a theory run writes.
OUTPUTS = ("*.png", "*.csv", "summary.md")


def _run(config: TheoryConfig, out: Path) -> str:
    from rmteacher.theory import experiments, report

    chosen = EXPERIMENTS if config.experiment == "all" else (config.experiment,)
    sections = []
    lines = []
    for name in tqdm(chosen, desc="theory", unit="experiment", disable=len(chosen) == 1):
        rng = np.random.default_rng([config.seed, EXPERIMENTS.index(name)])  # one independent stream per experiment
        start = time.perf_counter()
        if name == "variance":
            variance = experiments.variance_experiment(
                rng,
                num_instances=config.num_instances,
                num_outputs=config.num_outputs,
                gamma=config.gamma,
                ar_bases=config.ar_bases,
                vocab_size=config.vocab_size,
                length=config.length,
            )
            sections.append(report.write_variance(variance, out))
            numbers = variance.numbers
            summary = (
                f"slope tabular {numbers['tabular_slope']:.3f}, autoregressive {numbers['ar_slope']:.3f}; above "
                f"bounds {numbers['tabular_fraction_above_bound']:.3f} / {numbers['ar_fraction_above_bound']:.3f}"
            )
        elif name == "accuracy":
            acc = experiments.accuracy_experiment(
                rng, num_reward_models=config.num_reward_models, num_outputs=config.num_outputs + 10, gamma=config.gamma
            )
            sections.append(report.write_accuracy(acc, out))
            summary = (
                f"Spearman with speed: variance {acc.numbers['spearman_variance']:.3f}, on-policy accuracy "
                f"{acc.numbers['spearman_on_policy_accuracy']:.3f}"
            )
        elif name == "constructions":
            constructions = experiments.constructions_experiment(rng)
            sections.append(report.write_constructions(constructions, out))
            t = constructions.table["t_gamma"]
            summary = f"t_gamma Thm 5 slow/fast {t[0]:.4g}/{t[1]:.4g}; Thm 6 2x2 {', '.join(f'{v:.4g}' for v in t[2:])}"
        elif name == "best-of-n":
            bon = experiments.best_of_n_experiment(rng)
            sections.append(report.write_best_of_n(bon, out))
            summary = f"t_gamma per reward model {', '.join(f'{v:.4g}' for v in bon.table['t_gamma'])}"
        else:
            practice = experiments.practice_experiment(
                rng, k=config.rloo_k, num_runs=config.rloo_runs, kl_coef=config.kl_coef, seed=config.seed
            )
            sections.append(report.write_practice(practice, out))
            pairs = zip(practice.table["flow_gt_increase"], practice.table["rloo_gt_increase"], strict=True)
            summary = f"ground-truth increase flow/RLOO {', '.join(f'{a:.3f}/{b:.3f}' for a, b in pairs)}"
        lines.append(f"{name}: {summary} ({time.perf_counter() - start:.1f} s)")
    header = (
        "# rmteacher theory\n\n"
        f"Exact gradient-flow simulations of Razin et al. (2025), seed {config.seed}; every number below is computed "
        "by this run (config.json holds the options).\n\n"
    )
    write_text_atomic(out / "summary.md", header + "\n".join(sections))
    return "\n".join([*lines, f"wrote {out / 'summary.md'}"])
