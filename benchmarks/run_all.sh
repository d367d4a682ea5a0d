#!/usr/bin/env bash
# Runs the timing benchmarks one after another, each one's output saved to OUT/<name>.txt, after waiting for a quiet
# machine (1-minute load average under MAX_LOAD, checked every minute for at most WAIT minutes).
#
# Run from the repository root:
#   benchmarks/run_all.sh [OUT]            # OUT defaults to runs/benchmarks; about 15-20 min on 2 quiet cores
#   QUICK=1 benchmarks/run_all.sh          # every benchmark's --quick smoke check, a few minutes
#   MAX_LOAD=0.3 WAIT=60 benchmarks/run_all.sh
# A benchmark prints no ratio when its runs spread by more than 10%: rerun it when the machine is quieter.
set -euo pipefail

OUT=${1:-runs/benchmarks}
MAX_LOAD=${MAX_LOAD:-0.5}
WAIT=${WAIT:-30}
PYTHON=${PYTHON:-.venv/bin/python}
FLAGS=()
[[ -n "${QUICK:-}" ]] && FLAGS=(--quick)
mkdir -p "$OUT"

for ((minute = 0; ; minute++)); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  awk -v l="$load" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }' && break
  if ((minute >= WAIT)); then
    echo "load $load still >= $MAX_LOAD after $WAIT min: running anyway; expect withheld ratios" >&2
    break
  fi
  echo "load $load >= $MAX_LOAD: waiting a minute ($minute/$WAIT)" >&2
  sleep 60
done

for name in bench_theory bench_bootstrap bench_evaluate bench_rl bench_budget; do
  echo "== $name ${FLAGS[*]:-}" >&2
  "$PYTHON" "benchmarks/$name.py" "${FLAGS[@]}" | tee "$OUT/$name.txt"
done
