"""`rmteacher report RUN_DIR`: regenerates a study's analysis and report from its saved results; nothing is rerun.

The run's design, read once from its ``study.json``, picks the report: :mod:`rmteacher.report.reward_models`
(Section 4.1) or :mod:`rmteacher.report.policies` (Section 4.2). Run: ``rmteacher report runs/study``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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


def design_of(run_dir: Path) -> str:
    """The design of the study in ``run_dir``, from its ``study.json`` (``reward-models`` where there is none)."""
    manifest = run_dir / "study.json"
    return json.loads(manifest.read_text())["design"] if manifest.exists() else "reward-models"


def study_table_eval(run_dir: Path) -> int:
    """The evaluation the study in ``run_dir`` used for its findings, from the options in its ``study.json`` (a run
    without one gets the study's default)."""
    manifest = run_dir / "study.json"
    recorded = json.loads(manifest.read_text()) if manifest.exists() else {}
    return table_evaluation(recorded.get("table_eval"), recorded.get("rl_evals", StudyConfig().rl_evals))


def run_report(config: ReportConfig) -> str:
    """Writes the analysis, tables, figures, ``report.md`` and ``report.html``; returns the findings to print."""
    if design_of(config.run_dir) == "policies":
        analysis = policies.analyze(config.run_dir)
        policies.write_report(config.run_dir, analysis)
    else:
        table_eval = config.table_eval if config.table_eval is not None else study_table_eval(config.run_dir)
        analysis = reward_models.analyze(config.run_dir, table_eval=table_eval)
        reward_models.write_report(config.run_dir, analysis)
    return "\n".join(
        [*analysis["findings"], f"Report: {config.run_dir / 'report.md'}, {config.run_dir / 'report.html'}"]
    )
