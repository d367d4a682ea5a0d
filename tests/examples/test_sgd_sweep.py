"""examples/sgd_sweep.py: the rule that picks the study's SGD learning rate (by hand), and its check of --study."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "sgd_sweep.py"


@pytest.fixture(scope="module")
def sweep() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sgd_sweep", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sgd_sweep"] = module
    spec.loader.exec_module(module)
    return module


def table(rows: list[tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["learning_rate", "min", "std"])


def test_the_largest_stable_rate_is_chosen(sweep: ModuleType) -> None:
    # The sweep measured on build 0 (docs/guides/paper-end-to-end.md): 1e-3 has a seed below 0 and 3.6x the std of
    # 2.5e-4, 5e-4 has every seed above 0 and 1.38x: 5e-4.
    measured = table([(2.5e-4, 0.0069, 0.0107), (5e-4, 0.0151, 0.0148), (1e-3, -0.0119, 0.0382), (2e-3, -0.047, 0.046)])
    assert sweep.choose(measured) == 5e-4
    # Every seed up is not enough: the spread must stay within twice the smallest rate's (0.02 here).
    assert sweep.choose(table([(1e-4, 0.01, 0.01), (2e-4, 0.01, 0.019), (4e-4, 0.01, 0.021)])) == 2e-4
    # The order of the rows does not matter; the smallest rate's std is the reference.
    assert sweep.choose(table([(4e-4, 0.01, 0.021), (1e-4, 0.01, 0.01), (2e-4, 0.01, 0.019)])) == 2e-4
    with pytest.raises(ValueError, match=r"no learning rate of .* is stable; sweep smaller ones"):
        sweep.choose(table([(1e-3, -0.01, 0.01), (2e-3, -0.02, 0.05)]))


def test_a_study_without_its_evaluate_stage_is_refused(
    sweep: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(["--study", str(tmp_path), "--out", str(tmp_path / "sweep")])
    assert exit_info.value.code == 2
    assert "no evaluate/stage.json; run `rmteacher study --out" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()
