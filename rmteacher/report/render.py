"""What every study report shares: reading RL runs' evaluations, and rendering blocks to markdown and HTML.

A report is a list of ``(kind, content)`` blocks, rendered alike to ``report.md`` and a self-contained
``report.html`` (figures inlined as base64 PNG). Kinds: ``h1``/``h2``/``p`` (text), ``table`` (a list of rows,
the first the header), ``verdicts`` (a table whose ``verdict`` column is coloured in HTML) and ``img``
(``(path, caption)``). Used by :mod:`rmteacher.report.reward_models` and
:mod:`rmteacher.report.policies`; run ``rmteacher report RUN_DIR``.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rmteacher.significance import Power

__all__ = [
    "Block",
    "blocks_to_html",
    "blocks_to_markdown",
    "format_number",
    "machine_text",
    "pyplot",
    "read_evaluations",
    "read_json",
    "read_seed_curves",
    "verdict_table",
]

#: One block of a report: ``(kind, content)``, see the module docstring.
Block = tuple[str, Any]


def read_evaluations(path: Path) -> pd.DataFrame:
    """The evaluation records of one RL run (``metrics.jsonl``); the last record of a step wins (resumed runs)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    evals = pd.DataFrame([r for r in rows if r.get("event") == "eval"])
    if evals.empty:
        raise ValueError(f"{path}: no evaluation records")
    return evals.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def read_seed_curves(paths: Sequence[Path], keys: Sequence[str]) -> tuple[list[int], dict[str, np.ndarray]]:
    """The evaluations of several seeds of one RL run at the steps all of them reached.

    Returns:
        ``(steps, {key: values})`` with ``values: [num_seeds, num_steps]``.
    """
    frames = [read_evaluations(path) for path in paths]
    steps = sorted(set.intersection(*(set(f["step"]) for f in frames)))
    return steps, {key: np.array([f.set_index("step").loc[steps, key].to_numpy() for f in frames]) for key in keys}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file of the run directory, or ``{}`` where there is none (e.g. ``timings.json`` of an old run)."""
    return json.loads(path.read_text()) if path.exists() else {}


def format_number(value: float | None) -> str:
    """Three decimals; ``nan`` for a missing value (an undefined correlation)."""
    return "nan" if value is None else f"{value:.3f}"


def pyplot() -> Any:
    """``matplotlib.pyplot`` drawing without a display (imported on first use: reports are the only plotters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: The verdicts as the verdict table shows them, with their colours in the HTML report.
VERDICT_CELLS = {
    "reproduces": ("reproduces", "#d4edda"),
    "inconclusive at this budget": ("inconclusive", "#fff3cd"),
    "does not reproduce": ("does not reproduce", "#f8d7da"),
}
VERDICT_HEADER = ["claim", "verdict", "observed effect", "p", "seeds per model for 80% power"]


def verdict_table(tests: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The findings' verdict table (a ``verdicts`` block): one row per claim, from the saved findings
    (``analysis.json``'s ``tests``, :class:`rmteacher.significance.Finding` dicts)."""
    rows = [list(VERDICT_HEADER)]
    for test in tests:
        power = test.get("power")
        p = test["p_value"]
        if p is not None:
            p_cell = f"{p:.1e}" if p < 1e-3 else f"{p:.2g}"
        elif "needs at least 2 seeds for a test" in test["sentence"]:
            p_cell = "needs at least 2 seeds for a test"
        elif test["test"] == "non-overlapping CIs and a minimum gap":
            p_cell = "CIs over prompts"
        else:
            p_cell = "undefined"
        if power is not None:
            seeds_cell = Power(**power).cell()
        else:
            seeds_cell = "not computed" if test["verdict"] == "inconclusive at this budget" else "-"
        rows.append([test["label"] or test["claim"], VERDICT_CELLS[test["verdict"]][0], test["effect"], p_cell,
                     seeds_cell])  # fmt: skip
    return rows


def machine_text(run_dir: Path) -> str:
    """Where the study ran (``machine.json``, :func:`rmteacher.study.stages.record_machine`), as a paragraph."""
    from rmteacher.machine import machine_text as one

    machines = read_json(run_dir / "machine.json").get("machines", [])
    if not machines:
        return "Machine: not recorded (a study run before rmteacher recorded it)."
    if len(machines) == 1:
        return f"Machine: {one(machines[0])}; ran {machines[0]['date']}."
    listed = "; ".join(f"({i}) {one(m)}, from {m['date']}" for i, m in enumerate(machines, 1))
    return (
        f"Machines: this study's stages ran in {len(machines)} set-ups in turn (resumed on another machine or with "
        f"other settings): {listed}."
    )


def blocks_to_markdown(blocks: Sequence[Block], run_dir: Path) -> str:
    """GitHub markdown; images are linked relative to ``run_dir``, where ``report.md`` is written."""
    from tabulate import tabulate

    out = []
    for kind, content in blocks:
        if kind == "h1":
            out.append(f"# {content}")
        elif kind == "h2":
            out.append(f"## {content}")
        elif kind == "p":
            out.append(str(content))
        elif kind in ("table", "verdicts"):
            out.append(tabulate(content[1:], headers=content[0], tablefmt="github"))
        elif kind == "img":
            path, caption = content
            out.append(f"![{caption}]({Path(path).relative_to(run_dir)})\n\n*{caption}*")
        else:
            raise ValueError(_unknown(kind))
        out.append("")
    return "\n".join(out)


def blocks_to_html(blocks: Sequence[Block]) -> str:
    """One self-contained HTML page: text escaped, images inlined as base64 PNG."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>rmteacher study</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "font-size:0.9em}img{max-width:100%}</style></head><body>"
    ]
    for kind, content in blocks:
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{html.escape(str(content))}</{kind}>")
        elif kind == "table":
            header = "".join(f"<th>{html.escape(str(c))}</th>" for c in content[0])
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in content[1:]
            )
            parts.append(f"<table><tr>{header}</tr>{body}</table>")
        elif kind == "verdicts":  # the verdict column coloured
            column = content[0].index("verdict")
            colours = {cell: colour for cell, colour in VERDICT_CELLS.values()}
            header = "".join(f"<th>{html.escape(str(c))}</th>" for c in content[0])
            body = "".join(
                "<tr>"
                + "".join(
                    f"<td style='background:{colours[c]}'>{html.escape(c)}</td>"
                    if i == column and c in colours
                    else f"<td>{html.escape(str(c))}</td>"
                    for i, c in enumerate(row)
                )
                + "</tr>"
                for row in content[1:]
            )
            parts.append(f"<table class='verdicts'><tr>{header}</tr>{body}</table>")
        elif kind == "img":
            path, caption = content
            data = base64.b64encode(Path(path).read_bytes()).decode()
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}'><figcaption>{html.escape(caption)}"
                "</figcaption></figure>"
            )
        else:
            raise ValueError(_unknown(kind))
    parts.append("</body></html>")
    return "\n".join(parts)


def _unknown(kind: str) -> str:
    return f"a report block of kind {kind!r}; the kinds are h1, h2, p, table, verdicts and img"
