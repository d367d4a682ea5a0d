"""`rmteacher evaluate --budget auto` against `--budget fixed`: wall time, samples and ranking, over seeds.

Run from the repository root (``--quick``: 60 prompts x 4 samples in rounds of 20, one seed, for a smoke check):

    .venv/bin/python benchmarks/bench_budget.py [--seeds 237 1 2] [--num-prompts 500] [--threads 1]
        [--repeats 3] [--max-spread 0.1] [--quick]

For each seed, the default sandbox evaluation (``rmteacher evaluate`` with no inputs: Python-function rewards) at
``--num-prompts`` prompts x 10 samples, once with ``--budget fixed`` (every prompt) and once with ``--budget auto``
(rounds of ``--round-prompts`` prompts until adjacent reward models of the ranking are separated by their CIs, or
``--num-prompts`` is reached). Each run is a fresh process; the wall time is the process's. The samples and the
ranking come from each run's ``metrics.json``; auto's ranking is compared with fixed's at the full budget.

The goal of issue 13: auto faster in wall time than fixed in every seed where it uses fewer samples. Variants
alternate through ``benchmarks/_timing.py`` (every seed's fixed and auto in one rotation), each ``--repeats``
times; a ratio is printed only when both spreads are under ``--max-spread``.
"""

from __future__ import annotations

import _timing

# isort: split
import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

RMTEACHER = str(Path(sys.executable).with_name("rmteacher"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[237, 1, 2], help="evaluate's --seed values")
    parser.add_argument("--num-prompts", type=int, default=500, help="fixed's prompts, auto's most (the paper: 500)")
    parser.add_argument("--samples", type=int, default=10, help="samples per prompt (the paper: 10)")
    parser.add_argument("--round-prompts", type=int, default=50, help="prompts per round of --budget auto")
    parser.add_argument("--threads", type=int, default=1, help="evaluate's --cpu-threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (>= 3), alternating")
    parser.add_argument("--max-spread", type=float, default=_timing.MAX_SPREAD, help="withhold ratios above this")
    parser.add_argument("--quick", action="store_true", help="60 prompts x 4 samples in rounds of 20, one seed")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.num_prompts, args.samples, args.round_prompts = args.seeds[:1], 60, 4, 20

    from rmteacher import sandbox

    sandbox.build(progress=False)  # build (or find) the cache before timing anything
    scratch = Path(tempfile.mkdtemp(prefix="bench_budget-"))
    outcomes: dict[str, list[dict[str, Any]]] = {}

    def variant(seed: int, budget: str) -> Callable[[], None]:
        def run() -> None:
            out = scratch / f"{budget}-{seed}-{len(outcomes.setdefault(f'{budget} {seed}', []))}"
            command = [RMTEACHER, "evaluate", "--out", str(out), "--seed", str(seed), "--budget", budget,
                       "--num-prompts", str(args.num_prompts), "--samples-per-prompt", str(args.samples),
                       "--round-prompts", str(args.round_prompts), "--cpu-threads", str(args.threads),
                       "--no-progress"]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, env=_timing.child_env(args.threads))
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
            metrics = json.loads((out / "metrics.json").read_text())
            outcomes[f"{budget} {seed}"].append({**metrics["budget"], "order": metrics["ranking"]["order"]})

        return run

    settings = (f"sandbox evaluate, {args.num_prompts} prompts x {args.samples} samples, auto in rounds of "
                f"{args.round_prompts}, seeds {args.seeds}, --cpu-threads {args.threads}")  # fmt: skip
    _timing.header("bench_budget: evaluate --budget auto vs fixed", threads=args.threads, settings=settings)
    variants = {f"{budget} {seed}": variant(seed, budget) for seed in args.seeds for budget in ("fixed", "auto")}
    results = _timing.alternate(variants, repeats=args.repeats)
    verdicts = []
    for seed in args.seeds:
        fixed, auto = outcomes[f"fixed {seed}"][0], outcomes[f"auto {seed}"][0]
        same = auto["order"] == fixed["order"]
        print(f"\nseed {seed}: auto used {auto['prompts']} of {fixed['prompts']} prompts "
              f"({auto['samples_per_reward_model'] / fixed['samples_per_reward_model']:.0%} of the samples) in "
              f"{auto['rounds']} round(s), ranking separated: {auto['ranking_separated']}; same ranking as fixed: "
              f"{'yes' if same else 'no'} ({' > '.join(auto['order'])})")  # fmt: skip
        slow, fast = results[f"fixed {seed}"]["wall"], results[f"auto {seed}"]["wall"]
        _timing.print_measures({f"fixed, seed {seed}": slow, f"auto, seed {seed}": fast})
        ratio = _timing.print_ratio(f"seed {seed}: fixed / auto wall time", slow, fast, max_spread=args.max_spread)
        fewer = auto["samples_per_reward_model"] < fixed["samples_per_reward_model"]
        verdicts.append((seed, fewer, ratio))
    print("\ngoal (auto faster than fixed wherever it uses fewer samples):")
    for seed, fewer, ratio in verdicts:
        if not fewer:
            verdict = "auto used every sample: the goal does not apply"
        elif ratio is None:
            verdict = "unknown (busy machine, no ratio)"
        else:
            verdict = f"{'met' if ratio > 1 else 'NOT met'} (fixed / auto = {ratio:.2f}x)"
        print(f"  seed {seed}: {verdict}")
    _timing.footer()


if __name__ == "__main__":
    main()
