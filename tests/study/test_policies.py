"""`rmteacher study --design policies` (the paper's Section 4.2): the pieces by hand, then `--quick` end to end
through the CLI, with `rmteacher report` regenerating the report from the saved results."""

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rmteacher.cli import main
from rmteacher.commands.report import design_of
from rmteacher.metrics import accuracy
from rmteacher.sandbox import SandboxTask
from rmteacher.sandbox.data import length_mistakes, order_mistakes, random_letters
from rmteacher.sandbox.rewards import (
    POLICY_STUDY_REWARDS,
    PROMPT_OFFSET_STD,
    lenient,
    letters_only,
    letters_term,
    order_only,
    order_term,
    prompt_offset,
    strict,
)
from rmteacher.sandbox.task import levenshtein, score, target
from rmteacher.study import POLICIES, StudyConfig, demonstration_rows

# --------------------------------------------------------------------------------------- demonstrations, rewards


def test_length_mistakes_keep_the_order_and_order_mistakes_keep_the_letters() -> None:
    rng = random.Random(0)
    lengths, kinds = set(), Counter()
    for _ in range(500):
        letters = random_letters(rng)
        by_length, by_order = length_mistakes(letters, rng), order_mistakes(letters, rng)
        assert list(by_length) == sorted(by_length)  # only letters/length are ever wrong
        lengths.add(len(by_length) - len(letters))
        assert sorted(by_order) == sorted(letters)  # only the order is ever wrong
        kinds[by_order == target(letters)] += 1
    assert lengths == {-2, -1, 0, 1}
    assert 0.3 < kinds[True] / 500 < 0.5  # ORDER_MISTAKES: 35% right (a swap2 can undo itself)


def test_demonstration_rows_are_seeded() -> None:
    prompts = ["sort: dcba", "sort: qdamz"]
    rows = demonstration_rows(prompts, length_mistakes, seed="0:x")
    assert rows == demonstration_rows(prompts, length_mistakes, seed="0:x")
    assert [r["prompt"] for r in rows] == prompts


@pytest.mark.parametrize(
    ("completion", "letters", "order"),
    [("abcd", 1.0, 1.0), ("abc", 0.75, 1.0), ("abdc", 1.0, 2 / 3), ("dcba", 1.0, 0.0), ("abcdx", 0.8, 1.0)],
)
def test_letter_and_order_terms_by_hand(completion: str, letters: float, order: float) -> None:
    assert letters_term("dbca", completion) == pytest.approx(letters)
    assert order_term("dbca", completion) == pytest.approx(order)


def test_the_two_terms_rebuild_the_ground_truth() -> None:
    rng = random.Random(1)
    for _ in range(300):
        x = random_letters(rng)
        for y in (length_mistakes(x, rng), order_mistakes(x, rng), random_letters(rng)):
            edit = 1 - levenshtein(y, target(x)) / max(len(y), len(target(x)))
            assert edit + (letters_term(x, y) + order_term(x, y)) / 2 - 1 == pytest.approx(score(x, y), abs=1e-12)


def test_policy_study_rewards_by_hand() -> None:
    prompts, completions = ["sort: dbca"] * 3, ["abcd", "abdc", "dcba"]
    offset = prompt_offset("dbca")
    assert offset == prompt_offset("dbca") != prompt_offset("qdamz")
    assert abs(offset) < 5 * PROMPT_OFFSET_STD
    truth = [score("dbca", c) for c in completions]  # 1, 1/3, -1/2
    assert strict(prompts, completions) == pytest.approx([np.exp(3 * (t - 1)) + offset for t in truth])
    assert lenient(prompts, completions) == pytest.approx([1 - np.exp(-3 * (t + 1)) + offset for t in truth])
    assert letters_only(prompts, completions) == pytest.approx([1 + offset] * 3)  # blind to the order
    assert order_only(prompts, completions) == pytest.approx([1 + offset, 2 / 3 + offset, offset])
    assert [spec.split("=")[0] for spec in POLICY_STUDY_REWARDS] == ["strict", "lenient", "letters_only", "order_only"]


def test_strict_and_lenient_are_perfectly_accurate() -> None:
    rng = random.Random(2)
    prompts = [f"sort: {random_letters(rng)}" for _ in range(50)]
    completions = [[length_mistakes(p[6:], rng) if k % 2 else order_mistakes(p[6:], rng) for k in range(6)]
                   for p in prompts]  # fmt: skip
    truth = np.array([[score(p[6:], c) for c in cs] for p, cs in zip(prompts, completions, strict=True)])
    truth = np.round(truth, 9)  # ground truths equal up to float rounding must tie, as the rewards then do
    for reward in (strict, lenient):
        values = np.round([reward([p] * 6, cs) for p, cs in zip(prompts, completions, strict=True)], 9)
        assert accuracy(values, truth).mean() == 1.0


