"""Evaluating a policy along RL training: proxy and ground-truth reward increase and the KL to the initial policy.

The policy is sampled on a fixed prompt set with the same stopping as TRL's training (every end token of the
model's generation config; TRL cannot stop on strings, so neither does this evaluation); rewards are normalized by
the initial policy's statistics, so an increase is in units of the initial reward std (the paper's Figure 2), and
the KL is the k1 estimate on the sampled tokens (its Figure 4's x axis).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rmteacher.metrics import NormalizationStats
from rmteacher.rendering import encode_rendered, render_prompt
from rmteacher.rewards import Reward
from rmteacher.sampling import Completion, sample_completions
from rmteacher.scoring import score_rows

__all__ = ["PROXY", "TRUTH", "PolicyEvaluator", "append_jsonl", "make_callbacks"]

PROXY = "proxy"
TRUTH = "ground_truth"


@dataclass
class PolicyEvaluator:
    """Samples the policy on a fixed prompt set and measures proxy and ground-truth reward and the KL to the start.

    Rewards are normalized by the initial statistics (and the proxy scaled like in training), so the increase is in
    units of the initial policy's reward std, the paper's Figure 2. The KL is the k1 estimate
    ``mean over samples of sum_t (log pi(y_t) - log pi_0(y_t))`` on the sampled tokens, Figure 4's x axis.
    The sampling seed is the same at every evaluation (common random numbers) and the global RNG is restored.
    """

    tokenizer: Any
    reference: Any
    prompts: list[Any]  # [num_prompts], strings or conversations, as the dataset gives them
    scaled: np.ndarray  # [num_prompts] bool
    proxy: Reward
    truth: Reward | None
    samples_per_prompt: int
    max_new_tokens: int
    temperature: float
    scale_factor: float
    seed: int
    extra: dict[str, list[Any]] = field(default_factory=dict)  # per prompt: the prompts table's other columns
    system_prompt: str | None = None

    def sample(self, model: Any) -> tuple[list[Completion], np.ndarray, np.ndarray | None]:
        """Samples and returns (completions, proxy raw [P, K], truth raw [P, K] or None)."""
        import torch

        training = model.training
        model.eval()
        with torch.random.fork_rng(devices=[]):
            completions = sample_completions(
                model, self.tokenizer, self.prompts, samples_per_prompt=self.samples_per_prompt,
                max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=self.seed, progress=False,
                system_prompt=self.system_prompt,
            )  # fmt: skip
        model.train(training)
        rows = [c.prompt_index for c in completions]
        prompts = [self.prompts[i] for i in rows]
        texts = [c.text for c in completions]
        ids = pd.DataFrame({"evaluation_prompt": rows, "sample_id": [c.sample_id for c in completions]})
        extra = {k: [v[i] for i in rows] for k, v in self.extra.items()}
        shape = (len(self.prompts), self.samples_per_prompt)
        proxy = score_rows(self.proxy, prompts, texts, ids, extra=extra).reshape(shape)
        truth = None if self.truth is None else score_rows(self.truth, prompts, texts, ids, extra=extra).reshape(shape)
        return completions, proxy, truth

    def kl(self, model: Any, completions: list[Completion]) -> float:
        """k1 estimate of KL(pi || pi_0) per sequence on the sampled completions."""
        import torch

        device = next(model.parameters()).device
        # The prompt's ids exactly as sample_completions (and TRL) encoded them: the rendered text, with the
        # tokenizer's own special tokens for a template-less policy (e.g. BOS), none after a chat template.
        prompt_ids = encode_rendered(
            self.tokenizer, [render_prompt(self.tokenizer, p, system_prompt=self.system_prompt) for p in self.prompts]
        )
        sequences = [(prompt_ids[c.prompt_index], list(c.token_ids)) for c in completions if c.token_ids]
        total, count = 0.0, 0
        for start in range(0, len(sequences), 64):
            batch = sequences[start : start + 64]
            width = max(len(p) + len(c) for p, c in batch)
            ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            target = torch.zeros_like(ids, dtype=torch.bool)
            for row, (p, c) in enumerate(batch):
                ids[row, : len(p) + len(c)] = torch.tensor(p + c)
                mask[row, : len(p) + len(c)] = 1
                target[row, len(p) : len(p) + len(c)] = True
            ids, mask, target = ids.to(device), mask.to(device), target.to(device)
            with torch.inference_mode():
                logps = []
                for m in (model, self.reference):
                    logits = m(input_ids=ids, attention_mask=mask).logits[:, :-1].float() / self.temperature
                    logps.append(torch.log_softmax(logits, -1).gather(2, ids[:, 1:, None]).squeeze(2))
            per_token = (logps[0] - logps[1]) * target[:, 1:]
            total += float(per_token.sum())
            count += len(batch)
        return total / max(count, 1)

    def __call__(
        self,
        model: Any,
        stats: dict[str, NormalizationStats],
        sampled: tuple[list[Completion], np.ndarray, np.ndarray | None] | None = None,
    ) -> dict[str, float]:
        """The evaluation record; ``sampled`` reuses a :meth:`sample` of the same model."""
        completions, proxy, truth = sampled if sampled is not None else self.sample(model)
        proxy_norm = (proxy - stats[PROXY].mean) / stats[PROXY].std
        proxy_norm[self.scaled] *= self.scale_factor
        record = {"proxy_mean": float(proxy_norm.mean()), "proxy_raw_mean": float(proxy.mean())}
        if truth is not None:
            record["ground_truth_mean"] = float(((truth - stats[TRUTH].mean) / stats[TRUTH].std).mean())
            record["ground_truth_raw_mean"] = float(truth.mean())
        record["kl"] = self.kl(model, completions)
        record["mean_length"] = float(np.mean([c.num_tokens for c in completions]))
        # Samples cut at max_new_tokens without an end token (TRL's completions/clipped_ratio, in training).
        record["unfinished_share"] = float(np.mean([not c.finished for c in completions]))
        return record


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def make_callbacks(
    out: Path, evaluator: PolicyEvaluator, stats: dict[str, NormalizationStats], initial: dict[str, float],
    eval_every: int, max_steps: int, is_main: Callable[[], bool],
) -> list[Any]:  # fmt: skip
    """The run's TRL callbacks: per-step metrics to metrics.jsonl, and the periodic policy evaluation."""
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        """Appends every log of the trainer to ``metrics.jsonl`` (never truncated; on resume the replayed steps
        appear again and the last record of a step wins)."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and is_main():
                # TRL's closing line (train_runtime, ...) repeats the last step's number: marked as its summary.
                event = "summary" if "train_runtime" in logs else "train"
                append_jsonl(out / "metrics.jsonl", {"event": event, "step": state.global_step, **logs})

    class Evaluation(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            step = state.global_step
            if not is_main() or not (step % eval_every == 0 or step == max_steps):
                return
            record: dict[str, Any] = {"event": "eval", "step": step, **evaluator(model, stats)}
            record["proxy_increase"] = record["proxy_mean"] - initial["proxy_mean"]
            if "ground_truth_mean" in record:
                record["ground_truth_increase"] = record["ground_truth_mean"] - initial["ground_truth_mean"]
            append_jsonl(out / "metrics.jsonl", record)

    return [MetricsFile(), Evaluation()]
