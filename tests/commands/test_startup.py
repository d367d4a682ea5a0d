"""Start-up (issue 13): `metrics` and `correlate` never load the deep-learning stack.

Each check runs in a fresh interpreter, since this test process has imported torch already (tests/conftest.py).
"""

import json
import subprocess
import sys

from .conftest import EXAMPLES

HEAVY = ("torch", "transformers", "trl", "accelerate", "datasets")


def loaded_after(code: str) -> set[str]:
    """Modules, among those this test watches, in ``sys.modules`` after running ``code`` fresh."""
    watched = (*HEAVY, "pandas", "scipy", "scipy.stats")
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_commands_loads_no_heavy_module() -> None:
    """What the CLI needs to build the commands' options: not even pandas or scipy (`rmteacher --help`)."""
    assert loaded_after("import rmteacher.commands.metrics, rmteacher.commands.correlate") == set()


def test_running_the_commands_loads_no_deep_learning_module() -> None:
    code = f"""
from pathlib import Path
from rmteacher.commands.correlate import CorrelateConfig, run_correlate
from rmteacher.commands.metrics import MetricsConfig, run_metrics
run_metrics(MetricsConfig(rewards=Path({str(EXAMPLES / "rewards.csv")!r}), truth="ground_truth"))
run_correlate(CorrelateConfig(table=Path({str(EXAMPLES / "table10_pythia1b.csv")!r})))
"""
    assert loaded_after(code).isdisjoint(HEAVY)


def test_metrics_runs_without_scipy_stats() -> None:
    """Importing scipy.stats takes about 0.5 s; every interval of `metrics` is a vectorized bootstrap without it."""
    code = f"""
from pathlib import Path
from rmteacher.commands.metrics import MetricsConfig, run_metrics
run_metrics(MetricsConfig(rewards=Path({str(EXAMPLES / "rewards.csv")!r}), truth="ground_truth"))
"""
    loaded = loaded_after(code)
    assert "pandas" in loaded, "the check sees what the command imports"
    assert loaded.isdisjoint({*HEAVY, "scipy.stats"})