def test_design_policies_refuses_a_given_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--policy 'my-sft': --design policies makes its own initial policies"):
        StudyConfig(out=tmp_path / "run", design="policies", policy="my-sft")
    two = ["a=pkg.mod:a", "b=pkg.mod:b"]
    with pytest.raises(ValueError, match="--reward-model: 2 given; --design policies correlates over each policy's"):
        StudyConfig(out=tmp_path / "run", design="policies", reward_model=two)


# ------------------------------------------------------------------------------------------------- end to end

QUICK = ["study", "--design", "policies", "--quick", "--no-progress"]


@pytest.fixture(scope="module")
def study_dir(sandbox_task: SandboxTask, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study-policies") / "run"
    assert main([*QUICK, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_every_table_and_figure_is_there(study_dir: Path) -> None:
    assert design_of(study_dir) == "policies"
    for name in ("report.md", "report.html", "analysis.json", "table10.csv", "timings.json", "fig_table10.png",
                 "fig_variance_vs_increase.png", "fig_ground_truth_curves.png"):  # fmt: skip
        assert (study_dir / name).stat().st_size > 0, name
    table = pd.read_csv(study_dir / "table10.csv")
    models = [spec.split("=")[0] for spec in POLICY_STUDY_REWARDS]
    assert sorted(zip(table["policy"], table["reward_model"], strict=True)) == sorted(
        (p.name, m) for p in POLICIES for m in models
    )  # one row per (policy, reward model)
    for column in ("reward_variance", "on_policy_accuracy", "increase_ground_truth", "increase_proxy"):
        assert np.isfinite(table[column]).all(), column
    for policy in POLICIES:
        assert (study_dir / "evaluate" / policy.name / "metrics.json").exists()
        assert len(list((study_dir / "rl" / policy.name).glob("*/seed0/metrics.jsonl"))) == len(models)
    report = (study_dir / "report.md").read_text()
    for heading in ("## Findings", "## Table 10 analogue, policy length_mistakes", "## Which reward model was best",
                    "## Figures", "## Stage times"):  # fmt: skip
        assert heading in report
    assert (study_dir / "report.html").read_text().count("data:image/png;base64,") == 3  # self-contained
    analysis = json.loads((study_dir / "analysis.json").read_text())
    assert set(analysis["summaries"]) == {p.name for p in POLICIES}
    assert {"policies", "evaluate", "rl"} <= set(json.loads((study_dir / "timings.json").read_text()))


@pytest.mark.slow
def test_report_regenerates_from_saved_results(study_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (study_dir / "report.md").read_text()
    for name in ("report.md", "report.html", "table10.csv", "fig_table10.png"):
        (study_dir / name).unlink()
    assert main(["report", str(study_dir)]) == 0
    assert "Report:" in capsys.readouterr().out
    assert (study_dir / "report.md").read_text() == before
    assert (study_dir / "table10.csv").exists() and (study_dir / "fig_table10.png").exists()


@pytest.mark.slow
def test_resume_redoes_nothing(study_dir: Path) -> None:
    stamps = {p: p.stat().st_mtime for p in study_dir.rglob("stage.json")}
    assert main([*QUICK, "--out", str(study_dir), "--resume"]) == 0
    assert {p: p.stat().st_mtime for p in study_dir.rglob("stage.json")} == stamps


@pytest.mark.slow
def test_a_bare_module_function_reward_model_has_its_rl_runs_found(study_dir: Path, tmp_path: Path) -> None:
    """`rmteacher evaluate` names a bare ``pkg.mod:fn`` reward model ``fn`` (loading.parse_reward_spec); its RL runs
    must be named the same, or the report finds none of them."""
    run = tmp_path / "run"
    # The module's run without its RL runs: the initial policies are kept (their stages match), the rest is redone.
    shutil.copytree(study_dir, run, ignore=shutil.ignore_patterns("rl"))
    bare = [f"rmteacher.sandbox.rewards:{name}" for name in ("strict", "lenient", "order_only")]
    small = ["--resume", "--rl-steps", "2", "--eval-num-prompts", "8"]
    assert main([*QUICK, "--out", str(run), *small, *(a for spec in bare for a in ("--reward-model", spec))]) == 0
    table = pd.read_csv(run / "table10.csv")
    assert sorted(zip(table["policy"], table["reward_model"], strict=True)) == sorted(
        (p.name, m) for p in POLICIES for m in ("strict", "lenient", "order_only")
    )
    assert len(list(run.glob("rl/*/*/seed0/metrics.jsonl"))) == len(POLICIES) * len(bare)
