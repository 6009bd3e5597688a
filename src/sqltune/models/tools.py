"""Tool calls in text: how a tool list and a model's calls are written, and how calls are read back.

Agent conversations (LLaMA-Factory's sharegpt agent format) have a `tools` list of JSON schemas and
turns of role `function_call` (the model calls a tool; its value is `{"name": ..., "arguments":
{...}}` or a list of those, as JSON) and `observation` (what the tool returned). A chat template
that knows tools (its source uses `tools`, e.g. Qwen2.5, Llama 3.1, Hermes) renders them itself
through `apply_chat_template(..., tools=...)`. Every other template uses sqltune's default format:

* the tool list goes at the end of the system text, after `TOOL_PROMPT`, one JSON schema per line;
* a call is written as `<tool_call>\\n{"name": "...", "arguments": {...}}\\n</tool_call>` (the Hermes
  format that many open models were trained on), one block per call;
* an observation is a user turn that starts with `OBSERVATION_PREFIX`.

`parse_calls` reads calls back from generated text in the default format and in the two formats
tool-aware templates produce most (Hermes `<tool_call>` blocks, a bare JSON object with `name` and
`arguments`/`parameters`); text with no call is the model's final answer. A `<tool_call>` block
that is not JSON only because its one string argument holds unescaped double quotes (small models
write `"sql": "SELECT ... = "France""`) is read with that value as written. Our own code:
transformers renders tools but has no general parser for generated calls.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

TOOL_PROMPT = (
    "You can call these tools, given as JSON schemas:\n{tools}\n"
    "To call a tool, reply with only\n<tool_call>\n"
    '{{"name": "<tool name>", "arguments": {{<arguments as JSON>}}}}\n</tool_call>\n'
    "Each result comes back as an observation. When you know the answer, reply with the SQL alone."
)
OBSERVATION_PREFIX = "Observation:\n"
CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
# A call with one string argument whose value holds unescaped double quotes (`"sql": "... = "France""`),
# the JSON slip small models make most with SQL: the value runs to the closing `"}}`.
ONE_STRING_ARGUMENT = re.compile(
    r'\{\s*"name"\s*:\s*"(\w+)"\s*,\s*"(?:arguments|parameters)"\s*:\s*\{\s*"(\w+)"\s*:\s*"(.*)"\s*\}\s*\}',
    re.S,
)
ANOTHER_ARGUMENT = re.compile(r'"\s*,\s*"\w+"\s*:')  # then it was not one argument


class MalformedCall(ValueError):
    """Generated text that tries to call a tool but cannot be read as a call."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict = field(default_factory=dict)

    def as_json(self) -> str:
        return json.dumps({"name": self.name, "arguments": self.arguments}, ensure_ascii=False)


def function_schema(tool: dict) -> dict:
    """A tool as a plain function schema (`name`, `description`, `parameters`), whether it was given
    that way or in OpenAI's `{"type": "function", "function": {...}}` wrapping."""
    if not isinstance(tool, dict):
        raise ValueError(f"a tool must be a JSON object: {json.dumps(tool)[:80]}")
    schema = tool.get("function", tool) if tool.get("type") == "function" else tool
    if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
        raise ValueError(f"a tool needs a string 'name': {json.dumps(tool)[:80]}")
    return schema


def read_tools(value) -> list[dict]:
    """The tool list of a record: a JSON string or a list of schemas; normalised to plain schemas."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError("tools must be a list of JSON schemas")
    return [function_schema(tool) for tool in value]


def openai_tools(tools: list[dict]) -> list[dict]:
    """The schemas in the wrapping `apply_chat_template(tools=...)` expects."""
    return [{"type": "function", "function": tool} for tool in tools]


def tools_system_text(tools: list[dict]) -> str:
    """The default format's description of the tools, appended to the system text."""
    return TOOL_PROMPT.format(tools="\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools))


def _call(value) -> ToolCall:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        raise MalformedCall("a call needs a 'name'")
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):  # OpenAI style: arguments as a JSON string
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            raise MalformedCall(f"the arguments of '{value['name']}' are not JSON") from None
    if not isinstance(arguments, dict):
        raise MalformedCall(f"the arguments of '{value['name']}' are not a JSON object")
    return ToolCall(value["name"], arguments)


def read_function_call(value) -> list[ToolCall]:
    """The calls of a `function_call` turn in a dataset: a JSON object or list of objects (as text or
    already parsed)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise MalformedCall("a function_call turn must be JSON") from None
    calls = [_call(item) for item in (value if isinstance(value, list) else [value])]
    if not calls:
        raise MalformedCall("a function_call turn holds no call")
    return calls


def format_calls(calls: list[ToolCall]) -> str:
    """Calls in the default format (what the model learns to write)."""
    return "\n".join(f"<tool_call>\n{call.as_json()}\n</tool_call>" for call in calls)


def _lenient_call(block: str) -> ToolCall:
    """A call whose only argument is a string with unescaped quotes inside (see ONE_STRING_ARGUMENT),
    read with the value taken as written; anything else that is not JSON is malformed."""
    match = ONE_STRING_ARGUMENT.fullmatch(block.strip())
    if match is None or ANOTHER_ARGUMENT.search(match.group(3)):
        raise MalformedCall(f"not a JSON call: {block[:60]!r}")
    name, argument, value = match.groups()
    return ToolCall(name, {argument: value.replace('\\"', '"')})


def parse_calls(text: str) -> list[ToolCall]:
    """The tool calls in generated text, or [] when it calls none (a final answer).
    Raises `MalformedCall` when the text opens a call that cannot be read."""
    blocks = CALL_BLOCK.findall(text)
    if blocks:
        calls = []
        for block in blocks:
            try:
                calls.append(_call(json.loads(block)))
            except json.JSONDecodeError:
                calls.append(_lenient_call(block))
        return calls
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            return []  # not a call: the answer itself (e.g. a JSON-looking string) is judged later
        if isinstance(value, dict) and "name" in value and ({"arguments", "parameters"} & value.keys()):
            return [_call(value)]
    return []


def supports_tools(tokenizer) -> bool:
    """Whether the tokenizer's chat template renders a `tools` list itself."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = " ".join(template.values())
    return bool(template) and "tools" in template
