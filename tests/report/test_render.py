"""Report blocks rendered to markdown and self-contained HTML, on a tiny hand-made input; reading RL evaluations."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from rmteacher.power import with_power
from rmteacher.report.render import (
    blocks_to_html,
    blocks_to_markdown,
    format_number,
    machine_text,
    read_evaluations,
    read_json,
    read_seed_curves,
    verdict_table,
)

PNG = base64.b64decode(  # a 1x1 transparent PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@pytest.fixture
def blocks(tmp_path: Path) -> list[tuple[str, object]]:
    (tmp_path / "fig.png").write_bytes(PNG)
    return [
        ("h1", "Title"),
        ("p", "A <b>bold</b> & claim."),
        ("h2", "Table"),
        ("table", [["", "a", "b"], ["Var", "0.100", "0.200"]]),
        ("img", (tmp_path / "fig.png", "A caption")),
    ]


def test_markdown_by_hand(blocks: list[tuple[str, object]], tmp_path: Path) -> None:
    assert blocks_to_markdown(blocks, tmp_path) == "\n".join(
        [
            "# Title",
            "",
            "A <b>bold</b> & claim.",
            "",
            "## Table",
            "",
            "|     |   a |   b |",
            "|-----|-----|-----|",
            "| Var | 0.1 | 0.2 |",
            "",
            "![A caption](fig.png)",
            "",
            "*A caption*",
            "",
        ]
    )


def test_html_is_escaped_and_self_contained(blocks: list[tuple[str, object]]) -> None:
    page = blocks_to_html(blocks)
    assert page.startswith("<!doctype html>") and page.endswith("</body></html>")
    assert "<h1>Title</h1>" in page
    assert "<p>A &lt;b&gt;bold&lt;/b&gt; &amp; claim.</p>" in page
    assert "<table><tr><th></th><th>a</th><th>b</th></tr><tr><td>Var</td><td>0.100</td><td>0.200</td></tr></table>" in (
        page
    )
    assert f"<img src='data:image/png;base64,{base64.b64encode(PNG).decode()}'>" in page
    assert "<figcaption>A caption</figcaption>" in page


def test_an_unknown_block_kind_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match="a report block of kind 'h3'; the kinds are h1, h2, p, table, verdicts and img"
    ):
        blocks_to_markdown([("h3", "x")], tmp_path)
    with pytest.raises(ValueError, match="a report block of kind 'h3'"):
        blocks_to_html([("h3", "x")])


def test_format_number() -> None:
    assert (format_number(0.12345), format_number(-1.0), format_number(None)) == ("0.123", "-1.000", "nan")


def _write_run(path: Path, records: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_read_evaluations_keeps_the_last_record_of_a_step(tmp_path: Path) -> None:
    path = _write_run(
        tmp_path / "metrics.jsonl",
        [
            {"event": "eval", "step": 0, "kl": 0.0},
            {"event": "train", "step": 1, "loss": 3.0},
            {"event": "eval", "step": 2, "kl": 9.0},  # interrupted, then resumed: the step evaluated again
            {"event": "eval", "step": 2, "kl": 0.5},
        ],
    )
    evals = read_evaluations(path)
    assert evals["step"].tolist() == [0, 2]
    assert evals["kl"].tolist() == [0.0, 0.5]
    _write_run(tmp_path / "none.jsonl", [{"event": "train", "step": 1}])
    with pytest.raises(ValueError, match=r"none\.jsonl: no evaluation records"):
        read_evaluations(tmp_path / "none.jsonl")


def test_read_seed_curves_stacks_the_steps_every_seed_reached(tmp_path: Path) -> None:
    first = _write_run(tmp_path / "seed0.jsonl", [{"event": "eval", "step": s, "kl": s} for s in (0, 5, 10)])
    second = _write_run(tmp_path / "seed1.jsonl", [{"event": "eval", "step": s, "kl": 2 * s} for s in (0, 5)])
    steps, stacked = read_seed_curves([first, second], ["kl"])
    assert steps == [0, 5]
    np.testing.assert_array_equal(stacked["kl"], [[0, 5], [0, 10]])  # [seeds, steps]


def test_read_json_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_json(tmp_path / "timings.json") == {}
    (tmp_path / "timings.json").write_text('{"rl": 1.5}')
    assert read_json(tmp_path / "timings.json") == {"rl": 1.5}


# --------------------------------------------------------------------------------- verdict table, machine


def test_verdict_table_rows_and_colours(tmp_path: Path) -> None:
    from rmteacher.power import welch_seeds_needed
    from rmteacher.significance import finding_low_variance_vs_ground_truth, increase_interval

    a, b = [0.10, 0.12, 0.11], [0.12, 0.13, 0.10]
    inconclusive = finding_low_variance_vs_ground_truth(a, b)
    power = welch_seeds_needed(increase_interval(a), increase_interval(b))
    tests = [
        finding_low_variance_vs_ground_truth([0.1, 0.11, 0.12], [0.3, 0.31, 0.32]).to_dict(),
        with_power(inconclusive, power).to_dict(),
        with_power(
            finding_low_variance_vs_ground_truth([0.1], [0.2]),
            welch_seeds_needed(increase_interval([0.1]), increase_interval([0.2])),
        ).to_dict(),
        finding_low_variance_vs_ground_truth([0.1, 0.2], [0.15, 0.2]).to_dict(),  # no power attached
    ]
    rows = verdict_table(tests)
    assert rows[0] == ["claim", "verdict", "observed effect", "p", "seeds per model for 80% power"]
    assert rows[1][:2] == ["low-variance model < ground truth", "reproduces"] and rows[1][4] == "-"
    assert rows[2][1:] == ["inconclusive", "+0.007", f"{inconclusive.p_value:.2g}", str(power.seeds_needed)]
    assert rows[3][1:] == ["inconclusive", "+0.100", "needs at least 2 seeds for a test", "needs at least 2 seeds"]
    assert rows[4][4] == "not computed"
    html = blocks_to_html([("verdicts", rows)])
    assert "<td style='background:#d4edda'>reproduces</td>" in html
    assert html.count("<td style='background:#fff3cd'>inconclusive</td>") == 3
    assert "| low-variance model < ground truth | reproduces" in blocks_to_markdown([("verdicts", rows)], tmp_path)


def test_machine_paragraph(tmp_path: Path) -> None:
    assert machine_text(tmp_path) == "Machine: not recorded (a study run before rmteacher recorded it)."
    epyc = {"cpu": "AMD EPYC 7B13", "usable_cores": 2, "flags": ["avx512f", "avx2", "fma", "f16c", "avx"],
            "flags_absent": ["amx_tile"], "torch": "2.13.0+cpu", "cuda": None, "numpy": "2.3.4", "python": "3.11.9",
            "os": "Linux 6.8", "torch_threads": 1, "workers": 2, "date": "2026-12-06 21:00 UTC"}  # fmt: skip
    (tmp_path / "machine.json").write_text(json.dumps({"machines": [epyc]}))
    assert machine_text(tmp_path) == (
        "Machine: AMD EPYC 7B13 (2 usable cores; avx512f, avx2, fma, f16c, avx; no AMX), torch 2.13.0+cpu, numpy "
        "2.3.4, Python 3.11.9, Linux 6.8; 1 torch thread in each of 2 worker processes; ran 2026-12-06 21:00 UTC."
    )
    xeon = {**epyc, "cpu": "Intel Xeon", "flags": ["amx_tile", "amx_bf16", "avx512f"], "workers": 1}
    (tmp_path / "machine.json").write_text(json.dumps({"machines": [epyc, xeon]}))
    text = machine_text(tmp_path)
    assert text.startswith(
        "Machines: this study's stages ran in 2 set-ups in turn (resumed on another machine or with other settings): "
        "(1) AMD EPYC"
    )
    assert "(2) Intel Xeon (2 usable cores; amx_tile, amx_bf16, avx512f)" in text


def test_record_machine_adds_a_machine_only_when_it_changes(tmp_path: Path) -> None:
    from rmteacher.study.stages import record_machine

    record_machine(tmp_path, cpu_threads=1, workers=2)
    record_machine(tmp_path, cpu_threads=1, workers=2)  # the same machine again: one entry
    machines = read_json(tmp_path / "machine.json")["machines"]
    assert len(machines) == 1 and machines[0]["workers"] == 2 and machines[0]["torch_threads"] == 1
    import torch

    assert machines[0]["torch"] == torch.__version__ and machines[0]["cpu"]
    record_machine(tmp_path, cpu_threads=1, workers=1)
    assert [m["workers"] for m in read_json(tmp_path / "machine.json")["machines"]] == [2, 1]
