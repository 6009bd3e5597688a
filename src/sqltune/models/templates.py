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
"""

from __future__ import annotations

from dataclasses import dataclass

from sqltune.errors import ConfigError

Turn = tuple[str, str | None]  # (user text, response text or None for the turn being predicted)


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
            return _encode_with_chat_template(tokenizer, turns, system)
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


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _encode_with_chat_template(tokenizer, turns: list[Turn], system: str | None):
    """Split the tokenizer's chat template into per-turn prompt and response text by rendering the
    conversation up to each point; each rendering must extend the previous one."""
    messages: list[dict] = [{"role": "system", "content": system}] if system else []
    rendered = ""
    pieces = []
    for user, response in turns:
        messages.append({"role": "user", "content": user})
        asked = _render(tokenizer, messages, generation_prompt=True)
        if not asked.startswith(rendered):
            raise ConfigError(
                "the tokenizer's chat template does not render turns incrementally; set template="
            )
        prompt_text, rendered = asked[len(rendered) :], asked
        answer: list[int] = []
        if response is not None:
            messages.append({"role": "assistant", "content": response})
            answered = _render(tokenizer, messages, generation_prompt=False)
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
