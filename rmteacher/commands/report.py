"""`rmteacher report RUN_DIR`: regenerates a study's analysis and report from its saved results; nothing is rerun.

The run's design, read once from its ``study.json``, picks the report: :mod:`rmteacher.report.reward_models`
(Section 4.1) or :mod:`rmteacher.report.policies` (Section 4.2). Run: ``rmteacher report runs/study``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmteacher.options import option
from rmteacher.report import policies, reward_models
from rmteacher.study.stages import StudyConfig, table_evaluation

__all__ = ["ReportConfig", "design_of", "run_report"]


@dataclass
class ReportConfig:
    """Options of `rmteacher report`."""

    run_dir: Path = option(help="a `rmteacher study` run directory", positional=True)
    table_eval: int | None = option(
        None,
        help="which evaluation along training the findings and the correlation table use (--design reward-models; "
        "default: the study's own --table-eval)",
    )


def _study_options(run_dir: Path) -> dict[str, Any]:
    """The options the study in ``run_dir`` ran with, from its ``study.json``; empty where there is none."""
    manifest = run_dir / "study.json"
    return json.loads(manifest.read_text()) if manifest.exists() else {}


def design_of(run_dir: Path) -> str:
    """The design of the study in ``run_dir`` (``reward-models`` where there is no ``study.json``)."""
    return str(_study_options(run_dir).get("design", "reward-models"))


def run_report(config: ReportConfig) -> str:
    """Writes the analysis, tables, figures, ``report.md`` and ``report.html``; returns the findings to print."""
    recorded = _study_options(config.run_dir)
    if recorded.get("design") == "policies":
        analysis = policies.analyze(config.run_dir)
        policies.write_report(config.run_dir, analysis)
    else:  # the study's own --table-eval unless one is given here; StudyConfig's defaults for a run without study.json
        defaults = StudyConfig()
        table_eval = table_evaluation(
            config.table_eval if config.table_eval is not None else recorded.get("table_eval", defaults.table_eval),
            recorded.get("rl_evals", defaults.rl_evals),
        )
        analysis = reward_models.analyze(config.run_dir, table_eval=table_eval)
        reward_models.write_report(config.run_dir, analysis)
    return "\n".join(
        [*analysis["findings"], f"Report: {config.run_dir / 'report.md'}, {config.run_dir / 'report.html'}"]
    )
