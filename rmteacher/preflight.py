"""Cheap checks that a reward will load, run before anything expensive (sampling, training) starts.

A reward that cannot be imported or loaded used to fail only when its turn to score came: after the policy had been
sampled (37 s for 16 prompts on SmolLM2-135M, hours on a real workload). :func:`check_reward` finds the same errors
at once without loading any weights, so a run that checks every reward first holds no reward model in memory before
it needs one: a ``module:function`` is imported and looked up; a model's tokenizer and config are loaded and checked
to be a sequence-classification model with one output and safetensors weights.

Run: ``rmteacher evaluate --reward-model a=mymod:typo ...`` fails with exit code 2 before the first sample.
"""

from __future__ import annotations

from pathlib import Path

from rmteacher.gguf import is_gguf_path
from rmteacher.loading import (
    CALLABLE_SPEC,
    ModelLoadError,
    check_safetensors,
    load_pretrained,
    load_tokenizer,
    parse_reward_spec,
)
from rmteacher.rewards import load_reward

__all__ = ["check_reward"]


def check_reward(spec: str, *, argument: str = "--reward-model", trust_remote_code: bool = False) -> str:
    """Checks that :func:`rmteacher.rewards.load_reward` would load ``NAME=PATH_OR_CALLABLE``, without model weights.

    Returns:
        ``"callable"`` or ``"model"``, what the spec names.

    Raises:
        ModelLoadError: the module cannot be imported or has no such function; the model's directory does not exist,
            is not a sequence-classification model with one output (``num_labels=1``), has no safetensors weights, or
            its tokenizer or config cannot be loaded. The message names ``argument`` and ``spec``.
        ValueError: ``spec`` is not of the form ``NAME=PATH_OR_CALLABLE``.
    """
    name, target = parse_reward_spec(spec, argument=argument)
    if is_gguf_path(target):
        load_reward(spec, argument=argument)  # refuses a GGUF (a causal LM, no scalar head) before loading anything
    if CALLABLE_SPEC.match(target) and not Path(target).exists():
        load_reward(spec, argument=argument)  # imports the module and looks the function up; holds no weights
        return "callable"
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    kind = f"reward model {name!r}"
    load_tokenizer(target, kind=kind, trust_remote_code=trust_remote_code)
    local = Path(target).expanduser()
    if local.is_dir():
        check_safetensors(AutoModelForSequenceClassification, local, kind=kind, path=target)
        if not any(local.glob("*.safetensors")):
            raise ModelLoadError(f"{argument} {spec!r}: {local} holds no weights (*.safetensors)")
    config = load_pretrained(AutoConfig, target, kind=kind, trust_remote_code=trust_remote_code)
    architectures = list(getattr(config, "architectures", None) or [])
    remote = trust_remote_code and "AutoModelForSequenceClassification" in (getattr(config, "auto_map", None) or {})
    if not remote and config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise ModelLoadError(
            f"{argument} {spec!r}: transformers has no sequence-classification class for model type "
            f"{config.model_type!r}; a reward model must load with AutoModelForSequenceClassification"
        )
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelLoadError(
            f"{argument} {spec!r}: a {', '.join(architectures)} checkpoint, not a sequence-classification reward "
            "model (its score head would be random); give a model trained with `rmteacher train-rm` or TRL's "
            "RewardTrainer, or a module:function"
        )
    if config.num_labels != 1:
        raise ModelLoadError(
            f"{argument} {spec!r}: a reward model needs a scalar head (num_labels=1); it has {config.num_labels}"
        )
    return "model"
