"""Reports: tables, figures, ``report.md`` and a self-contained ``report.html``, read from saved results only.

- :mod:`rmteacher.report.render`: blocks to markdown/HTML, reading RL runs' evaluations (shared);
- :mod:`rmteacher.report.evaluate`: ``metrics.md`` and the scatter plot of ``rmteacher evaluate``;
- :mod:`rmteacher.report.reward_models`: `rmteacher study` (Section 4.1, Tables 1 and 2, Figures 2 and 4);
- :mod:`rmteacher.report.policies` with :mod:`rmteacher.report.table10`: `rmteacher study --design policies`
  (Section 4.2, Table 10).

Nothing here imports a pipeline: a report reads what it needs from the run directory. Run:
``rmteacher report RUN_DIR`` (:mod:`rmteacher.commands.report` picks the report from the run's ``study.json``).
"""

from rmteacher.report import evaluate, policies, reward_models, table10
from rmteacher.report.render import blocks_to_html, blocks_to_markdown, format_number, read_evaluations

__all__ = [
    "blocks_to_html",
    "blocks_to_markdown",
    "evaluate",
    "format_number",
    "policies",
    "read_evaluations",
    "reward_models",
    "table10",
]
