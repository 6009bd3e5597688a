"""Training on tool-call (agent) records: LLaMA-Factory's agent format read, masked token by token
on every template path, and trained through the CLI on the tiny model."""

import json
import math
import re

import pytest
from transformers import AutoTokenizer

from sqltune.args import DataArguments
from sqltune.cli import main as cli
from sqltune.data.records import register
from sqltune.errors import ConfigError, DataError
from sqltune.infer.tools import TOOLS
from sqltune.models.encoding import IGNORE_INDEX, encode_conversation, prompt_turns
from sqltune.models.templates import get_template
from sqltune.models.tools import ToolCall, format_calls
from sqltune.runcard import RunCard
from sqltune.train.data import build_features, encode_samples, prompt_settings, read_samples
from tests.tiny import build_model_dir, make_dataset

# A Qwen2.5-like chat template that renders tools itself: the tool list in the system turn, calls
# as <tool_call> blocks of an assistant turn, tool results as user turns in <tool_response>.
TOOL_CHATML = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n<tools>' }}{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools><|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' and message.tool_calls %}{{- '<|im_start|>assistant' }}"
    '{%- for call in message.tool_calls %}{{- \'\\n<tool_call>\\n{"name": "\' + call.function.name'
    " + '\", \"arguments\": ' + (call.function.arguments | tojson) + '}\\n</tool_call>' }}{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- elif message.role != 'system' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

QUESTION = "How many singers are there?"
LIST = ToolCall("list_tables", {})
EXECUTE = ToolCall("execute_sql", {"sql": "SELECT count(*) FROM singer"})
TABLES_SEEN = "concert\nsinger\nstadium"
ROWS_SEEN = "n\n6 (1 row)"
ANSWER = "SELECT count(*) FROM singer"
CONVERSATION = [
    ("user", QUESTION),
    ("function_call", LIST.as_json()),
    ("observation", TABLES_SEEN),
    ("function_call", EXECUTE.as_json()),
    ("observation", ROWS_SEEN),
    ("assistant", ANSWER),
]


@pytest.fixture(scope="module")
def tool_tokenizer(tiny_tokenizer):
    """The tiny tokenizer with a chat template that knows tools."""
    import copy

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = TOOL_CHATML
    return tokenizer


def labelled_spans(input_ids: list[int], labels: list[int]) -> list[list[int]]:
    """The runs of labelled positions; a label is always its own input id."""
    spans: list[list[int]] = []
    previous = IGNORE_INDEX
    for token, label in zip(input_ids, labels):
        if label != IGNORE_INDEX:
            assert label == token
            if previous == IGNORE_INDEX:
                spans.append([])
            spans[-1].append(label)
        previous = label
    return spans


def expected_default(end: str) -> list[str]:
    return [format_calls([LIST]) + end, format_calls([EXECUTE]) + end, ANSWER + end]


def expected_native() -> list[str]:
    block = "<tool_call>\n{}\n</tool_call><|im_end|>\n"
    return [block.format(LIST.as_json()), block.format(EXECUTE.as_json()), ANSWER + "<|im_end|>\n"]


@pytest.mark.parametrize(
    "template_name, tool_aware, expected",
    [
        ("chatml", False, expected_default("<|im_end|>")),  # the registry's ChatML: default format
        ("hf", False, expected_default("<|im_end|>\n")),  # the tiny ChatML template has no tools
        ("hf", True, expected_native()),  # the chat template renders tools and calls itself
    ],
)
def test_labels_are_exactly_the_calls_and_the_answer(
    tiny_tokenizer, tool_tokenizer, template_name, tool_aware, expected
):
    tokenizer = tool_tokenizer if tool_aware else tiny_tokenizer
    template = get_template(template_name, tokenizer)
    input_ids, labels = encode_conversation(CONVERSATION, template, tokenizer, tools=TOOLS)
    assert len(input_ids) == len(labels)
    spans = labelled_spans(input_ids, labels)
    assert [tokenizer.decode(span) for span in spans] == expected
    unlabelled = tokenizer.decode([t for t, label in zip(input_ids, labels) if label == IGNORE_INDEX])
    for text in (QUESTION, TABLES_SEEN, ROWS_SEEN, *(tool["description"] for tool in TOOLS)):
        assert text in unlabelled
    if tool_aware:  # the pieces add up to the chat template's own rendering of the conversation
        messages = [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": "", "tool_calls": [_openai(LIST)]},
            {"role": "tool", "content": TABLES_SEEN},
            {"role": "assistant", "content": "", "tool_calls": [_openai(EXECUTE)]},
            {"role": "tool", "content": ROWS_SEEN},
            {"role": "assistant", "content": ANSWER},
        ]
        tools = [{"type": "function", "function": tool} for tool in TOOLS]
        rendered = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
        assert tokenizer.decode(input_ids) == rendered and "<tool_response>\nconcert" in rendered
    else:
        assert "Observation:\nconcert" in unlabelled
    # a conversation ending in a prompt: the ids the agent loop generates the answer from
    prompt_ids, prompt_labels = encode_conversation(CONVERSATION[:5], template, tokenizer, tools=TOOLS)
    assert input_ids[: len(prompt_ids)] == prompt_ids and labels[: len(prompt_ids)] == prompt_labels
    assert labels[len(prompt_ids) :] == input_ids[len(prompt_ids) :]  # only the answer follows


