"""A zoo of small real-architecture models, built locally in seconds for tests (no download).

Run ``python tests/zoo.py OUT_DIR`` to build it by hand; tests get it from the session fixture ``zoo``
(tests/conftest.py). Every model is saved with ``save_pretrained`` (safetensors) with its tokenizer, so it loads
with the ``Auto*`` classes like a checkpoint from the hub. Each model has its own byte-level BPE tokenizer,
trained with ``tokenizers`` on a small synthetic corpus (different vocabularies, so token ids never line up
between a policy and a reward model by accident).

Policies (causal LMs), each trained for a few dozen steps so that its samples end with its end token:

- ``neox``: GPTNeoX, Pythia-like: no chat template, no pad token, EOS ``<|endoftext|>``, plain ``Q: ...\\nA:``
  prompts.
- ``qwen2``: Qwen2 with a ChatML template (``<|im_start|>``/``<|im_end|>``); the tokenizer's EOS is
  ``<|endoftext|>`` and ``generation_config.eos_token_id`` is ``[<|im_end|>, <|endoftext|>]``.
- ``llama``: Llama with a Llama-3-style template (``<|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>``);
  the tokenizer's EOS is ``<|end_of_text|>`` and ``generation_config.eos_token_id`` is
  ``[<|end_of_text|>, <|eot_id|>]``, so a sampler that stops on the tokenizer's EOS alone never stops.

Reward models (sequence classification, ``num_labels=1``, random weights with a head scaled to give O(1) scores):

- ``gpt2``: GPT2, no chat template, no pad token, only 64 positions (learned position embeddings: longer inputs
  crash unless truncated).
- ``llama``: Llama with a Llama-3-style template whose ``config.pad_token_id`` differs from its tokenizer's pad id.
- ``qwen2``: Qwen2 with a ChatML template and a consistent pad token.
"""

from __future__ import annotations

import fcntl
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POLICIES = ("neox", "qwen2", "llama")
REWARD_MODELS = ("gpt2", "llama", "qwen2")

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
LLAMA3_SPECIALS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_0|>",
)
CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

_TEXT = (
    "the road was warm and sky stays small cat sat on mat then ran off big red dog jumps over lazy fox river "
    "flows past old mill bird sings at dawn we walk home slowly light falls through green leaves"
)
WORDS = tuple(_TEXT.split(" "))


@dataclass(frozen=True)
class Zoo:
    """Where the zoo's models are: ``policies[name]`` and ``reward_models[name]`` are model directories."""

    root: Path
    policies: dict[str, Path]
    reward_models: dict[str, Path]
    build_seconds: float


def sentences(seed: int, count: int, *, low: int = 3, high: int = 8) -> list[str]:
    """``count`` seeded pseudo-sentences over :data:`WORDS`."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))) for _ in range(count)]


def byte_level_tokenizer(
    *, seed: int, vocab_size: int, specials: tuple[str, ...], chat_template: str | None, **tokens: str | None
) -> Any:
    """A byte-level BPE (GPT-2 style: any text round-trips) trained on a seeded corpus, as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = sentences(seed, 400) + [f"Q: {s}\nA: {s}." for s in sentences(seed + 1, 100)]
    core.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **{k: v for k, v in tokens.items() if v is not None})
    tokenizer.chat_template = chat_template
    return tokenizer


def _conversations(seed: int, count: int) -> list[tuple[list[dict[str, str]], str]]:
    """(messages, reply) pairs: a user turn, sometimes with a system turn or an earlier exchange before it."""
    rng = random.Random(seed)
    rows = []
    for question, answer, earlier in zip(
        sentences(seed, count), sentences(seed + 1, count, low=2, high=5), sentences(seed + 2, count), strict=True
    ):
        messages = [{"role": "user", "content": question}]
        if rng.random() < 0.3:
            messages = [{"role": "user", "content": earlier}, {"role": "assistant", "content": answer}, *messages]
        if rng.random() < 0.3:
            messages = [{"role": "system", "content": "be brief."}, *messages]
        rows.append((messages, answer + "."))
    return rows


