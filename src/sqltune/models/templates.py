"""Chat templates: how the turns of a conversation become the token sequence a model is trained on.

A template splits every turn into a *prompt* part (the user's text with the role markers around it)
and a *response* part (the model's answer with its end marker). Training puts the loss on the last
response only; prediction stops after the last prompt part. Both go through `Template.encode`, so
a model is always asked in exactly the format it was trained on.

* `hf` uses the tokenizer's own chat template (`tokenizer.apply_chat_template`): the prompt and
  response parts are the differences between renderings of growing conversations.
* The registry (`default`/`plain`, `llama2`, `llama3`, `chatml`/`qwen`, `mistral`, `codellama`)
  covers base models whose tokenizer has no chat template. They are written as format strings here
  because transformers ships no template registry of its own.
* `auto` picks `hf` when the tokenizer has a chat template and `default` otherwise.

Each part is tokenised on its own and the ids concatenated, so a response never merges with the
prompt's last token.

Agent conversations (`encode_messages`) add two roles: `function_call` (a response that calls tools)
and `observation` (a prompt part holding a tool's result), and a `tools` list. A tokenizer whose chat
template knows tools renders all three itself; every other template writes them in the default
format of `sqltune.models.tools`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqltune.errors import ConfigError
from sqltune.models import tools as tool_format

Turn = tuple[str, str | None]  # (user text, response text or None for the turn being predicted)
Message = tuple[str, str]  # (role, content): user, assistant, function_call (JSON calls), observation
PROMPT_ROLES = ("user", "observation")
RESPONSE_ROLES = ("assistant", "function_call")


@dataclass(frozen=True)
class Template:
    """A chat format. The strings take `{content}`; special tokens are written as text."""

    name: str
    user: str = "{content}"
    assistant: str = "{content}"  # the response (+ end marker); see `encode` for the final stop token
    system: str = ""  # prepended to the first user turn when a system text is given
    default_system: str = ""
    bos: bool = False  # start with the tokenizer's BOS token
    stop_words: tuple[str, ...] = ()  # extra tokens that end a response (besides the tokenizer's EOS)

    # -- encoding -----------------------------------------------------------------------------------
    def encode(
        self, tokenizer, turns: list[Turn], system: str | None = None
    ) -> list[tuple[list[int], list[int]]]:
        """Token ids of each turn as (prompt ids, response ids); the response ids of a turn whose
        response is None are empty (the turn to be answered)."""
        if not turns:
            raise ValueError("a conversation needs at least one turn")
        if self.name == "hf":
            pairs = [
                (
                    {"role": "user", "content": user},
                    None if answer is None else {"role": "assistant", "content": answer},
                )
                for user, answer in turns
            ]
            return _encode_with_chat_template(tokenizer, pairs, system)
        system = self.default_system if system is None else system
        stops = self.stop_token_ids(tokenizer)
        pieces = []
        for index, (user, response) in enumerate(turns):
            text = self.user.format(content=user)
            if index == 0 and system and self.system:
                text = self.system.format(content=system) + text
            prompt = _ids(tokenizer, text)
            if index == 0 and self.bos and tokenizer.bos_token_id is not None:
                prompt = [tokenizer.bos_token_id, *prompt]
            answer: list[int] = []
            if response is not None:
                answer = _ids(tokenizer, self.assistant.format(content=response))
                # A response must end with a token generation stops at: the template's end marker
                # when the tokenizer has it as one token, otherwise the tokenizer's EOS.
                if (not answer or answer[-1] not in stops) and tokenizer.eos_token_id is not None:
                    answer.append(tokenizer.eos_token_id)
            pieces.append((prompt, answer))
        return pieces

    def encode_messages(
        self,
        tokenizer,
        messages: list[Message],
        system: str | None = None,
        tools: list[dict] | None = None,
    ) -> list[tuple[list[int], list[int]]]:
        """Token ids of an agent conversation as (prompt ids, response ids) pairs: `messages`
        alternate a prompt role (user, observation) and a response role (assistant, function_call);
        a last prompt without a response is the one to be answered. Raises ValueError on a
        conversation that does not alternate or a function_call that is not JSON calls."""
        pairs = _pair(messages)
        if self.name == "hf" and tool_format.supports_tools(tokenizer):
            chat = [
                (_chat_message(*prompt), None if answer is None else _chat_message(*answer))
                for prompt, answer in pairs
            ]
            return _encode_with_chat_template(tokenizer, chat, system, tools or None)
        turns = [
            (_plain_text(*prompt), None if answer is None else _plain_text(*answer))
            for prompt, answer in pairs
        ]
        if tools:  # the tool list ends the system text, or opens the conversation without a system slot
            tools_text = tool_format.tools_system_text(tools)
            if self.system or self.name == "hf":
                base = self.default_system if system is None else system
                system = "\n\n".join(part for part in (base, tools_text) if part)
            else:
                turns[0] = (f"{tools_text}\n\n{turns[0][0]}", turns[0][1])
        return self.encode(tokenizer, turns, system)

    def stop_token_ids(self, tokenizer) -> list[int]:
        """Ids that end a generated response: the tokenizer's EOS and the template's stop words."""
        ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
        for word in self.stop_words:
            token = tokenizer.convert_tokens_to_ids(word)
            if isinstance(token, int) and token != tokenizer.unk_token_id and token not in ids:
                ids.append(token)
        return ids


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _render(tokenizer, messages: list[dict], generation_prompt: bool, **options) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt, **options
    )


def _pair(messages: list[Message]) -> list[tuple[Message, Message | None]]:
    """(prompt message, response message or None) pairs of an alternating conversation."""
    pairs: list[tuple[Message, Message | None]] = []
    for index in range(0, len(messages), 2):
        prompt = messages[index]
        answer = messages[index + 1] if index + 1 < len(messages) else None
        if prompt[0] not in PROMPT_ROLES or (answer is not None and answer[0] not in RESPONSE_ROLES):
            roles = ", ".join(role for role, _ in messages)
            raise ValueError(
                f"turns must alternate user/observation and assistant/function_call, got {roles}"
            )
        pairs.append((prompt, answer))
    if not pairs:
        raise ValueError("a conversation needs at least one turn")
    return pairs


def _calls(content: str) -> list[tool_format.ToolCall]:
    try:
        return tool_format.read_function_call(content)
    except tool_format.MalformedCall as err:
        raise ValueError(str(err)) from None


def _plain_text(role: str, content: str) -> str:
    """A message as the text of a template without tool support (the default tool format)."""
    if role == "observation":
        return tool_format.OBSERVATION_PREFIX + content
    if role == "function_call":
        return tool_format.format_calls(_calls(content))
    return content


def _chat_message(role: str, content: str) -> dict:
    """A message as a tool-aware chat template expects it."""
    if role == "observation":
        return {"role": "tool", "content": content}
    if role == "function_call":
        calls = [
            {"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in _calls(content)
        ]
        return {"role": "assistant", "content": "", "tool_calls": calls}
    return {"role": role, "content": content}


def _encode_with_chat_template(
    tokenizer, pairs: list[tuple[dict, dict | None]], system: str | None, tools: list[dict] | None = None
):
    """Split the tokenizer's chat template into per-turn prompt and response text by rendering the
    conversation up to each point; each rendering must extend the previous one."""
    messages: list[dict] = [{"role": "system", "content": system}] if system else []
    options = {"tools": tool_format.openai_tools(tools)} if tools else {}
    rendered = ""
    pieces = []
    for prompt, response in pairs:
        messages.append(prompt)
        asked = _render(tokenizer, messages, generation_prompt=True, **options)
        if not asked.startswith(rendered):
            raise ConfigError(
                "the tokenizer's chat template does not render turns incrementally; set template="
            )
        prompt_text, rendered = asked[len(rendered) :], asked
        answer: list[int] = []
        if response is not None:
            messages.append(response)
            answered = _render(tokenizer, messages, generation_prompt=False, **options)
            if not answered.startswith(rendered):
                raise ConfigError(
                    "the tokenizer's chat template renders answers inconsistently; set template="
                )
            answer = _ids(tokenizer, answered[len(rendered) :])
            rendered = answered
        pieces.append((_ids(tokenizer, prompt_text), answer))
    return pieces


_LLAMA2_SYSTEM = "<<SYS>>\n{content}\n<</SYS>>\n\n"
TEMPLATES: dict[str, Template] = {
    "hf": Template("hf"),
    "default": Template("default", user="{content}\n", assistant="{content}"),
    "llama2": Template(
        "llama2",
        user="[INST] {content} [/INST]",
        assistant=" {content} ",
        system=_LLAMA2_SYSTEM,
        bos=True,
    ),
    "codellama": Template("codellama", user="[INST] {content} [/INST]", assistant=" {content} ", bos=True),
    "mistral": Template("mistral", user="[INST] {content}[/INST]", assistant="{content}", bos=True),
    "llama3": Template(
        "llama3",
        user="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        assistant="{content}<|eot_id|>",
        system="<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
        bos=True,
        stop_words=("<|eot_id|>",),
    ),
    "chatml": Template(
        "chatml",
        user="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
        assistant="{content}<|im_end|>",
        system="<|im_start|>system\n{content}<|im_end|>\n",
        stop_words=("<|im_end|>",),
    ),
}
ALIASES = {"plain": "default", "qwen": "chatml", "smollm2": "chatml"}


def get_template(name: str, tokenizer=None) -> Template:
    """The template called `name`; `auto` resolves to `hf` when the tokenizer has a chat template."""
    key = ALIASES.get(name.lower(), name.lower())
    if key == "auto":
        key = "hf" if tokenizer is not None and getattr(tokenizer, "chat_template", None) else "default"
    if key not in TEMPLATES:
        known = ", ".join(["auto", *TEMPLATES, *ALIASES])
        raise ConfigError(f"template: unknown '{name}', choose one of {known}")
    if key == "hf" and tokenizer is not None and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("template=hf: this tokenizer has no chat template; choose another template")
    return TEMPLATES[key]
