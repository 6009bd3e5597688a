"""The tool-call text format (`sqltune.models.tools`): tool lists, writing calls and reading them back."""

import json

import pytest

from sqltune.infer.tools import TOOLS
from sqltune.models.tools import (
    MalformedCall,
    ToolCall,
    format_calls,
    parse_calls,
    read_function_call,
    read_tools,
    supports_tools,
    tools_system_text,
)

EXECUTE = ToolCall("execute_sql", {"sql": "SELECT name FROM singer WHERE country = 'France'"})
LIST = ToolCall("list_tables", {})


@pytest.mark.parametrize(
    "calls", [[EXECUTE], [LIST, EXECUTE], [ToolCall("describe_table", {"table": "été"})]]
)
def test_formatted_calls_parse_back_unchanged(calls):
    text = format_calls(calls)
    assert text.startswith("<tool_call>\n{") and text.endswith("}\n</tool_call>")
    assert text.count("<tool_call>") == len(calls)
    assert parse_calls(text) == calls
    assert parse_calls(f"Let me look first.\n{text}\n") == calls  # text around the blocks is ignored


def test_calls_in_the_shapes_models_write():
    assert parse_calls('<tool_call>{"name": "list_tables"}') == [LIST]  # unclosed, no arguments
    bare = '{"name": "execute_sql", "parameters": {"sql": "SELECT 1"}}'  # bare JSON, "parameters"
    assert parse_calls(bare) == [ToolCall("execute_sql", {"sql": "SELECT 1"})]
    as_string = json.dumps({"name": "execute_sql", "arguments": json.dumps({"sql": "SELECT 1"})})
    assert parse_calls(f"<tool_call>\n{as_string}\n</tool_call>") == [
        ToolCall("execute_sql", {"sql": "SELECT 1"})
    ]
    assert read_function_call(as_string) == [ToolCall("execute_sql", {"sql": "SELECT 1"})]
    assert read_function_call(json.dumps([LIST.__dict__, EXECUTE.__dict__])) == [LIST, EXECUTE]
    assert read_function_call({"name": "list_tables", "arguments": ""}) == [LIST]  # already parsed


@pytest.mark.parametrize(
    "text",
    [
        "SELECT count(*) FROM singer",
        "SELECT '{\"name\": 1}' FROM singer",
        '{"name": "only a name"}',  # a JSON answer, not a call: no arguments
        '{"broken": ',
        "",
    ],
)
def test_answers_are_no_calls(text):
    assert parse_calls(text) == []


@pytest.mark.parametrize(
    "text, message",
    [
        ('<tool_call>\n{"name": "execute_sql", "arguments": {"sql": }\n</tool_call>', "not a JSON call"),
        (
            '<tool_call>\n{"name": "execute_sql", "arguments": {"sql": "SELECT 1 FROM t WHERE a = "x',
            "not a JSON call",
        ),
        (
            '<tool_call>\n{"name": "execute_sql", "arguments": {"sql": "a", "b": "c "d""}}\n</tool_call>',
            "not a JSON call",
        ),
        ('<tool_call>\n{"arguments": {"sql": "SELECT 1"}}\n</tool_call>', "needs a 'name'"),
        ('<tool_call>\n{"name": "", "arguments": {}}\n</tool_call>', "needs a 'name'"),
        ('<tool_call>\n["execute_sql"]\n</tool_call>', "needs a 'name'"),
        (
            '<tool_call>\n{"name": "execute_sql", "arguments": ["SELECT 1"]}\n</tool_call>',
            "not a JSON object",
        ),
        ('{"name": "execute_sql", "arguments": "SELECT 1"}', "are not JSON"),
        ('{"name": "execute_sql", "arguments": 7}', "not a JSON object"),
    ],
)
def test_malformed_calls_raise(text, message):
    with pytest.raises(MalformedCall, match=message):
        parse_calls(text)


def test_unescaped_quotes_in_the_one_string_argument_are_read_as_written():
    text = (
        '<tool_call>\n{"name": "execute_sql", "arguments": {"sql": "SELECT name FROM singer WHERE '
        'country  =  "France" AND x = \\"y\\""}}\n</tool_call>'
    )
    sql = 'SELECT name FROM singer WHERE country  =  "France" AND x = "y"'
    assert parse_calls(text) == [ToolCall("execute_sql", {"sql": sql})]


@pytest.mark.parametrize(
    "value, message",
    [("SELECT 1", "must be JSON"), ("[]", "holds no call"), ('{"arguments": {}}', "needs a 'name'")],
)
def test_dataset_function_calls_that_are_not_calls(value, message):
    with pytest.raises(MalformedCall, match=message):
        read_function_call(value)


def test_tool_lists_plain_openai_wrapped_or_json_text():
    plain = read_tools(json.dumps(TOOLS))
    assert plain == TOOLS and [t["name"] for t in plain] == ["list_tables", "describe_table", "execute_sql"]
    wrapped = [{"type": "function", "function": tool} for tool in TOOLS]
    assert read_tools(wrapped) == TOOLS and read_tools(json.dumps(wrapped)) == TOOLS
    assert read_tools(TOOLS[0]) == [TOOLS[0]]  # a single schema
    assert read_tools("") == [] and read_tools("  ") == []
    for bad in ("[{bad json", "[1]", '[{"description": "no name"}]', "3"):
        with pytest.raises(ValueError):
            read_tools(bad)
    text = tools_system_text(TOOLS)
    assert all(json.dumps(tool) in text for tool in TOOLS) and "<tool_call>" in text


def test_supports_tools_reads_the_chat_template(tiny_tokenizer):
    class Tok:
        chat_template = None

    assert not supports_tools(Tok()) and not supports_tools(tiny_tokenizer)  # tiny ChatML: no tools
    Tok.chat_template = "{% if tools %}{{ tools | tojson }}{% endif %}"
    assert supports_tools(Tok())
    Tok.chat_template = {"default": "plain", "tool_use": "{{ tools }}"}
    assert supports_tools(Tok())