def _openai(call: ToolCall) -> dict:
    return {"type": "function", "function": {"name": call.name, "arguments": call.arguments}}


@pytest.mark.parametrize("template_name, tool_aware", [("chatml", False), ("hf", False), ("hf", True)])
def test_a_conversation_that_does_not_alternate_raises(
    tiny_tokenizer, tool_tokenizer, template_name, tool_aware
):
    tokenizer = tool_tokenizer if tool_aware else tiny_tokenizer
    template = get_template(template_name, tokenizer)
    for messages in (
        [("user", QUESTION), ("observation", TABLES_SEEN)],
        [("function_call", LIST.as_json()), ("assistant", ANSWER)],
        [("user", QUESTION), ("function_call", LIST.as_json()), ("assistant", ANSWER)],
    ):
        with pytest.raises(ValueError, match="must alternate"):
            encode_conversation(messages, template, tokenizer, tools=TOOLS)


# -- LLaMA-Factory's agent format ------------------------------------------------------------------
WEATHER_TOOLS = [
    {
        "name": "get_weather",
        "description": "Get the weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def glaive_rows() -> list[dict]:
    """Records in the shape of LLaMA-Factory's glaive_toolcall demo: tools as a JSON string,
    human/function_call/observation/gpt turns, some without a call."""
    rows = []
    for city, weather in (("Paris", "rain"), ("Rome", "sun"), ("Oslo", "snow")):
        call = json.dumps({"name": "get_weather", "arguments": {"city": city}})
        rows.append(
            {
                "conversations": [
                    {"from": "human", "value": f"What is the weather in {city}?"},
                    {"from": "function_call", "value": call},
                    {"from": "observation", "value": json.dumps({"weather": weather})},
                    {"from": "gpt", "value": f"It is {weather} in {city}."},
                ],
                "tools": json.dumps(WEATHER_TOOLS),
            }
        )
    rows.append(
        {
            "conversations": [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hello!"}],
            "tools": "[]",
        }
    )
    return rows


def register_glaive(data_dir, rows, name="glaive"):
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / f"{name}.json").write_text(json.dumps(rows))
    entry = {"file_name": f"{name}.json", "formatting": "sharegpt"}
    register(data_dir, name, {**entry, "columns": {"messages": "conversations", "tools": "tools"}})
    return data_dir


def test_agent_records_are_read_as_conversations(tmp_path, tiny_tokenizer):
    register_glaive(tmp_path, glaive_rows())
    samples = read_samples(tmp_path, "glaive")
    first = samples[0]
    assert [role for role, _ in first.messages] == ["user", "function_call", "observation", "assistant"]
    assert first.tools == WEATHER_TOOLS and first.system is None
    assert first.prompt.input == "What is the weather in Paris?" and first.response == "It is rain in Paris."
    assert samples[3].tools == [] and samples[3].messages == [("user", "Hello"), ("assistant", "Hello!")]
    template = get_template("hf", tiny_tokenizer)
    features, stats = encode_samples(samples, template, tiny_tokenizer, cutoff_len=2048)
    assert stats.kept == 4 and stats.tool_format == "default" and stats.as_dict()["tool_format"] == "default"
    labelled = [tiny_tokenizer.decode([t for t in f["labels"] if t != IGNORE_INDEX]) for f in features]
    assert labelled[0] == format_calls([ToolCall("get_weather", {"city": "Paris"})]) + (
        "<|im_end|>\nIt is rain in Paris.<|im_end|>\n"
    )
    # answer lengths count each response alone: prediction keeps room for one, not a whole trace
    spans = [len(span) for f in features for span in labelled_spans(f["input_ids"], f["labels"])]
    assert len(spans) == 3 * 2 + 1 and stats.response_tokens == sum(spans)
    assert (
        stats.response_tokens_p95
        == max(spans)
        < max(sum(t != IGNORE_INDEX for t in f["labels"]) for f in features)
    )
    # too long for cutoff_len: dropped and counted, never cut (no schema to shorten)
    longest = max(len(f["input_ids"]) for f in features)
    shorter = sorted(len(f["input_ids"]) for f in features)[-2]
    kept, stats = encode_samples(samples, template, tiny_tokenizer, cutoff_len=shorter)
    assert (
        stats.dropped_too_long == 1 and stats.kept == 3 and all(len(f["input_ids"]) < longest for f in kept)
    )


def test_plain_sharegpt_keeps_the_loss_on_the_last_answer(tmp_path, tiny_tokenizer):
    rows = [
        {
            "conversations": [
                {"from": "human", "value": "q1"},
                {"from": "gpt", "value": "SELECT 1"},
                {"from": "human", "value": "q2"},
                {"from": "gpt", "value": "SELECT 2"},
            ]
        }
    ]
    (tmp_path / "chat.json").write_text(json.dumps(rows))
    register(tmp_path, "chat", {"file_name": "chat.json", "formatting": "sharegpt"})
    samples = read_samples(tmp_path, "chat")
    assert samples[0].messages is None and samples[0].prompt.history == [("q1", "SELECT 1")]
    features, stats = encode_samples(samples, get_template("hf", tiny_tokenizer), tiny_tokenizer, 512)
    labelled = tiny_tokenizer.decode([t for t in features[0]["labels"] if t != IGNORE_INDEX])
    assert labelled == "SELECT 2<|im_end|>\n" and "tool_format" not in stats.as_dict()


def test_tag_names_follow_the_registry_entry(tmp_path):
    rows = [
        {
            "messages": [
                {"role": "system", "content": "You answer with SQL."},
                {"role": "user", "content": QUESTION},
                {"role": "tool_call", "content": EXECUTE.as_json()},
                {"role": "tool", "content": ROWS_SEEN},
                {"role": "assistant", "content": ANSWER},
            ],
            "functions": TOOLS,  # already a list
            "db_id": "concert_singer",
        }
    ]
    (tmp_path / "openai.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    tags = {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
        "function_tag": "tool_call",
        "observation_tag": "tool",
        "system_tag": "system",
    }
    columns = {"messages": "messages", "tools": "functions"}
    register(
        tmp_path,
        "oa",
        {"file_name": "openai.jsonl", "formatting": "sharegpt", "columns": columns, "tags": tags},
    )
    (sample,) = read_samples(tmp_path, "oa")
    assert (
        sample.system == "You answer with SQL." and sample.db_id == "concert_singer" and sample.tools == TOOLS
    )
    assert sample.messages == [x for x in CONVERSATION if x[1] not in (LIST.as_json(), TABLES_SEEN)]


def _with_bad_second(record: dict) -> list[dict]:
    return [glaive_rows()[0], record]


def _turns(*pairs) -> list[dict]:
    return [{"from": role, "value": value} for role, value in pairs]


BAD_RECORDS = [
    ({"conversations": _turns(("human", "q"), ("gpt", "a")), "tools": "[{bad"}, "record 2: bad tools"),
    ({"conversations": _turns(("human", "q"), ("gpt", "a")), "tools": "[3]"}, "record 2: bad tools"),
    (
        {
            "conversations": _turns(
                ("human", "q"), ("function_call", "SELECT 1"), ("observation", "x"), ("gpt", "a")
            )
        },
        "record 2: message 2 is not a tool call (a function_call turn must be JSON)",
    ),
    (
        {
            "conversations": _turns(
                ("human", "q"), ("function_call", '{"arguments": {}}'), ("observation", "x"), ("gpt", "a")
            )
        },
        "record 2: message 2 is not a tool call (a call needs a 'name')",
    ),
    (
        {"conversations": _turns(("human", "q"), ("observation", "x"), ("gpt", "a"), ("gpt", "b"))},
        "record 2: messages must alternate human/observation and gpt/function_call (message 2 is 'observation')",
    ),
    (
        {"conversations": _turns(("human", "q"), ("function_call", LIST.as_json()), ("observation", "x"))},
        "record 2: the conversation must end with a gpt/function_call message",
    ),
]


@pytest.mark.parametrize("record, message", BAD_RECORDS)
def test_bad_agent_records_name_dataset_and_line(tmp_path, record, message):
    register_glaive(tmp_path, _with_bad_second(record))
    with pytest.raises(DataError, match=re.escape(f"dataset 'glaive' {message}")):
        read_samples(tmp_path, "glaive")


# -- through the CLI -------------------------------------------------------------------------------
def train(model_dir, data_dir, out, *extra: str) -> int:
    argv = [
        "train",
        f"model_name_or_path={model_dir}",
        f"dataset_dir={data_dir}",
        f"output_dir={out}",
        "cutoff_len=2048",
        "per_device_train_batch_size=2",
        "logging_steps=1",
        "save_strategy=no",
        "lora_rank=8",
        "seed=0",
        *extra,
    ]
    return cli(argv)


def logged_losses(out) -> list[float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [row["loss"] for row in history if "loss" in row]


def test_llamafactory_agent_demo_trains_through_the_cli(tiny_model_dir, tmp_path, capsys):
    data = register_glaive(tmp_path / "data", glaive_rows())
    out = tmp_path / "run"
    options = ["dataset=glaive", "template=hf", "max_steps=20", "finetuning_type=full", "learning_rate=1e-2"]
    assert train(tiny_model_dir, data, out, *options) == 0
    losses = logged_losses(out)
    assert len(losses) == 20 and all(math.isfinite(loss) for loss in losses)
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4, losses  # the repeated set is being learned
    card = RunCard.load(out)
    assert card.template == "hf" and card.stage_settings["tool_format"] == "default"
    assert card.data_stats["glaive"]["kept"] == 4 and card.data_stats["glaive"]["tool_format"] == "default"
    capsys.readouterr()
    bad = register_glaive(tmp_path / "bad", _with_bad_second(BAD_RECORDS[2][0]))
    assert train(tiny_model_dir, bad, tmp_path / "bad_run", "dataset=glaive", "max_steps=1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset 'glaive' record 2: message 2 is not a tool call" in err[0], err


def sql_agent_dataset(data_dir, name: str, prompt_format: str) -> None:
    """Agent records as `sqltune data agent` writes them, from the tiny alpaca dataset's questions:
    the first human turn is the single-shot prompt, the tools are sqltune's, the answer the SQL."""
    rows = []
    for sample in read_samples(data_dir, "tiny_train"):
        first_turn = prompt_turns(sample.prompt, None)[0][0]
        call = json.dumps({"name": "execute_sql", "arguments": {"sql": sample.response}})
        conversation = _turns(("human", first_turn), ("function_call", call), ("observation", "x\n1"))
        rows.append(
            {
                "conversations": [*conversation, {"from": "gpt", "value": sample.response}],
                "tools": json.dumps(TOOLS),
                "db_id": sample.db_id,
                "kind": "direct",
            }
        )
    (data_dir / f"{name}.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    prompt = json.loads((data_dir / "dataset_info.json").read_text())["tiny_train"]["sqltune"]["prompt"]
    entry = {
        "file_name": f"{name}.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "tools": "tools"},
        "sqltune": {"prompt": {**prompt, "prompt_format": prompt_format}, "agent": {"direct": len(rows)}},
    }
    register(data_dir, name, entry)


def test_agent_and_alpaca_records_of_one_prompt_format_train_together(tmp_path, capsys):
    model_dir = build_model_dir(tmp_path / "tool-model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = TOOL_CHATML
    tokenizer.save_pretrained(model_dir)
    data = make_dataset(tmp_path / "data", count=6)
    sql_agent_dataset(data, "tiny_agent", "ddl")
    sql_agent_dataset(data, "tiny_agent_dbgpt", "dbgpt")
    assert prompt_settings(data, ["tiny_train", "tiny_agent"]).prompt_format == "ddl"
    with pytest.raises(ConfigError, match="different prompt formats"):
        prompt_settings(data, ["tiny_train", "tiny_agent_dbgpt"])
    features, stats = build_features(
        DataArguments(dataset_dir=str(data), cutoff_len=4096),
        ["tiny_train", "tiny_agent"],
        get_template("hf", tokenizer),
        tokenizer,
    )
    assert stats["tiny_agent"]["tool_format"] == "native" and "tool_format" not in stats["tiny_train"]
    out = tmp_path / "run"
    options = ["dataset=tiny_train,tiny_agent", "template=auto", "max_steps=2", "learning_rate=1e-3"]
    assert train(model_dir, data, out, *options, "cutoff_len=4096") == 0
    card = RunCard.load(out)
    assert card.template == "hf" and card.prompt_format == "ddl"
    assert card.stage_settings["tool_format"] == "native"
    assert card.data_stats["tiny_train"]["kept"] == 6 and card.data_stats["tiny_agent"]["kept"] == 6
    assert all(math.isfinite(loss) for loss in logged_losses(out))
    capsys.readouterr()
    assert train(model_dir, data, tmp_path / "mixed", "dataset=tiny_train,tiny_agent_dbgpt") == 2
    assert "different prompt formats" in capsys.readouterr().err
