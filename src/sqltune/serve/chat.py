"""Chat messages to a prompt, and a generated text back to OpenAI's choices.

A conversation is encoded by the model's own chat template (`sqltune.models.templates`: a run's
template from its run card, else the tokenizer's chat template), the same `Template.encode` that
training and `sqltune predict` use, so a fine-tuned model is asked in the format it learned.
OpenAI's messages become that function's turns: system (and "developer") messages make the system
text, each user message opens a turn and the assistant message after it is that turn's answer.

Stop sequences are applied to the finished text: the engine stops at the template's stop tokens
and `max_tokens`, and the text is cut before the first stop sequence it holds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqltune.models.templates import Template, Turn
from sqltune.serve.errors import ApiError

SYSTEM_ROLES = ("system", "developer")  # "developer" is OpenAI's newer name for system messages
_PIECE = re.compile(r"\s*\S+|\s+")


def conversation(messages: Sequence[tuple[str, str]]) -> tuple[str | None, list[Turn]]:
    """(system text or None, turns) of OpenAI-style (role, content) messages; the last turn is the
    one to answer. Consecutive messages of one role are joined by a blank line."""
    systems = [content for role, content in messages if role in SYSTEM_ROLES]
    turns: list[Turn] = []
    for role, content in messages:
        if role in SYSTEM_ROLES:
            continue
        if role == "user":
            if turns and turns[-1][1] is None:
                turns[-1] = (turns[-1][0] + "\n\n" + content, None)
            else:
                turns.append((content, None))
        elif role == "assistant":
            if not turns:
                raise ApiError(
                    400, "messages: an assistant message must follow a user message", param="messages"
                )
            user, answer = turns[-1]
            turns[-1] = (user, content if answer is None else answer + "\n\n" + content)
        else:
            raise ApiError(400, f"messages: unsupported role '{role}'", param="messages")
    if not turns or turns[-1][1] is not None:
        raise ApiError(400, "messages: the last message must be from the user", param="messages")
    return ("\n\n".join(systems) if systems else None), turns


def encode_chat(template: Template, tokenizer, messages: Sequence[tuple[str, str]]) -> list[int]:
    """The token ids the model reads before its answer to `messages`."""
    system, turns = conversation(messages)
    ids: list[int] = []
    for prompt_ids, response_ids in template.encode(tokenizer, turns, system):
        ids += prompt_ids + response_ids
    return ids


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """The text before the earliest stop sequence, and whether one was found."""
    ends = [text.find(stop) for stop in stops if stop]
    ends = [end for end in ends if end >= 0]
    return (text[: min(ends)], True) if ends else (text, False)


def finish_reason(new_tokens: int, max_tokens: int, stopped: bool) -> str:
    """OpenAI's finish reason: "length" when the answer ran to `max_tokens` without a stop."""
    return "length" if not stopped and new_tokens >= max_tokens else "stop"


def pieces(text: str) -> list[str]:
    """The text in word-sized pieces (with their leading spaces) for streamed chunks; joined they
    give the text back exactly."""
    return _PIECE.findall(text)
