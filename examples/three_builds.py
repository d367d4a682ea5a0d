"""Runs `rmteacher study` on three builds of the built-in sandbox and writes one table of the findings' tests.

A finding should hold on another machine and another sandbox build, not only on the one it was first seen on: each
build (``--sandbox-seed 0, 1, 2``) draws its own data, fine-tunes its own initial policy and trains its own reward
models, and the study's report tests every Section 4.1 claim on it (:mod:`rmteacher.significance`). This script
runs the three studies (each resumable: run it again to finish an interrupted one) and collects, per claim and
build, the verdict and the number the test quotes into ``<out>/three_builds.md`` and ``three_builds.csv``.

Run: ``python examples/three_builds.py --out runs/three-builds`` (about 35 minutes on 2 CPU cores at the default 12
seeds and 2 workers; not part of ``make test``). Extra arguments after ``--`` go to every ``rmteacher study`` call.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from rmteacher.tables import LOW_VARIANCE, TRUTH, write_text_atomic

SEEDS = (0, 1, 2)


def short(test: dict[str, object]) -> tuple[str, str]:
    """A test's claim without the run-specific part (which model was best goes to the cell) and its verdict with
    the number it rests on: the p-value, or the gap for the test without one."""
    p = test["p_value"]
    details = test["details"]
    claim = str(test["claim"])
    assert isinstance(details, dict)
    number = f"gap {details['gap']:+.3f}" if "gap" in details else f"p = {p:.3g}" if isinstance(p, float) else ""
    if "best" in details:  # "... the best trained reward model (rm_50, the highest mean of 5)[, under plain SGD ...]"
        claim = re.sub(r" \([^)]*\)", "", claim, count=1)
        number = f"best {details['best']}, {number}"
    return claim, f"{test['verdict']} ({number})"


def summary(out: Path, seeds: tuple[int, ...]) -> pd.DataFrame:
    rows: dict[str, dict[str, str]] = {}
    for seed in seeds:
        analysis = json.loads((out / f"build{seed}" / "analysis.json").read_text())
        column = f"build {seed}"
        for test in analysis["tests"]:
            claim, cell = short(test)
            rows.setdefault(claim, {})[column] = cell
        sgd = analysis.get("sgd") or {"table": []}
        for row, arm in [(r, "") for r in analysis["table"]] + [(r, " under plain SGD") for r in sgd["table"]]:
            name = row["reward_model"] if arm == "" or row["reward_model"] in (TRUTH, LOW_VARIANCE) else "best trained"
            claim = f"ground-truth increase of {name} after {analysis['table_step']} steps{arm}"
            rows.setdefault(claim, {})[column] = (
                f"{row['increase_ground_truth']:+.3f} ± {row['increase_ground_truth_std']:.3f}"
            )
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "claim"
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/three-builds"))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="sandbox builds, comma-separated")
    parser.add_argument("study_args", nargs="*", help="passed to every `rmteacher study` (after --)")
    args = parser.parse_args(argv)
    try:
        seeds = tuple(int(s) for s in args.seeds.split(","))
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give sandbox build seeds as non-negative integers, e.g. 0,1,2")
    if not seeds or min(seeds) < 0:
        parser.error(f"--seeds {args.seeds!r}: give sandbox build seeds as non-negative integers, e.g. 0,1,2")
    for seed in seeds:
        out = args.out / f"build{seed}"
        command = [
            sys.executable,
            "-m",
            "rmteacher.cli",
            "study",
            "--sandbox-seed",
            str(seed),
            "--out",
            str(out),
            "--resume",
            *args.study_args,
        ]
        print("$", " ".join(command), file=sys.stderr, flush=True)
        subprocess.run(command, check=True)
    table = summary(args.out, seeds)
    write_text_atomic(args.out / "three_builds.csv", table.to_csv())
    write_text_atomic(args.out / "three_builds.md", table.to_markdown() + "\n")
    print(table.to_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
