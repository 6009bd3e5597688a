"""Inference engines: prompts as token ids in, candidate answers out.

Every engine takes prompts already encoded by `sqltune.models.encoding` (the run's chat template,
the run's prompt format), so a model is asked in exactly the format it was trained on whichever
engine runs it. Two engines implement the protocol:

* `hf` (`sqltune.infer.hf`): transformers' `generate` with real batching; CPU or GPU.
* `vllm` (`sqltune.infer.vllm`): vLLM on a GPU (`pip install 'sqltune[vllm]'`), LoRA adapters served
  without a merge.

`ModelSource` says what to load: a run directory (its run card names the base model, adapter and
template) or a bare base model given by `ModelArguments`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqltune.args import GeneratingArguments, ModelArguments
from sqltune.errors import ConfigError
from sqltune.models.embedded import DEFAULT_MODEL
from sqltune.runcard import RunCard


@dataclass
class Candidate:
    """One generated answer."""

    text: str  # decoded answer, special tokens removed
    new_tokens: int  # tokens generated, the stop token included
    logprob: float | None = None  # mean log-probability per token, where the engine measured it


@dataclass
class Batch:
    """The answers to some of the prompts: `candidates[i]` (best first) answers `prompts[indices[i]]`."""

    indices: list[int]
    candidates: list[list[Candidate]]
    seconds: float  # wall time spent on this batch


class Engine(Protocol):
    tokenizer: Any

    def generate(
        self, prompts: Sequence[list[int]], settings: GeneratingArguments, candidates: int = 1
    ) -> Iterator[Batch]:
        """Answer every prompt with `candidates` answers, yielding batches as they finish."""
        ...


@dataclass
class ModelSource:
    """Where prediction's model comes from.

    `run_dir` set: a run of `sqltune train`; `model_args` are the run's own base-model arguments and
    `card` its run card. Otherwise a bare base model (with an optional `adapter_name_or_path`).
    """

    model_args: ModelArguments
    run_dir: Path | None = None
    card: RunCard | None = None

    @property
    def adapter_dir(self) -> str | None:
        """The LoRA adapter to apply to the base model, if any."""
        if self.run_dir is not None:
            return str(self.run_dir) if (self.run_dir / "adapter_config.json").is_file() else None
        return self.model_args.adapter_name_or_path

    @property
    def weights(self) -> str:
        """The model directory whose weights are loaded (the run itself for freeze/full runs)."""
        from sqltune.models.loading import resolve_base

        if self.run_dir is not None and self.adapter_dir is None:
            return str(self.run_dir)
        return resolve_base(self.model_args)

    @property
    def tokenizer_dir(self) -> str:
        from sqltune.models.loading import resolve_base

        return str(self.run_dir) if self.run_dir is not None else resolve_base(self.model_args)

    @property
    def template(self) -> str:
        return self.card.template if self.card is not None else self.model_args.template


def model_source(run_dir: str | None, model_args: ModelArguments) -> ModelSource:
    """A run directory, or the bare model of `model_args`; giving both is an error."""
    from sqltune.models.loading import model_arguments_from_card, refuse_reward_model

    if run_dir is None:
        card = None
        adapter = model_args.adapter_name_or_path
        if adapter and (Path(adapter) / "sqltune_run.json").is_file():
            card = RunCard.load(adapter)
            refuse_reward_model(card, adapter)
        return ModelSource(model_args, card=card)
    if model_args.model_name_or_path != DEFAULT_MODEL or model_args.adapter_name_or_path:
        raise ConfigError("give run_dir (its run card names the base model) or model_name_or_path, not both")
    card = RunCard.load(run_dir)
    refuse_reward_model(card, run_dir)
    return ModelSource(model_arguments_from_card(card), Path(run_dir), card)


def stop_token_ids(template_name: str, tokenizer, model_eos: int | list[int] | None = None) -> list[int]:
    """Tokens that end an answer: the template's stop tokens, the tokenizer's EOS and the model's."""
    from sqltune.models.templates import get_template

    ids = get_template(template_name, tokenizer).stop_token_ids(tokenizer)
    extra = [model_eos] if isinstance(model_eos, int) else list(model_eos or [])
    return ids + [i for i in extra if i not in ids]


def is_quantized(model) -> bool:
    """Whether a transformers model holds quantised weights (bitsandbytes, GPTQ, AWQ...)."""
    return getattr(model, "hf_quantizer", None) is not None


def open_engine(
    source: ModelSource,
    backend: str = "hf",
    dtype: str = "auto",
    batch_size: int = 16,
    seed: int = 42,
    **vllm_options: Any,
) -> Engine:
    """Load the model behind `source` into the engine named by `backend`."""
    from sqltune.precision import inference_dtype

    dtype = inference_dtype(dtype)
    if backend == "vllm":
        from sqltune.infer.vllm import VllmEngine

        return VllmEngine(source, dtype=dtype, seed=seed, **vllm_options)
    if backend != "hf":
        raise ConfigError(f"infer_backend: unknown '{backend}', choose hf or vllm")
    from sqltune.infer.hf import HfEngine

    return HfEngine.load(source, dtype=dtype, batch_size=batch_size, seed=seed)
