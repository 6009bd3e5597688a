"""The questions of a registered dataset as the token ids a model is asked with.

The prompt of every question is rebuilt from its `Example` and `Schema` with the prompt options the
model was trained with (the run card's), encoded with the run's chat template, and shortened by
`fit_to_budget` with the rule training used: prompt + answer within `cutoff_len`. The answer is not
known yet, so the room kept for it is a typical long answer of the training data (the 95th
percentile of its answer lengths, from the run card), not `max_new_tokens`: a prompt that training
kept whole is kept whole here too. Generation may still run to `max_new_tokens`. Nothing is
protected from shortening: the gold SQL is not known at prediction time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sqltune.args import PromptArguments
from sqltune.data.example import Example
from sqltune.data.prompts import Prompt
from sqltune.data.records import Dataset, prepare_schemas
from sqltune.errors import DataError
from sqltune.models.encoding import fit_to_budget
from sqltune.models.templates import Template
from sqltune.runcard import RunCard

DEFAULT_CUTOFF = 1024
DEFAULT_ANSWER_TOKENS = 64  # room for the answer when no run card says how long answers are


@dataclass
class Question:
    index: int  # position in the dataset (the gold file's order)
    example: Example
    prompt_ids: list[int]
    shortened: bool  # schema values or tables were dropped to fit
    fits: bool  # False: even the shortest schema is over the budget (the prompt is used anyway)
    prompt: Prompt | None = None  # the fitted prompt (its text opens an agent conversation)


def prompt_arguments_from_card(card: RunCard | None) -> PromptArguments | None:
    """The prompt options a run was trained with, if it recorded them."""
    if card is None or not card.prompt_options:
        return None
    names = {f.name for f in dataclasses.fields(PromptArguments)}
    return PromptArguments(**{k: v for k, v in card.prompt_options.items() if k in names})


def prompt_arguments(card: RunCard | None, dataset: Dataset) -> PromptArguments:
    """The run's prompt options when it recorded them, else the dataset's own."""
    return prompt_arguments_from_card(card) or dataset.prompt_args


def answer_room(card: RunCard | None, max_new_tokens: int) -> int:
    """Tokens kept free for the answer: the training answers' 95th percentile length when the run
    card has it, else `DEFAULT_ANSWER_TOKENS`; never more than `max_new_tokens`."""
    lengths = [s.get("response_tokens_p95") for s in (card.data_stats.values() if card else [])]
    typical = max((n for n in lengths if isinstance(n, int) and n > 0), default=DEFAULT_ANSWER_TOKENS)
    return min(typical, max_new_tokens)


def token_budget(cutoff_len: int | None, card: RunCard | None, max_new_tokens: int) -> int:
    """Prompt tokens available: `cutoff_len` (default: the run's) minus the room for the answer."""
    cutoff = cutoff_len or (card.cutoff_len if card is not None and card.cutoff_len else DEFAULT_CUTOFF)
    budget = cutoff - answer_room(card, max_new_tokens)
    if budget < 8:
        raise DataError(
            f"cutoff_len={cutoff} leaves no room for a prompt after max_new_tokens={max_new_tokens}"
        )
    return budget


def dataset_examples(dataset: Dataset, limit: int | None = None) -> list[Example]:
    """The dataset's examples (the first `limit`); a dataset without them cannot be predicted."""
    if not dataset.examples or not dataset.schemas:
        raise DataError(
            f"dataset '{dataset.name}' has no examples/schemas files: build it with `sqltune data`"
        )
    return dataset.examples[:limit] if limit else dataset.examples


def build_questions(
    dataset: Dataset,
    indices: list[int],
    prompt_args: PromptArguments,
    template: Template,
    tokenizer,
    budget: int,
) -> list[Question]:
    """The dataset's examples at `indices`, each encoded within `budget` prompt tokens."""
    examples = [dataset.examples[i] for i in indices]
    schemas = prepare_schemas(dataset.schemas, {e.db_id for e in examples}, prompt_args)
    questions = []
    for index, example in zip(indices, examples):
        fitted = fit_to_budget(example, schemas[example.db_id], prompt_args, template, tokenizer, budget)
        shortening = fitted.shortening
        shortened = shortening.values_dropped or shortening.tables_dropped > 0
        questions.append(Question(index, example, fitted.prompt_ids, shortened, fitted.fits, fitted.prompt))
    return questions
