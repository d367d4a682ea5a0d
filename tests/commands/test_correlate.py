"""`rmteacher correlate` end to end through the CLI, and the tables and options it must refuse."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rmteacher.commands.correlate import CorrelateConfig, numeric_column, run_correlate
from rmteacher.tables import TableError

from .conftest import EXAMPLES, Run

HEADER = "reward_model,reward_variance,on_policy_accuracy,off_policy_accuracy,increase\n"


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_correlate_on_shipped_example(tmp_path: Path, cli: Run) -> None:
    code, out, err = cli(
        ["correlate", str(EXAMPLES / "table10_llama1b_instruct.csv"), "--json", str(tmp_path / "c.json")]
    )
    assert (code, err) == (0, "")
    assert "n = 4" in out
    table = json.loads((tmp_path / "c.json").read_text())
    # Llama-3.2-1B-Instruct (paper Table 10): proxy increase ranks exactly like the reward variance.
    assert table["reward_variance"]["increase_proxy"]["spearman"] == pytest.approx(1.0)
    assert set(table["reward_variance_and_accuracy"]) == {"increase_ground_truth", "increase_proxy"}


def test_chosen_increase_column(tmp_path: Path, cli: Run) -> None:
    path = EXAMPLES / "table10_pythia1b.csv"
    code, out, _ = cli(["correlate", str(path), "--increase", "increase_proxy", "--json", str(tmp_path / "c.json")])
    assert code == 0 and "increase_ground_truth" not in out
    assert set(json.loads((tmp_path / "c.json").read_text())["reward_variance"]) == {"increase_proxy"}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "A,0.1,0.5,0.6,1\nB,0.2,abc,0.7,2\nC,0.3,0.7,0.8,3\n",
            r"column 'on_policy_accuracy' has a non-numeric .* 'abc' at row 2 \(reward_model='B'\)",
        ),
        (
            "A,0.1,0.5,0.6,1\nB,0.2,0.6,,2\nC,0.3,0.7,0.8,3\n",
            r"column 'off_policy_accuracy' has a non-numeric or non-finite value nan at row 2 \(reward_model='B'\)",
        ),
        (
            "A,0.1,0.5,0.6,1\nB,0.2,0.6,0.7,2\nC,0.3,0.7,0.8,inf\n",
            r"column 'increase' has a non-numeric or non-finite value inf at row 3 \(reward_model='C'\)",
        ),
    ],
)
def test_a_cell_that_is_not_a_number_names_column_and_row(tmp_path: Path, cli: Run, rows: str, message: str) -> None:
    """Before: `could not convert string to float: 'abc'`, naming no column."""
    code, out, err = cli(["correlate", write(tmp_path, "t.csv", HEADER + rows)])
    assert (code, out) == (2, "")
    assert re.search(r"^rmteacher correlate: error: .*t\.csv: " + message, err), err


def test_numeric_column_without_a_name_column() -> None:
    frame = pd.DataFrame({"increase": [1.0, "x", 3.0]})
    with pytest.raises(
        TableError, match=r"^t\.csv: column 'increase' has a non-numeric or non-finite value 'x' at row 2;"
    ):
        numeric_column(frame, "increase", where="t.csv")
    np.testing.assert_array_equal(numeric_column(frame.iloc[[0, 2]], "increase", where="t.csv"), [1.0, 3.0])


def test_unknown_or_repeated_increase_column(tmp_path: Path, cli: Run) -> None:
    path = str(EXAMPLES / "table10_pythia1b.csv")
    code, out, err = cli(["correlate", path, "--increase", "increase_prxy"])
    assert (code, out) == (2, "")
    assert f"--increase 'increase_prxy' is not a column of {path}; valid: 'reward_model', 'reward_variance'" in err
    code, _, err = cli(["correlate", path, "--increase", "increase_proxy", "--increase", "increase_proxy"])
    assert code == 2 and "--increase names 'increase_proxy' more than once; give each once" in err
    with pytest.raises(ValueError, match="--increase names 'a' more than once"):
        CorrelateConfig(table=Path(path), increase=["a", "a"])


def test_correlate_bad_tables(tmp_path: Path, cli: Run) -> None:
    path = write(tmp_path, "t.csv", "reward_variance,on_policy_accuracy,increase\n0.1,0.5,1\n0.2,0.6,2\n0.3,0.7,3\n")
    code, _, err = cli(["correlate", path])
    assert code == 2 and "missing column(s) 'off_policy_accuracy'" in err
    path = write(tmp_path, "u.csv", "reward_variance,on_policy_accuracy,off_policy_accuracy\n0.1,0.5,1\n")
    code, _, err = cli(["correlate", path])
    assert code == 2 and "no increase columns" in err
    rows = "reward_variance,on_policy_accuracy,off_policy_accuracy,inc\n0.1,0.5,1,1\n0.2,0.6,2,2\n"
    code, _, err = cli(["correlate", write(tmp_path, "v.csv", rows), "--increase", "inc"])
    assert code == 2 and "at least 3 reward models; got 2" in err


def test_json_path_that_is_a_directory_under_a_file_or_the_input(tmp_path: Path, cli: Run) -> None:
    """Before: IsADirectoryError / FileExistsError tracebacks."""
    table = EXAMPLES / "table10_pythia1b.csv"
    code, out, err = cli(["correlate", str(table), "--json", str(tmp_path)])
    assert (code, out) == (2, "")
    assert f"--json {tmp_path} is a directory; give the path of a file to write" in err
    (tmp_path / "f").write_text("x")
    code, _, err = cli(["correlate", str(table), "--json", str(tmp_path / "f" / "c.json")])
    assert code == 2 and f"{tmp_path / 'f'} is a file, not a directory" in err
    with pytest.raises(ValueError, match="is the input table itself"):
        CorrelateConfig(table=table, json=table)


def test_json_write_failure_names_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, data: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("rmteacher.tables.write_json_atomic", refuse)
    config = CorrelateConfig(table=EXAMPLES / "table10_pythia1b.csv", json=tmp_path / "c.json")
    with pytest.raises(ValueError, match=r"^--json .*c\.json: cannot write it \(No space left on device\)$"):
        run_correlate(config)
