"""One rendering of prompts and conversations for every model: what a policy or reward model reads, as text.

Prompts come in TRL's two formats: a plain string (TRL's *standard* format) or a conversation, a list of
``{"role", "content"}`` messages (system and multi-turn included) ending with a user turn. Completions are a string
or TRL's conversational completion, a list holding the assistant's message.

**With a chat template** (the tokenizer has ``chat_template``) the template renders everything, as TRL and
``transformers`` do: a plain prompt becomes one user message; the generation prompt is rendered with
``add_generation_prompt=True``; a scored conversation is the prompt's messages plus the assistant's message,
rendered without it (what TRL's RM-as-reward path and ``RewardTrainer`` render).

**Without a chat template** (base models such as Pythia, GPT-2 reward models) the plain format is:

- the prompt: its text as given. A conversation of exactly one user message (optionally after one system
  message) renders as that message's text; a conversation with assistant turns cannot be written without a
  template and is an error naming the fix. A list of messages is never ``str()``-ed.
- a system message (given in the conversation or as ``system_prompt``): its text and a blank line
  (:data:`SYSTEM_SEPARATOR`) before the prompt.
- a scored conversation: ``prompt + SEPARATOR + completion + EOS``. :data:`SEPARATOR` (a newline) is inserted only
  when neither the prompt ends nor the completion starts with whitespace: TRL's standard format concatenates prompt
  and completion as they are (the policy continues the prompt's text), which is right for data whose prompts end
  with a delimiter (``"Question: ...\\nAnswer:"`` + ``" Paris"``) and glues words together for data whose prompts
  do not (``"sort: dcba"`` + ``"abcd"``). The EOS token closes the text as TRL's ``RewardTrainer`` appends it.

**Tokenizing** a rendered text (:func:`encode_rendered`): a templated text gets no added special tokens (the template
writes its own BOS); a plain text gets the tokenizer's own (``tokenizer(text)``, e.g. Llama's BOS), as TRL's trainers
tokenize standard-format prompts and ``RewardTrainer`` its texts.

**System prompt** (``system_prompt=``, the CLI's ``--system-prompt``): prepended as a system message. A prompt that
already has a system message and a ``system_prompt`` is an error (which one was meant is unclear). A chat template
that rejects system messages (e.g. Gemma's) is an error naming the template and the option.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "SEPARATOR",
    "SYSTEM_SEPARATOR",
    "Prompt",
    "completion_text",
    "encode_conversations",
    "encode_rendered",
    "has_chat_template",
    "is_conversational",
    "prompt_key",
    "prompt_messages",
    "render_conversation",
    "render_prompt",
    "trl_prompt",
]

#: A prompt in TRL's standard (a string) or conversational (``[{"role", "content"}, ...]``) format.
Prompt = str | Sequence[Mapping[str, Any]]

#: Between prompt and completion in the plain format, when neither side has whitespace at the junction.
SEPARATOR = "\n"
#: Between a system message and the prompt in the plain format.
SYSTEM_SEPARATOR = "\n\n"


def has_chat_template(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` renders conversations with its own chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def is_conversational(value: Any) -> bool:
    """Whether a prompt or completion is in TRL's conversational format (a list of messages), not a string."""
    return hasattr(value, "__iter__") and not isinstance(value, str | bytes | Mapping)


def _messages(value: Any, *, what: str) -> list[dict[str, Any]]:
    """``value`` as a list of message dicts (parquet gives arrays of dicts), each with a role and text content."""
    messages = []
    for message in list(value):
        if not isinstance(message, Mapping) or not {"role", "content"} <= set(message):
            raise ValueError(f"{what}: expected {{'role', 'content'}} messages; got {message!r}")
        if not isinstance(message["content"], str):
            raise ValueError(f"{what}: message content must be text; got {type(message['content']).__name__}")
        messages.append(dict(message))
    return messages


