"""The transformers engine: batched `generate` on CPU or GPU.

What makes it fast compared with asking one question at a time:

* questions are sorted by prompt length and answered `batch_size` at a time, so a batch pads little;
* prompts are padded on the left, so every row's next token is at the same position and the KV
  cache of the whole batch advances together;
* generation stops for the batch as soon as every row has produced a stop token (the tokenizer's
  EOS or the template's end-of-turn token), instead of running to `max_new_tokens`;
* a LoRA adapter is merged into the weights in memory (the extra adapter matmuls of every layer
  cost more than they are worth at inference), and the model runs in bfloat16 where the hardware
  does that fast (`sqltune.infer.engine.fast_dtype`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from sqltune.args import GeneratingArguments
from sqltune.infer.engine import Batch, Candidate, ModelSource, is_quantized, stop_token_ids


class ChosenTokenLogprobs(LogitsProcessor):
    """Records the log-probability of every sampled token, so sampled candidates can be ranked.

    A logits processor sees the scores of step t before the token is drawn; the token drawn at
    step t is the last input id at step t + 1. So each call keeps the log-softmax of its step and
    reads off, at the next call, the probability of the token that was drawn. Only one step's
    distribution is kept (transformers' `output_scores` would keep every step's). Registered
    before the temperature and top-p warpers, it measures the model's own distribution.
    """

    def __init__(self) -> None:
        self.previous: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self.previous = scores.float().log_softmax(-1)
        return scores

    def per_token(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """(rows, generated length) log-probabilities of `new_tokens`, the generated ids."""
        steps = self.steps[: new_tokens.shape[1]]
        if self.previous is not None and len(steps) < new_tokens.shape[1]:
            steps = [*steps, self.previous.gather(1, new_tokens[:, len(steps)].unsqueeze(1)).squeeze(1)]
        return torch.stack(steps, dim=1)


class HfEngine:
    """Batched generation with a transformers model (see the module docstring)."""

    def __init__(self, model, tokenizer, stop_ids: list[int], batch_size: int = 16, seed: int = 42) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self.batch_size = batch_size
        self.seed = seed
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]

    @classmethod
    def load(cls, source: ModelSource, dtype: str, batch_size: int = 16, seed: int = 42) -> HfEngine:
        import dataclasses

        from peft import PeftModel

        from sqltune.models.loading import load_for_inference

        if source.run_dir is not None:
            model, tokenizer, _ = load_for_inference(source.run_dir, torch_dtype=dtype)
        else:
            model, tokenizer, _ = load_for_inference(
                dataclasses.replace(source.model_args, torch_dtype=dtype)
            )
        if isinstance(model, PeftModel) and not is_quantized(model.get_base_model()):
            model = model.merge_and_unload()
        stops = stop_token_ids(source.template, tokenizer, model.generation_config.eos_token_id)
        return cls(model.eval(), tokenizer, stops, batch_size, seed)

    def generation_config(self, settings: GeneratingArguments, candidates: int) -> GenerationConfig:
        options = {
            "max_new_tokens": settings.max_new_tokens,
            "num_return_sequences": candidates,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.pad_id,
            "repetition_penalty": settings.repetition_penalty,
            "use_cache": True,
        }
        if settings.do_sample:
            options.update(
                do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k
            )
        else:  # greedy, or beam search: several candidates without sampling are the best beams
            options.update(do_sample=False, num_beams=max(settings.num_beams, candidates))
        return GenerationConfig(**options)

    def left_pad(self, prompts: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        return input_ids.to(self.model.device), attention_mask.to(self.model.device)

    def answer_length(self, tokens: list[int]) -> int:
        """Tokens up to and including the first stop token (all of them when none was generated)."""
        for position, token in enumerate(tokens):
            if token in self.stop_ids:
                return position + 1
        return len(tokens)

    def generate(
        self, prompts: Sequence[list[int]], settings: GeneratingArguments, candidates: int = 1
    ) -> Iterator[Batch]:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
        config = self.generation_config(settings, candidates)
        torch.manual_seed(self.seed)
        for start in range(0, len(order), self.batch_size):
            began = time.perf_counter()
            indices = order[start : start + self.batch_size]
            input_ids, attention_mask = self.left_pad([prompts[i] for i in indices])
            recorder = ChosenTokenLogprobs() if settings.do_sample and candidates > 1 else None
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    generation_config=config,
                    logits_processor=LogitsProcessorList([recorder] if recorder else []),
                )
            new = output[:, input_ids.shape[1] :]
            logprobs = recorder.per_token(new).cpu() if recorder and new.shape[1] else None
            rows = new.cpu().tolist()
            answers: list[list[Candidate]] = []
            for q in range(len(indices)):
                group = []
                for row in range(q * candidates, (q + 1) * candidates):
                    length = self.answer_length(rows[row])
                    text = self.tokenizer.decode(rows[row][:length], skip_special_tokens=True)
                    mean = float(logprobs[row, :length].mean()) if logprobs is not None and length else None
                    group.append(Candidate(text, length, mean))
                if recorder is not None:  # samples come in random order; beams come best first
                    group.sort(
                        key=lambda c: c.logprob if c.logprob is not None else float("-inf"), reverse=True
                    )
                answers.append(group)
            yield Batch(indices, answers, time.perf_counter() - began)
