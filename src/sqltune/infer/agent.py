"""The SQL agent: the model calls tools on the question's database until it answers with SQL.

`sqltune predict decoding=agent max_turns=4` and `sqltune ask --agent` run this loop. Each question
is a conversation that opens with exactly the single-shot prompt (the schema and the question) and
the tool list of `sqltune.infer.tools.TOOLS` (`list_tables`, `describe_table`, `execute_sql`). The
conversations advance in lock step: every round encodes each live conversation with
`encode_conversation` (the encoding agent training uses) and generates one response for all of them
in one batched `engine.generate` call, greedily. Then, for each response:

* a tool call (`sqltune.models.tools.parse_calls`) is run by `SqlTools` (read-only, with a time limit
  and a row cap: a destructive or runaway query is only an error observation), and the call and
  its observation are appended as a `function_call` and an `observation` turn;
* text without a call is the final answer; its SQL is extracted as the single-shot path does
  (`sqltune.sql_extract.extract_sql`).

A conversation also ends, with the best SQL so far (the last executed query that returned rows, else
the last one that ran, else the last SQL the model wrote), when the model

* still calls a tool at its `max_turns`-th response ("max_turns"; that last call is run first, so
  its result counts),
* writes a call that cannot be read ("malformed call"),
* repeats its previous call exactly ("repeated call": a loop; the call is not run again),
* or when its next prompt would exceed the token budget ("context full").

The stop reason, the number of responses and the whole conversation are kept with the answer.
This is our own code: transformers renders tool conversations but has no loop that runs them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqltune.args import GeneratingArguments
from sqltune.data.prompts import Prompt
from sqltune.data.schema import Schema
from sqltune.infer.answers import Answer
from sqltune.infer.engine import Engine
from sqltune.infer.tools import TOOLS, SqlTools
from sqltune.models.encoding import encode_conversation, prompt_turns
from sqltune.models.templates import Message, Template
from sqltune.models.tools import MalformedCall, ToolCall, parse_calls
from sqltune.sql_extract import extract_sql

STOP_REASONS = ("answered", "max_turns", "malformed call", "repeated call", "context full")


@dataclass
class AgentTask:
    """One question for the agent: its opening turns, the database its tools run on and its schema."""

    messages: list[Message]  # the user prompt (after earlier turns and their SQL in a multi-turn dataset)
    target: str | Path  # a SQLite file or a server URL
    schema: Schema


@dataclass
class AgentAnswer(Answer):
    """An `Answer` with the conversation that led to it."""

    trajectory: list[Message] = field(default_factory=list)
    turns: int = 0  # the model's responses
    stop_reason: str = ""  # one of STOP_REASONS
    first_sql: str = ""  # the first SQL the model wrote (run with execute_sql, or its answer)
    tool_calls: int = 0  # calls run
    prompt_tokens: int = 0  # of the first prompt

    @property
    def changed(self) -> bool:
        """Whether the final SQL differs from the first one the model wrote."""
        return self.sql != self.first_sql

    def fields(self) -> dict:
        """What a predictions row records about the conversation."""
        return {
            "trajectory": [{"role": role, "content": content} for role, content in self.trajectory],
            "turns": self.turns,
            "stop_reason": self.stop_reason,
            "first_sql": self.first_sql,
            "changed": self.changed,
            "tool_calls": self.tool_calls,
        }


def opening_messages(prompt: Prompt) -> list[Message]:
    """The conversation a prompt opens: the single-shot prompt text as the first user turn (earlier
    turns of a multi-turn dataset as user/assistant pairs before the question)."""
    messages: list[Message] = []
    for user, sql in prompt_turns(prompt, None):
        messages.append(("user", user))
        if sql is not None:
            messages.append(("assistant", sql))
    return messages


def tools_overhead(template: Template, tokenizer) -> int:
    """Prompt tokens the tool list adds to a conversation: room a schema must leave for it."""
    probe: list[Message] = [("user", "question")]
    with_tools, _ = encode_conversation(probe, template, tokenizer, tools=TOOLS)
    without, _ = encode_conversation(probe, template, tokenizer)
    return max(len(with_tools) - len(without), 0)


def agent_settings(settings: GeneratingArguments) -> GeneratingArguments:
    """One greedy response per turn, ended by the model's stop token, not at a `;`: a tool call holds
    SQL (whose `;` does not end the response)."""
    return dataclasses.replace(
        settings, decoding="single", do_sample=False, num_beams=1, stop_after_statement=False
    )


def calls_json(calls: list[ToolCall]) -> str:
    """A function_call turn's content: the call, or the list of calls, as JSON."""
    if len(calls) == 1:
        return calls[0].as_json()
    return json.dumps([{"name": c.name, "arguments": c.arguments} for c in calls], ensure_ascii=False)