def prompt_messages(prompt: Prompt, *, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """The prompt as chat messages: a string becomes one user message; ``system_prompt`` is prepended.

    Raises:
        ValueError: not a string or a list of messages; an empty conversation or one not ending with a user turn;
            a ``system_prompt`` for a prompt that already has a system message.
    """
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif is_conversational(prompt):
        messages = _messages(prompt, what="prompt")
        if not messages or messages[-1]["role"] != "user":
            raise ValueError(
                f"a conversational prompt must end with a user message; got roles {[m['role'] for m in messages]}"
            )
    else:
        raise ValueError(f"a prompt must be a string or a list of messages; got {type(prompt).__name__}")
    if system_prompt is not None:
        if messages[0]["role"] == "system":
            raise ValueError(
                "the prompt already has a system message and a system prompt was given (--system-prompt); "
                "drop one of them"
            )
        messages = [{"role": "system", "content": system_prompt}, *messages]
    return messages


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """A completion's text: the string itself, or the content of TRL's conversational completion (assistant
    messages, joined)."""
    if isinstance(completion, str):
        return completion
    messages = _messages(completion, what="completion")
    if any(m["role"] != "assistant" for m in messages):
        raise ValueError(f"a conversational completion holds assistant messages only; got {messages!r}")
    return "".join(m["content"] for m in messages)


def _plain_prompt(messages: list[dict[str, Any]], tokenizer: Any) -> str:
    """The plain format of a [system,] user conversation; anything longer needs a chat template."""
    roles = [m["role"] for m in messages]
    if roles not in (["user"], ["system", "user"]):
        raise ValueError(
            f"tokenizer {_name(tokenizer)!r} has no chat template, so a conversation with roles {roles} cannot be "
            "rendered; give plain-string prompts, a conversation of one user message (and an optional system "
            "message), or a tokenizer with a chat template (set tokenizer.chat_template)"
        )
    return SYSTEM_SEPARATOR.join(m["content"] for m in messages)


def _apply_template(tokenizer: Any, messages: list[dict[str, Any]], *, generation: bool) -> str:
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    except Exception as error:  # jinja2's TemplateError, or the template's own raise_exception
        hint = "; drop --system-prompt or the system message" if messages[0]["role"] == "system" else ""
        raise ValueError(
            f"the chat template of {_name(tokenizer)!r} rejected the messages (roles "
            f"{[m['role'] for m in messages]}): {error}{hint}"
        ) from None
    return str(text)


def render_prompt(tokenizer: Any, prompt: Prompt, *, system_prompt: str | None = None) -> str:
    """The text a policy generates from: the chat template's generation prompt, or the plain prompt text."""
    messages = prompt_messages(prompt, system_prompt=system_prompt)
    if has_chat_template(tokenizer):
        return _apply_template(tokenizer, messages, generation=True)
    return _plain_prompt(messages, tokenizer)


def render_conversation(
    tokenizer: Any,
    prompt: Prompt,
    completion: str | Sequence[Mapping[str, Any]] | None = None,
    *,
    system_prompt: str | None = None,
) -> str:
    """The text a reward model scores: prompt and completion through the chat template, or in the plain format
    ``prompt [+ SEPARATOR] + completion + EOS``. With ``completion=None``: :func:`render_prompt`."""
    if completion is None:
        return render_prompt(tokenizer, prompt, system_prompt=system_prompt)
    messages = prompt_messages(prompt, system_prompt=system_prompt)
    if has_chat_template(tokenizer):
        if isinstance(completion, str):
            reply = [{"role": "assistant", "content": completion}]
        else:
            completion_text(completion)  # validates: assistant messages only
            reply = _messages(completion, what="completion")
        return _apply_template(tokenizer, [*messages, *reply], generation=False)
    text, reply_text = _plain_prompt(messages, tokenizer), completion_text(completion)
    glued = text and reply_text and not text[-1].isspace() and not reply_text[0].isspace()
    eos = tokenizer.eos_token or ""
    return text + (SEPARATOR if glued else "") + reply_text + ("" if reply_text.endswith(eos) else eos)


def trl_prompt(tokenizer: Any, prompt: Prompt, *, system_prompt: str | None = None) -> Prompt:
    """The ``prompt`` of a TRL dataset row for a policy with ``tokenizer``, so TRL renders what rmteacher samples.

    With a chat template: the conversation (TRL applies the template with ``add_generation_prompt=True``). Without:
    the plain text of :func:`render_prompt` (TRL's standard format; TRL tokenizes it with the tokenizer's own
    special tokens, as :func:`encode_rendered` does).
    """
    if has_chat_template(tokenizer):
        return prompt_messages(prompt, system_prompt=system_prompt)
    return render_prompt(tokenizer, prompt, system_prompt=system_prompt)


def encode_rendered(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of rendered texts: no added special tokens for templated texts (the template wrote them), the
    tokenizer's own (e.g. BOS) for plain ones, as ``tokenizer(text)`` and TRL's standard format add them."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=not has_chat_template(tokenizer))
    return [list(ids) for ids in encoded["input_ids"]]


def prompt_key(prompt: Prompt) -> str:
    """A hashable key for a prompt of either format (conversations are lists, not hashable)."""
    return prompt if isinstance(prompt, str) else json.dumps(list(prompt), sort_keys=True, default=str)


# Several reward models usually share a tokenizer and score the same samples: render and tokenize them once. Only
# the last few sets are kept (each holds the token ids of one evaluation's samples).
_ENCODED: dict[tuple[Any, ...], list[list[int]]] = {}
_ENCODED_SETS = 4


def encode_conversations(
    tokenizer: Any, prompts: Sequence[Prompt], completions: Sequence[Any], system_prompt: str | None
) -> list[list[int]]:
    """Token ids of each rendered (prompt, completion) (:func:`render_conversation`, :func:`encode_rendered`),
    cached for the last few tokenizer/sample sets. Callers must not modify the lists returned."""
    signature = (
        type(tokenizer).__name__,
        # Loaded tokenizers are identified by where they came from; in-memory ones only by themselves.
        getattr(tokenizer, "name_or_path", "") or id(tokenizer),
        len(tokenizer),
        getattr(tokenizer, "chat_template", None),
        tokenizer.eos_token,
        system_prompt,
        hash(tuple(prompt_key(p) for p in prompts)),
        hash(tuple(c if isinstance(c, str) else prompt_key(c) for c in completions)),
    )
    if signature not in _ENCODED:
        texts = [
            render_conversation(tokenizer, p, c, system_prompt=system_prompt)
            for p, c in zip(prompts, completions, strict=True)
        ]
        while len(_ENCODED) >= _ENCODED_SETS:
            _ENCODED.pop(next(iter(_ENCODED)))
        _ENCODED[signature] = encode_rendered(tokenizer, texts)
    return _ENCODED[signature]


def _name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
