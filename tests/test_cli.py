"""End-to-end runs of `rmteacher metrics` and `rmteacher correlate`, and every bad-input path of the tables."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rmteacher.analysis import summarize_reward_model
from rmteacher.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_version_and_help_through_the_installed_script() -> None:
    done = subprocess.run([sys.executable, "-m", "rmteacher.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.startswith("rmteacher ")
    done = subprocess.run([sys.executable, "-m", "rmteacher.cli", "metrics", "--help"], capture_output=True, text=True)
    assert "--truth" in done.stdout


def test_metrics_on_shipped_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "m.json"
    code, out, _ = run(
        ["metrics", str(EXAMPLES / "rewards.csv"), "--truth", "ground_truth", "--json", str(out_json)], capsys
    )
    assert code == 0
    assert "rm_noisy" in out and "rm_accurate_flat" in out
    result = json.loads(out_json.read_text())["reward_models"]
    assert set(result) == {"rm_noisy", "rm_accurate_flat"}
    # The example's accurate-but-flat model orders every prompt like the truth, yet has far lower variance.
    flat, noisy = result["rm_accurate_flat"], result["rm_noisy"]
    assert flat["on_policy_accuracy"]["estimate"] == 1.0
    assert noisy["on_policy_accuracy"]["estimate"] < 0.9
    assert flat["reward_variance"]["high"] < noisy["reward_variance"]["low"]


def test_metrics_agree_with_library_across_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(EXAMPLES / "rewards.csv").sample(frac=1.0, random_state=0)  # row order must not matter
    frame.to_parquet(tmp_path / "r.parquet")
    frame.to_json(tmp_path / "r.jsonl", orient="records", lines=True)
    results = []
    for name in ("r.parquet", "r.jsonl"):
        code, _, _ = run(
            [
                "metrics",
                str(tmp_path / name),
                "--truth",
                "ground_truth",
                "--json",
                str(tmp_path / "o.json"),
                "--reward-column",
                "rm_noisy",
                "--num-resamples",
                "50",
                "--unbiased",
            ],
            capsys,
        )
        assert code == 0
        results.append(json.loads((tmp_path / "o.json").read_text())["reward_models"]["rm_noisy"])
    assert results[0] == results[1]
    ordered = pd.read_csv(EXAMPLES / "rewards.csv").sort_values(["prompt_id", "sample_id"])
    proxy = ordered["rm_noisy"].to_numpy().reshape(40, 8)
    truth = ordered["ground_truth"].to_numpy().reshape(40, 8)
    expected = summarize_reward_model(proxy, truth, unbiased=True, num_resamples=50)
    assert results[0]["reward_variance"]["estimate"] == pytest.approx(expected.reward_variance.estimate)
    assert results[0]["on_policy_accuracy"]["estimate"] == pytest.approx(expected.on_policy_accuracy.estimate)


def test_correlate_on_shipped_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["correlate", str(EXAMPLES / "table10_llama1b_instruct.csv"), "--json", str(tmp_path / "c.json")], capsys
    )
    assert code == 0
    assert "n = 4" in out
    table = json.loads((tmp_path / "c.json").read_text())
    # Llama-3.2-1B-Instruct (paper Table 10): proxy increase ranks exactly like the reward variance.
    assert table["reward_variance"]["increase_proxy"]["spearman"] == pytest.approx(1.0)
    assert set(table["reward_variance_and_accuracy"]) == {"increase_ground_truth", "increase_proxy"}


def test_config_file_supplies_options_and_rejects_unknown_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(f"rewards: {EXAMPLES / 'rewards.csv'}\ntruth: ground_truth\nnum-resamples: 20\n")
    code, out, _ = run(["metrics", "--config", str(good)], capsys)
    assert code == 0 and "on-policy accuracy" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("rewards: x.csv\ntruht: ground_truth\n")
    code, _, err = run(["metrics", "--config", str(bad)], capsys)
    assert code == 2
    assert "unknown option 'truht'; valid options:" in err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.csv", "", "the file is empty"),
        ("header.csv", "prompt_id,sample_id,rm\n", "the table has no rows"),
        ("bad.jsonl", '{"prompt_id": 0, "sample_id": 0, "rm": 1}\n{oops\n', r"bad.jsonl:2: not valid JSON"),
        (
            "col.csv",
            "prompt_id,sample_id,rm\n0,0,1\n0,1,2\n",
            "missing column\\(s\\) 'truth'; found 'prompt_id', 'sample_id'",
        ),
        ("dup.csv", "prompt_id,sample_id,rm,truth\n0,0,1,1\n0,0,2,2\n", "duplicate rows for prompt_id=0, sample_id=0"),
        (
            "nan.csv",
            "prompt_id,sample_id,rm,truth\n0,0,1,1\n0,1,,2\n",
            "non-numeric value nan at prompt_id=0, sample_id=1",
        ),
        ("ragged.csv", "prompt_id,sample_id,rm,truth\n0,0,1,1\n0,1,2,2\n1,0,1,1\n", "ragged groups"),
        ("one.csv", "prompt_id,sample_id,rm,truth\n0,0,1,1\n1,0,2,2\n", "needs at least 2 samples per prompt"),
        ("x.txt", "a", "unknown table format '.txt'"),
    ],
)
def test_metrics_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, message: str
) -> None:
    code, _, err = run(["metrics", write(tmp_path, name, text), "--truth", "truth"], capsys)
    assert code == 2
    assert "rmteacher metrics: error:" in err
    assert pytest.importorskip("re").search(message, err), err


def test_metrics_missing_file_and_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["metrics", str(tmp_path / "nope.csv")], capsys)
    assert code == 2 and "nope.csv: no such file or directory" in err
    code, _, err = run(["metrics", str(EXAMPLES / "rewards.csv"), "--confidence", "1.5"], capsys)
    assert code == 2 and "--confidence must be in (0, 1); got 1.5" in err
    code, _, err = run(["metrics"], capsys)
    assert code == 2 and "missing required option(s): REWARDS" in err
    with pytest.raises(SystemExit):
        main(["metrics", str(EXAMPLES / "rewards.csv"), "--num-resamples", "many"])
    assert "invalid int value: 'many'" in capsys.readouterr().err


def test_metrics_without_reward_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "t.csv", "prompt_id,sample_id,truth,text\n0,0,1,a\n0,1,2,b\n")
    code, _, err = run(["metrics", path, "--truth", "truth"], capsys)
    assert code == 2 and "no reward-model columns" in err


def test_correlate_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "t.csv", "reward_variance,on_policy_accuracy,increase\n0.1,0.5,1\n0.2,0.6,2\n0.3,0.7,3\n")
    code, _, err = run(["correlate", path], capsys)
    assert code == 2 and "missing column(s) 'off_policy_accuracy'" in err
    path = write(tmp_path, "u.csv", "reward_variance,on_policy_accuracy,off_policy_accuracy\n0.1,0.5,1\n")
    code, _, err = run(["correlate", path], capsys)
    assert code == 2 and "no increase columns" in err
    rows = "reward_variance,on_policy_accuracy,off_policy_accuracy,inc\n0.1,0.5,1,1\n0.2,0.6,2,2\n"
    code, _, err = run(["correlate", write(tmp_path, "v.csv", rows), "--increase", "inc"], capsys)
    assert code == 2 and "at least 3 reward models; got 2" in err


def test_same_numbers_from_seeded_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for i in range(2):
        run(
            [
                "metrics",
                str(EXAMPLES / "rewards.csv"),
                "--truth",
                "ground_truth",
                "--json",
                str(tmp_path / f"{i}.json"),
            ],
            capsys,
        )
        outputs.append((tmp_path / f"{i}.json").read_text())
    assert outputs[0] == outputs[1]
    assert np.isfinite(json.loads(outputs[0])["reward_models"]["rm_noisy"]["reward_variance"]["low"])
