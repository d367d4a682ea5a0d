"""Verifiable tasks for real policies, with programmatic ground truths and candidate teachers in TRL's reward form.

``rmteacher.tasks.constraints``: one sentence under IFEval-style instruction constraints (lowercase, a keyword, a
word limit, no commas), for the real-model study (``examples/real_model_study.py``).
"""
