"""A character-level tokenizer for the sandbox task, built locally with ``tokenizers`` (no download).

One token per character keeps the task legible (a completion of n letters is n tokens plus EOS) and lets a model
of a few hundred thousand parameters learn it. It is wrapped as a ``PreTrainedTokenizerFast`` with pad/eos/bos
tokens and a chat template, so policies and reward models built on it go through the same Hugging Face code
paths (``apply_chat_template``, ``generate``, TRL's trainers) as real models.
"""

from __future__ import annotations

import string
from typing import Any

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "build_tokenizer"]

PAD, EOS, BOS, UNK, USER, ASSISTANT = "<|pad|>", "<|eos|>", "<|bos|>", "<|unk|>", "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = (PAD, EOS, BOS, UNK, USER, ASSISTANT)
CHARACTERS = string.ascii_lowercase + string.digits + " .,:;!?'\"-()\n"

# The paper's template, "[USER] x [ASSISTANT] y [EOS]" (spec §3, "Chat template"), with EOS also closing the user
# turn. The prompt rendered with add_generation_prompt is a prefix of prompt + completion, which TRL's
# completion-only SFT relies on; {% generation %} marks assistant tokens for TRL's assistant_only_loss.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "<|user|>{{ message['content'] }}<|eos|>"
    "{%- elif message['role'] == 'assistant' -%}"
    "<|assistant|>{% generation %}{{ message['content'] }}<|eos|>{% endgeneration %}"
    "{%- else -%}"
    "{{ raise_exception('the sandbox chat template has roles user and assistant only, got ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


def build_tokenizer() -> Any:
    """The sandbox tokenizer: special tokens, then one token per character of :data:`CHARACTERS`.

    A BPE model with no merges is a character-level tokenizer; the ``Fuse`` decoder joins characters back without
    the spaces a default decoder would put between tokens, so ``decode(encode(s)) == s`` for text over
    :data:`CHARACTERS`. Other characters become ``<|unk|>``.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` (vocabulary of ``len(SPECIAL_TOKENS) + len(CHARACTERS)``), left
        padding for batched generation.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + tuple(CHARACTERS))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    core.add_special_tokens(list(SPECIAL_TOKENS))
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        unk_token=UNK,
        additional_special_tokens=[USER, ASSISTANT],
        padding_side="left",
        model_max_length=64,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
