"""Regenerates the documentation's figures (docs/assets/*.png) by running rmteacher itself; nothing is drawn by hand.

Run from the repository root (about 2 minutes on 2 CPU cores, most of it the sandbox build if it is not cached and
the quick study):

    OMP_NUM_THREADS=1 python docs/make_figures.py

It runs, each into a temporary directory:
  rmteacher evaluate                 -> variance_vs_accuracy.png   (the evaluate guide)
  rmteacher study --quick            -> fig_reward_increase.png    (the study's Figure 2 analogue)
                                        fig_ground_truth_vs_kl.png (the study's Figure 4 analogue)
  rmteacher theory constructions     -> theory_constructions.png   (the theory lab)
and copies the figures into docs/assets/, printing what it wrote. The quick study is a smoke test of the pipeline
(1 seed, 12 steps), not a result: the figures show what the report looks like, not the paper's findings.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"

# (command-line arguments after `rmteacher`, figure in the run directory, name under docs/assets)
RUNS: list[tuple[list[str], list[tuple[str, str]]]] = [
    (["evaluate", "--no-progress"], [("variance_vs_accuracy.png", "evaluate_variance_vs_accuracy.png")]),
    (
        ["study", "--quick", "--no-progress"],
        [
            ("fig_reward_increase.png", "study_reward_increase.png"),
            ("fig_ground_truth_vs_kl.png", "study_ground_truth_vs_kl.png"),
        ],
    ),
    (["theory", "constructions"], [("constructions.png", "theory_constructions.png")]),
]


def main() -> int:
    ASSETS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rmteacher-figures-") as tmp:
        for i, (args, figures) in enumerate(RUNS):
            out = Path(tmp) / f"run{i}"
            command = [sys.executable, "-m", "rmteacher.cli", *args, "--out", str(out)]
            print("$", " ".join(["rmteacher", *args, "--out", "..."]), flush=True)
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            for produced, name in figures:
                shutil.copyfile(out / produced, ASSETS / name)
                print(f"wrote docs/assets/{name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