@dataclass
class _Conversation:
    index: int
    tools: SqlTools
    messages: list[Message]
    prompt_ids: list[int] = field(default_factory=list)
    first_prompt_tokens: int = 0
    turns: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    tool_calls: int = 0
    previous_calls: list[ToolCall] | None = None
    written: list[tuple[str, str]] = field(default_factory=list)  # (SQL, "rows" | "ran" | "failed")
    raw: str = ""
    done: bool = False

    def best_sql(self) -> str:
        """The last query that returned rows, else the last that ran, else the last one written."""
        for wanted in ("rows", "ran", None):
            for sql, outcome in reversed(self.written):
                if wanted is None or outcome == wanted:
                    return sql
        return extract_sql(self.raw)

    def finish(self, reason: str, sql: str | None = None) -> AgentAnswer:
        self.done = True
        sql = self.best_sql() if sql is None else sql
        first = self.written[0][0] if self.written else sql
        return AgentAnswer(
            sql=sql,
            raw=self.raw,
            new_tokens=self.new_tokens,
            seconds=self.seconds,
            trajectory=list(self.messages),
            turns=self.turns,
            stop_reason=reason,
            first_sql=first,
            tool_calls=self.tool_calls,
            prompt_tokens=self.first_prompt_tokens,
        )

    def run_calls(self, calls: list[ToolCall]) -> str:
        """Run the calls; the observation text (one block per call)."""
        observations = []
        for call in calls:
            self.tools.last_result = None
            observations.append(self.tools.call(call))
            self.tool_calls += 1
            sql = call.arguments.get("sql") if call.name == "execute_sql" else None
            if isinstance(sql, str) and sql.strip():
                result = self.tools.last_result
                ran = result is not None and (result.ok or result.error == "too many rows")
                outcome = "failed" if not ran else ("rows" if result.rows else "ran")
                self.written.append((extract_sql(sql), outcome))
        return "\n\n".join(observations)


class Agent:
    """Runs agent conversations with an engine (see the module docstring).

    `budget` is the most prompt tokens a conversation may reach before it ends "context full";
    `timeout` (seconds per query) and `max_rows` bound every `execute_sql` call.
    """

    def __init__(
        self,
        engine: Engine,
        template: Template,
        settings: GeneratingArguments,
        budget: int,
        timeout: float = 2.0,
        max_rows: int = 100,
    ) -> None:
        self.engine = engine
        self.template = template
        self.settings = agent_settings(settings)
        self.max_turns = settings.max_turns
        self.budget = budget
        self.timeout = timeout
        self.max_rows = max_rows

    def encode(self, messages: list[Message]) -> list[int]:
        ids, _ = encode_conversation(messages, self.template, self.engine.tokenizer, tools=TOOLS)
        return ids

    def run(self, tasks: Sequence[AgentTask]) -> Iterator[list[tuple[int, AgentAnswer]]]:
        """Answer every task; yields `(task index, AgentAnswer)` pairs as conversations end."""
        toolboxes: dict[str, SqlTools] = {}  # one per database, shared by its conversations
        try:
            live = []
            for index, task in enumerate(tasks):
                key = str(task.target)
                if key not in toolboxes:
                    toolboxes[key] = SqlTools(task.target, task.schema, self.timeout, self.max_rows)
                conversation = _Conversation(index, toolboxes[key], list(task.messages))
                conversation.prompt_ids = self.encode(conversation.messages)
                conversation.first_prompt_tokens = len(conversation.prompt_ids)
                live.append(conversation)
            while live:  # one round: every live conversation gets its next response
                prompts = [c.prompt_ids for c in live]
                for batch in self.engine.generate(prompts, self.settings, 1):
                    began = time.perf_counter()
                    ended = []
                    for position, candidates in zip(batch.indices, batch.candidates):
                        conversation = live[position]
                        candidate = candidates[0]
                        conversation.new_tokens += candidate.new_tokens
                        answer = self.step(conversation, candidate.text)
                        if answer is not None:
                            ended.append((conversation, answer))
                    share = (batch.seconds + time.perf_counter() - began) / max(len(batch.indices), 1)
                    for position in batch.indices:
                        live[position].seconds += share
                    for conversation, answer in ended:
                        answer.seconds = conversation.seconds
                    if ended:
                        yield [(c.index, answer) for c, answer in ended]
                live = [c for c in live if not c.done]
        finally:
            for tools in toolboxes.values():
                tools.close()

    def step(self, conversation: _Conversation, text: str) -> AgentAnswer | None:
        """Take one response into the conversation: the final answer, or run its calls; returns the
        answer when the conversation ends, else None (its next prompt is ready)."""
        conversation.turns += 1
        conversation.raw = text
        try:
            calls = parse_calls(text)
        except MalformedCall:
            conversation.messages.append(("assistant", text))
            return conversation.finish("malformed call")
        if not calls:
            conversation.messages.append(("assistant", text))
            return conversation.finish("answered", extract_sql(text))
        conversation.messages.append(("function_call", calls_json(calls)))
        if calls == conversation.previous_calls:
            return conversation.finish("repeated call")
        conversation.previous_calls = calls
        conversation.messages.append(("observation", conversation.run_calls(calls)))
        if conversation.turns >= self.max_turns:
            return conversation.finish("max_turns")
        conversation.prompt_ids = self.encode(conversation.messages)
        if len(conversation.prompt_ids) > self.budget:
            return conversation.finish("context full")
        return None


def agent_answers(
    engine: Engine,
    template: Template,
    settings: GeneratingArguments,
    budget: int,
    questions: Sequence,
    schemas: dict[str, Schema],
    targets: Sequence[str | Path],
) -> Iterator[list[tuple[int, AgentAnswer]]]:
    """`sqltune predict decoding=agent`: the questions of `sqltune.infer.questions.build_questions`
    (their fitted prompts), each run on `targets[i]`; yields `(question position, AgentAnswer)`
    pairs as `sqltune.infer.answers.answer` does. Queries run `candidate_timeout` seconds at most."""
    tasks = [
        AgentTask(opening_messages(question.prompt), target, schemas[question.example.db_id])
        for question, target in zip(questions, targets)
    ]
    yield from Agent(engine, template, settings, budget, settings.candidate_timeout).run(tasks)
