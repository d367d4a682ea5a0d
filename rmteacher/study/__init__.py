"""The paper's experiments end to end, as resumable stages ending in a report.

- :mod:`rmteacher.study.stages`: the options (:class:`StudyConfig`), budgets, fingerprinted stages and one RLOO run,
  shared by both designs;
- :mod:`rmteacher.study.reward_models`: Section 4.1, reward models trained on on/off-policy mixes, one policy;
- :mod:`rmteacher.study.policies`: Section 4.2, several initial policies x reward models (Table 10);
- :mod:`rmteacher.study.workers`: the independent stages (RL runs, reward-model trainings) in worker processes
  (``--workers``), with the same results as one after another.

The pipelines take their inputs explicitly; ``rmteacher study`` (:mod:`rmteacher.commands.study`) resolves the
built-in sandbox task's when none is given. Run: ``rmteacher study --help``.
"""

from rmteacher.study.policies import POLICIES, PolicyRecipe, demonstration_rows, study_policies
from rmteacher.study.reward_models import FRACTIONS, study_reward_models
from rmteacher.study.stages import INPUTS, Sizes, Stages, StudyConfig

__all__ = [
    "FRACTIONS",
    "INPUTS",
    "POLICIES",
    "PolicyRecipe",
    "Sizes",
    "Stages",
    "StudyConfig",
    "demonstration_rows",
    "study_policies",
    "study_reward_models",
]
