"""From a `Prompt` to token ids: the one path shared by training and prediction.

Training needs (prompt ids, response ids) with the loss on the response only; prediction needs the
same prompt ids without the response. Both call `encode_prompt`/`encode_example`, and both shorten
an over-long prompt with `fit_to_budget` (the schema loses sample values, then its least related
tables, by `sqltune.data.prompts.fit_prompt`), so a model never sees a prompt at prediction time
that was formatted or shortened differently from the ones it learned on.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqltune.args import PromptArguments
from sqltune.data.example import Example
from sqltune.data.prompts import Prompt, Shortening, fit_prompt, tables_in_sql
from sqltune.data.schema import Schema
from sqltune.models.templates import Message, Template, Turn

IGNORE_INDEX = -100  # label of a position that carries no loss (PyTorch's cross-entropy default)


def prompt_turns(prompt: Prompt, response: str | None) -> list[Turn]:
    """The conversation a prompt stands for: the instruction (schema) opens the first user turn,
    earlier turns keep their SQL answers, the last turn is the question."""
    users = [q for q, _ in prompt.history] + [prompt.input]
    answers: list[str | None] = [a for _, a in prompt.history] + [response]
    users[0] = prompt.instruction + users[0]
    return list(zip(users, answers))


def encode_prompt(prompt: Prompt, template: Template, tokenizer, system: str | None = None) -> list[int]:
    """The exact token ids a model trained on this template sees before its answer (prediction)."""
    ids: list[int] = []
    for prompt_ids, response_ids in template.encode(tokenizer, prompt_turns(prompt, None), system):
        ids += prompt_ids + response_ids
    return ids


def encode_example(
    prompt: Prompt, response: str, template: Template, tokenizer, system: str | None = None
) -> tuple[list[int], list[int]]:
    """(input ids, labels) for training: labels copy the last response's ids and are `IGNORE_INDEX`
    everywhere else (instruction, history turns and their answers, the question)."""
    pieces = template.encode(tokenizer, prompt_turns(prompt, response), system)
    input_ids: list[int] = []
    labels: list[int] = []
    for index, (prompt_ids, response_ids) in enumerate(pieces):
        input_ids += prompt_ids + response_ids
        last = index == len(pieces) - 1
        labels += [IGNORE_INDEX] * len(prompt_ids) + (
            response_ids if last else [IGNORE_INDEX] * len(response_ids)
        )
    return input_ids, labels


def encode_conversation(
    messages: list[Message],
    template: Template,
    tokenizer,
    system: str | None = None,
    tools: list[dict] | None = None,
) -> tuple[list[int], list[int]]:
    """(input ids, labels) of an agent conversation: every assistant and function_call turn is
    labelled (the model learns to call tools and to answer); user turns, observations, the system
    text and the tool list are `IGNORE_INDEX`. A conversation that ends in a prompt (the turn to be
    answered) gives its prompt ids, all unlabelled: what the agent loop generates from."""
    input_ids: list[int] = []
    labels: list[int] = []
    for prompt_ids, response_ids in template.encode_messages(tokenizer, messages, system, tools):
        input_ids += prompt_ids + response_ids
        labels += [IGNORE_INDEX] * len(prompt_ids) + response_ids
    return input_ids, labels


@dataclass
class FittedPrompt:
    prompt: Prompt
    prompt_ids: list[int]
    shortening: Shortening

    @property
    def fits(self) -> bool:
        return self.shortening.fits


def fit_to_budget(
    example: Example,
    schema: Schema,
    prompt_args: PromptArguments,
    template: Template,
    tokenizer,
    budget: int,
    reserved: int = 0,
    protect_gold_tables: bool = False,
    system: str | None = None,
) -> FittedPrompt:
    """Build `example`'s prompt and shorten its schema until prompt ids + `reserved` <= `budget`.

    Training: `budget=cutoff_len`, `reserved=len(response ids)`, `protect_gold_tables=True` (a table
    the gold SQL uses is never dropped). Prediction: `budget=cutoff_len` minus the room kept for
    an answer (`sqltune.infer.questions.answer_room`), `reserved=0`, nothing protected (the gold SQL is unknown). `fits` is False when even the
    shortest schema is too long; training then drops the example.
    """
    last: list = [None, []]  # the prompt `fits` saw last and its ids (fit_prompt returns that prompt)

    def fits(prompt: Prompt) -> bool:
        last[:] = [prompt, encode_prompt(prompt, template, tokenizer, system)]
        return len(last[1]) + reserved <= budget

    protected = tables_in_sql(example.sql, schema) if protect_gold_tables else None
    prompt, shortening = fit_prompt(example, schema, prompt_args, fits, protected)
    ids = last[1] if last[0] is prompt else encode_prompt(prompt, template, tokenizer, system)
    return FittedPrompt(prompt, ids, shortening)
