"""The transformers engine: batched `generate` on CPU or GPU.

What makes it several times faster than asking one question at a time (docs/benchmarks.md):

* questions are answered `batch_size` at a time, padded, with the KV cache of the whole batch
  advancing together; a batch stops as soon as every row has produced a stop token (the
  tokenizer's EOS or the template's end-of-turn token) or, with `stop_after_statement`, a
  complete SQL statement (a base model otherwise rambles on to `max_new_tokens`);
* prompts are sorted token by token, so a batch holds runs of questions about the same database,
  which begin with the same instruction and schema. Each run's shared prefix is computed once and
  its KV cache repeated for the run's rows; each row then only adds its question
  (`sqltune.infer.prefill`), and `generate` starts from the assembled cache;
* on the CPU, a decoding step's single-token attention runs as two batched matrix products
  (`sqltune.infer.decode_attention`) instead of the CPU flash-attention kernel;
* a LoRA adapter is merged into the weights in memory (the adapter matmuls of every layer cost more
  than they are worth at inference); the dtype is chosen by `sqltune.precision.inference_dtype`.

Several candidates per question are the best beams, or samples ranked by their mean log-probability.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from sqltune.args import GeneratingArguments
from sqltune.infer.decode_attention import use_decode_attention
from sqltune.infer.engine import Batch, Candidate, ModelSource, is_quantized, stop_token_ids
from sqltune.infer.prefill import Prefilled, left_padded, prefill
from sqltune.sql_extract import statement_complete


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


class StatementEnd(StoppingCriteria):
    """Ends a row once its answer holds one complete SQL statement (`statement_complete`).

    Decoding every row at every step would cost more than it saves, so a row is checked only when
    its newest token can complete a statement (its text holds `;` or a backtick), and the length
    at which each row stopped is kept: the rest of the row is padding.
    """

    def __init__(self, tokenizer, triggers: frozenset[int], prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.triggers = triggers
        self.prompt_length = prompt_length
        self.stopped_at: dict[int, int] = {}  # row -> answer tokens when it stopped

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        answer_length = input_ids.shape[1] - self.prompt_length
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if token not in self.triggers or row in self.stopped_at:
                continue
            text = self.tokenizer.decode(input_ids[row, self.prompt_length :], skip_special_tokens=True)
            if statement_complete(text):
                done[row] = True
                self.stopped_at[row] = answer_length
        return done


def statement_end_tokens(tokenizer) -> frozenset[int]:
    """Token ids whose text holds `;` or a backtick: the only tokens that can complete a statement."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return frozenset(i for i, piece in enumerate(pieces) if piece and (";" in piece or "`" in piece))


class HfEngine:
    """Batched generation with a transformers model (see the module docstring)."""

    def __init__(self, model, tokenizer, stop_ids: list[int], batch_size: int = 16, seed: int = 42) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self.batch_size = batch_size
        self.seed = seed
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
        self._statement_end_tokens: frozenset[int] | None = None
        self.prefill_prompts = True  # off once a model's cache turns out not to allow it

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
        use_decode_attention(model)
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

    def answer_length(self, tokens: list[int], stopped_at: int | None = None) -> int:
        """Tokens up to and including the first stop token, or up to where the statement ended
        (all of them when neither happened)."""
        for position, token in enumerate(tokens[:stopped_at]):
            if token in self.stop_ids:
                return position + 1
        return len(tokens) if stopped_at is None else stopped_at

    def statement_end(self, settings: GeneratingArguments, prompt_length: int) -> StatementEnd | None:
        """The statement-end criterion for this batch (greedy and sampling; beams keep their own)."""
        if not settings.stop_after_statement or settings.num_beams > 1:
            return None
        if self._statement_end_tokens is None:
            self._statement_end_tokens = statement_end_tokens(self.tokenizer)
        return StatementEnd(self.tokenizer, self._statement_end_tokens, prompt_length)

    def candidate(
        self, tokens: list[int], logprobs: list[float] | None = None, stopped_at: int | None = None
    ) -> Candidate:
        length = self.answer_length(tokens, stopped_at)
        text = self.tokenizer.decode(tokens[:length], skip_special_tokens=True)
        mean = sum(logprobs[:length]) / length if logprobs and length else None
        return Candidate(text, length, mean)

    def generate(
        self, prompts: Sequence[list[int]], settings: GeneratingArguments, candidates: int = 1
    ) -> Iterator[Batch]:
        config = self.generation_config(settings, candidates)
        width = max(settings.num_beams, candidates)
        rows_per_prompt = candidates if settings.do_sample else width  # rows generate makes of a prompt
        # Token-wise sorting puts prompts with the same instruction and schema next to each other, so a
        # batch shares a long prefix; their lengths then differ only by their questions.
        order = sorted(range(len(prompts)), key=lambda i: prompts[i])
        torch.manual_seed(self.seed)
        for start in range(0, len(order), self.batch_size):
            began = time.perf_counter()
            indices = order[start : start + self.batch_size]
            rows = [prompts[i] for i in indices]
            prepared = self.prepare(rows, rows_per_prompt)
            input_ids = prepared.input_ids
            recorder = ChosenTokenLogprobs() if settings.do_sample and candidates > 1 else None
            statement_end = self.statement_end(settings, input_ids.shape[1])
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=prepared.attention_mask,
                    cache=prepared.cache,
                    generation_config=config,
                    logits_processor=LogitsProcessorList([recorder] if recorder else []),
                    stopping_criteria=StoppingCriteriaList([statement_end] if statement_end else []),
                )
            stopped_at = statement_end.stopped_at if statement_end else {}
            new = output[:, input_ids.shape[1] :]
            logprobs = recorder.per_token(new).tolist() if recorder and new.shape[1] else None
            tokens = new.cpu().tolist()
            answers = []
            for q in range(len(indices)):
                group = [
                    self.candidate(tokens[r], logprobs[r] if logprobs else None, stopped_at.get(r))
                    for r in range(q * candidates, (q + 1) * candidates)
                ]
                if recorder is not None:  # samples come in random order; beams come best first
                    group.sort(key=_likelihood, reverse=True)
                answers.append(group)
            yield Batch(indices, answers, time.perf_counter() - began)

    def prepare(self, rows: Sequence[list[int]], copies: int) -> Prefilled:
        """The batch's prompts computed up to their last token (`sqltune.infer.prefill`), or plainly
        left-padded for a model whose KV cache cannot be laid out row by row."""
        if self.prefill_prompts:
            prefilled = prefill(self.model, rows, self.pad_id, copies)
            if prefilled is not None:
                return prefilled
            self.prefill_prompts = False
        return left_padded(rows, self.pad_id, self.model.device)


def _likelihood(candidate: Candidate) -> float:
    return candidate.logprob if candidate.logprob is not None else float("-inf")
