"""`rmteacher study --workers 1` against `--workers 2`: wall time of the whole study, and that the numbers agree.

Run from the repository root:

    .venv/bin/python benchmarks/bench_study_workers.py            # the default study, issue 19's target (about
                                                                  # 6 runs x 5-13 min on 2 quiet cores)
    .venv/bin/python benchmarks/bench_study_workers.py --quick    # the quick study (6 runs x 2-4 min)
    .venv/bin/python benchmarks/bench_study_workers.py --repeats 3 --workers 1 2

Each run is `rmteacher study [--quick] --workers N --no-progress` in its own process with a fresh ``--out``, one
torch thread per process (``--cpu-threads 1``, the study's default) and the built-in sandbox task, built once
before anything is timed. Variants alternate through ``benchmarks/_timing.py`` (A B A B ...); the ratio is printed
only when both spreads are under ``--max-spread``. Measured per run: the process's wall time, the largest resident
set of any process of the run (``RUSAGE_CHILDREN``'s ``ru_maxrss``: the command or one of its workers, the number
behind the default's memory rule in :mod:`rmteacher.study.workers`), and whether its ``analysis.json`` equals the
first run's (the numbers must not depend on the number of workers). Issue 19's goal: ``--workers 2`` at most 0.6x
the wall time of ``--workers 1`` on 2 cores.
"""

from __future__ import annotations

import _timing

# isort: split
import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick study (`study --quick`) instead of the default")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="the variants (default: 1 2)")
    parser.add_argument("--seeds", type=int, default=None, help="the study's --seeds (default: the study's own)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--max-spread", type=float, default=_timing.MAX_SPREAD)
    args = parser.parse_args()

    study = ["study", "--no-progress", "--cpu-threads", "1", *(["--quick"] if args.quick else [])]
    study += ["--seeds", str(args.seeds)] if args.seeds is not None else []
    _timing.header(
        f"rmteacher study{' --quick' if args.quick else ''}: --workers {' vs '.join(map(str, args.workers))}",
        threads=1,
        settings=f"rmteacher {' '.join(study)} --workers N, a fresh --out per run, the built-in sandbox task (seed 0)",
    )
    subprocess.run([sys.executable, "-c", "from rmteacher import sandbox; sandbox.build(progress=False)"], check=True)

    scratch = Path(tempfile.mkdtemp(prefix="bench_study_workers_"))
    analyses: dict[int, list[dict[str, object]]] = {n: [] for n in args.workers}
    peak: dict[int, list[float]] = {n: [] for n in args.workers}
    counter = iter(range(10**6))

    def variant(workers: int):  # type: ignore[no-untyped-def]
        def run() -> None:
            out = scratch / f"w{workers}-{next(counter)}"
            command = [sys.executable, "-m", "rmteacher.cli", *study, "--workers", str(workers), "--out", str(out)]
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            subprocess.run(command, check=True, env=_timing.child_env(1), stdout=subprocess.DEVNULL)
            peak[workers].append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 2**20)
            analyses[workers].append(json.loads((out / "analysis.json").read_text()))

        return run

    results = _timing.alternate(
        {f"--workers {n}": variant(n) for n in args.workers}, repeats=args.repeats, warmup=args.warmup
    )
    for measures in results.values():
        _timing.print_measures({m.label: m for m in measures.values()})
    slow, *others = args.workers
    for other in others:
        _timing.print_ratio(
            f"wall time --workers {other} / --workers {slow}",
            results[f"--workers {other}"]["wall"],
            results[f"--workers {slow}"]["wall"],
            max_spread=args.max_spread,
        )
    first = analyses[slow][0]
    identical = all(a == first for runs in analyses.values() for a in runs)
    print(
        f"  analysis.json identical across all {sum(map(len, analyses.values()))} runs: {'yes' if identical else 'NO'}"
    )
    for n, values in peak.items():
        print(f"  --workers {n}: largest resident set of any process so far {max(values):.2f} GiB (ru_maxrss)")
    _timing.footer()


if __name__ == "__main__":
    main()