def _train_to_stop(model: Any, sequences: list[list[int]], *, pad_id: int, steps: int, seed: int) -> Any:
    """A few AdamW steps of language modelling on ``sequences`` (so samples are short and end in an end token)."""
    import torch

    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        batch = [sequences[(step * 32 + i) % len(sequences)] for i in range(32)]
        width = max(len(s) for s in batch)
        ids = torch.full((len(batch), width), pad_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _small(config_class: Any, **kwargs: Any) -> Any:
    return config_class(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, **kwargs)


def _save(model: Any, tokenizer: Any, path: Path) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_neox_policy(path: Path, *, seed: int = 1) -> Path:
    """Pythia-like GPTNeoX: no chat template, no pad token; trained on ``Q: ...\\nA: ...<|endoftext|>``."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    eos = "<|endoftext|>"
    tokenizer = byte_level_tokenizer(
        seed=seed, vocab_size=300, specials=(eos,), chat_template=None, eos_token=eos, bos_token=eos
    )
    eos_id = tokenizer.convert_tokens_to_ids(eos)
    config = _small(
        GPTNeoXConfig, vocab_size=len(tokenizer), max_position_embeddings=256, bos_token_id=eos_id, eos_token_id=eos_id
    )
    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(config)
    texts = [f"Q: {m[-1]['content']}\nA: {reply}{eos}" for m, reply in _conversations(seed, 200)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    _train_to_stop(model, ids, pad_id=eos_id, steps=120, seed=seed)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = None
    return _save(model, tokenizer, path)


def build_qwen2_policy(path: Path, *, seed: int = 2) -> Path:
    """Qwen2 with ChatML; ends turns with ``<|im_end|>``, which only the generation config names as an end token."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = byte_level_tokenizer(
        seed=seed,
        vocab_size=330,
        specials=CHATML_SPECIALS,
        chat_template=CHATML_TEMPLATE,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    end_of_text, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config = _small(
        Qwen2Config,
        vocab_size=len(tokenizer),
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=end_of_text,
        pad_token_id=end_of_text,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    texts = [
        tokenizer.apply_chat_template([*m, {"role": "assistant", "content": r}]) for m, r in _conversations(seed, 200)
    ]
    _train_to_stop(model, _ids(texts), pad_id=end_of_text, steps=120, seed=seed)
    model.generation_config.eos_token_id = [im_end, end_of_text]
    model.generation_config.pad_token_id = end_of_text
    return _save(model, tokenizer, path)


def build_llama_policy(path: Path, *, seed: int = 3) -> Path:
    """Llama with a Llama-3-style template: turns end in ``<|eot_id|>``; the tokenizer's EOS is ``<|end_of_text|>``.

    Trained on multi-turn conversations, so a sampler that does not stop at ``<|eot_id|>`` runs on into the next
    turn's header (the bug of issue 10).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_level_tokenizer(
        seed=seed,
        vocab_size=340,
        specials=LLAMA3_SPECIALS,
        chat_template=LLAMA3_TEMPLATE,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
    )
    bos, end_of_text, eot = tokenizer.convert_tokens_to_ids(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    config = _small(
        LlamaConfig,
        vocab_size=len(tokenizer),
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=bos,
        eos_token_id=[end_of_text, eot],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    rows = _conversations(seed, 200)
    texts = [tokenizer.apply_chat_template([*m, {"role": "assistant", "content": r}]) for m, r in rows]
    _train_to_stop(model, _ids(texts), pad_id=end_of_text, steps=120, seed=seed)
    model.generation_config.bos_token_id = bos
    model.generation_config.eos_token_id = [end_of_text, eot]
    model.generation_config.pad_token_id = None
    return _save(model, tokenizer, path)


def _ids(encoded: list[Any]) -> list[list[int]]:
    """``apply_chat_template(tokenize=True)`` output (lists or BatchEncodings) as lists of ids."""
    return [list(e["input_ids"]) if hasattr(e, "keys") else list(e) for e in encoded]


def _scaled_head(model: Any, scale: float) -> Any:
    """Multiplies the classification head so a random model's rewards spread over O(1), not O(1e-3)."""
    import torch

    with torch.no_grad():
        model.score.weight.mul_(scale)
    return model.eval()


def build_gpt2_reward_model(path: Path, *, seed: int = 11) -> Path:
    """GPT2 reward model: no template, no pad token, 64 learned positions."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    eos = "<|endoftext|>"
    tokenizer = byte_level_tokenizer(
        seed=seed, vocab_size=290, specials=(eos,), chat_template=None, eos_token=eos, bos_token=eos
    )
    eos_id = tokenizer.convert_tokens_to_ids(eos)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=64,
        num_labels=1,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=None,
    )
    torch.manual_seed(seed)
    return _save(_scaled_head(GPT2ForSequenceClassification(config), 30.0), tokenizer, path)


def build_llama_reward_model(path: Path, *, seed: int = 12) -> Path:
    """Llama reward model with a Llama-3 template; ``config.pad_token_id`` is not its tokenizer's pad id."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer = byte_level_tokenizer(
        seed=seed,
        vocab_size=310,
        specials=LLAMA3_SPECIALS,
        chat_template=LLAMA3_TEMPLATE,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
    )
    bos, eot, config_pad = tokenizer.convert_tokens_to_ids(
        ["<|begin_of_text|>", "<|eot_id|>", "<|reserved_special_token_0|>"]
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        num_labels=1,
        bos_token_id=bos,
        eos_token_id=eot,
        pad_token_id=config_pad,
    )
    torch.manual_seed(seed)
    return _save(_scaled_head(LlamaForSequenceClassification(config), 30.0), tokenizer, path)


def build_qwen2_reward_model(path: Path, *, seed: int = 13) -> Path:
    """Qwen2 reward model with ChatML; tokenizer and config agree on the pad token."""
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    tokenizer = byte_level_tokenizer(
        seed=seed,
        vocab_size=320,
        specials=CHATML_SPECIALS,
        chat_template=CHATML_TEMPLATE,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        num_labels=1,
        pad_token_id=pad,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    torch.manual_seed(seed)
    return _save(_scaled_head(Qwen2ForSequenceClassification(config), 30.0), tokenizer, path)


def build_zoo(root: Path) -> Zoo:
    """Builds every model of the zoo under ``root`` (``root/policy-NAME``, ``root/rm-NAME``) and ``root/zoo.json``."""
    import torch
    from transformers.utils import logging as hf_logging

    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster, and other test workers share the cores
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Writing model shards" bar per model
    try:
        with torch.random.fork_rng(devices=[]):
            build_neox_policy(root / "policy-neox")
            build_qwen2_policy(root / "policy-qwen2")
            build_llama_policy(root / "policy-llama")
            build_gpt2_reward_model(root / "rm-gpt2")
            build_llama_reward_model(root / "rm-llama")
            build_qwen2_reward_model(root / "rm-qwen2")
    finally:
        torch.set_num_threads(threads)
        if bars:
            hf_logging.enable_progress_bar()
    (root / "zoo.json").write_text(json.dumps({"build_seconds": time.perf_counter() - start}))
    return open_zoo(root)


def open_zoo(root: Path) -> Zoo:
    """The zoo built under ``root`` by :func:`build_zoo`."""
    seconds = json.loads((root / "zoo.json").read_text())["build_seconds"]
    return Zoo(
        root,
        {name: root / f"policy-{name}" for name in POLICIES},
        {name: root / f"rm-{name}" for name in REWARD_MODELS},
        seconds,
    )


def shared_zoo(root: Path) -> Zoo:
    """The zoo at ``root``, built by the first process that asks (others wait on a lock and reuse it)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f".{root.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / "zoo.json").is_file():
            return open_zoo(root)
        scratch = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
        try:
            build_zoo(scratch)
            if root.exists():
                shutil.rmtree(root)
            scratch.rename(root)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return open_zoo(root)


if __name__ == "__main__":
    zoo = shared_zoo(Path(sys.argv[1]))
    print(f"built in {zoo.build_seconds:.1f} s: {zoo}")
