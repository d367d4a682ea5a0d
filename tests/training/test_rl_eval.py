"""RL's periodic evaluation (rmteacher.training.rl_eval): its KL against a plain one-sequence-at-a-time reference,
on the ids the policy was sampled from (a template-less tokenizer that adds a BOS token, as Llama-2 base does)."""

import copy
from typing import Any

import numpy as np
import pytest
import torch

from rmteacher.loading import load_policy
from rmteacher.rendering import encode_rendered, render_prompt
from rmteacher.sampling import sample_completions
from rmteacher.training.rl_eval import PolicyEvaluator

PROMPTS = ["Q: the cat sat\nA:", "Q: big red dog jumps\nA:", "Q: we walk\nA:"]


def _with_bos(tokenizer: Any) -> Any:
    """The zoo's GPTNeoX tokenizer made to add its BOS token to every encoded text (``tokenizer(text)``)."""
    from tokenizers.processors import TemplateProcessing

    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    return tokenizer


def _reference_kl(model: Any, reference: Any, prompt_ids: list[int], completion_ids: list[int]) -> float:
    """sum over the completion's tokens of log pi(y_t) - log pi_0(y_t), one sequence, no padding."""
    ids = torch.tensor([prompt_ids + completion_ids])
    total = 0.0
    with torch.inference_mode():
        logps = [torch.log_softmax(m(input_ids=ids).logits[0, :-1].float(), -1) for m in (model, reference)]
    for t in range(len(prompt_ids), len(prompt_ids) + len(completion_ids)):
        token = int(ids[0, t])
        total += float(logps[0][t - 1, token] - logps[1][t - 1, token])
    return total


def test_kl_is_on_the_sampled_ids_bos_included(zoo: Any) -> None:  # type: ignore[no-untyped-def]
    model, tokenizer = load_policy(str(zoo.policies["neox"]), device="cpu")
    tokenizer = _with_bos(tokenizer)
    prompt_ids = encode_rendered(tokenizer, [render_prompt(tokenizer, p) for p in PROMPTS])
    assert all(ids[0] == tokenizer.bos_token_id for ids in prompt_ids)  # sampling reads the BOS
    reference = copy.deepcopy(model)
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    completions = sample_completions(model, tokenizer, PROMPTS, samples_per_prompt=2, max_new_tokens=8, progress=False)
    evaluator = PolicyEvaluator(
        tokenizer=tokenizer, reference=reference, prompts=PROMPTS, scaled=np.zeros(len(PROMPTS), dtype=bool),
        proxy=None, truth=None, samples_per_prompt=2, max_new_tokens=8, temperature=1.0, scale_factor=1.0, seed=0,
    )  # type: ignore[arg-type]  # fmt: skip
    expected = np.mean(
        [_reference_kl(model, reference, prompt_ids[c.prompt_index], list(c.token_ids)) for c in completions]
    )
    assert evaluator.kl(model, completions) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert abs(expected) > 1e-3  # the perturbation makes the two policies differ
