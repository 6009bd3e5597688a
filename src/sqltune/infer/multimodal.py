"""`sqltune predict` with a vision-language run: each question asked with its images.

The text engines (`sqltune.infer.hf`, `vllm`) take token-id prompts only, so a run trained by
multimodal SFT (`sqltune.train.multimodal`) is answered here instead: the dataset's records are
read as training read them (`sqltune.train.data.read_samples`: LLaMA-Factory's multimodal sharegpt,
image files checked), the prompt is the record's conversation up to the last answer, encoded with
the run's template, each `<image>` expanded by the run's processor, and the model answers greedily
one question at a time. The predictions file is the text path's (`PredictionFile`: resumable,
`--format spider`), with each question's image files added to its row.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqltune.args import GeneratingArguments, PredictArguments
from sqltune.data.example import Example
from sqltune.errors import ConfigError, DataError

if TYPE_CHECKING:
    from sqltune.infer.command import PredictSummary
    from sqltune.infer.engine import ModelSource


def question_text(text: str) -> str:
    """The question as the predictions file shows it: without the image placeholders."""
    from sqltune.models.multimodal import LLAMA_FACTORY_IMAGE

    return " ".join(text.replace(LLAMA_FACTORY_IMAGE, " ").split())


def predict_with_images(
    source: ModelSource, args: PredictArguments, settings: GeneratingArguments, progress: bool = True
) -> PredictSummary:
    """Answer the dataset's pending questions with their images into the predictions file."""
    from tqdm import tqdm

    from sqltune.data.records import dataset_entry
    from sqltune.files import check_output
    from sqltune.infer.command import PredictSummary, default_output, print_summary
    from sqltune.infer.engine import stop_token_ids
    from sqltune.infer.predictions import PredictionFile
    from sqltune.models.encoding import encode_prompt
    from sqltune.models.multimodal import answer_with_images, load_for_inference, prompt_with_image_tokens
    from sqltune.models.templates import get_template
    from sqltune.precision import inference_dtype
    from sqltune.sql_extract import extract_sql
    from sqltune.train.data import read_samples

    if source.run_dir is None:
        raise ConfigError("predict with a vision-language model: give run_dir (a run of sqltune train)")
    if settings.decoding != "single" or settings.candidates > 1 or args.infer_backend != "hf":
        raise ConfigError(
            "predict with a vision-language model: greedy single answers on infer_backend=hf only"
        )
    samples = read_samples(args.dataset_dir, args.dataset, args.max_samples)
    if not samples:
        raise DataError(f"dataset '{args.dataset}' has no records")
    examples = [
        Example(f"{args.dataset}_{i}", s.db_id or "", question_text(s.prompt.input), s.response)
        for i, s in enumerate(samples)
    ]
    records = Path(args.dataset_dir) / dataset_entry(args.dataset_dir, args.dataset)["file_name"]
    output = check_output(args.output or default_output(args), (records,))
    file = PredictionFile(output, overwrite=args.overwrite)
    pending = file.pending(examples)
    summary = PredictSummary(output, len(examples), len(pending), 0.0, 0, 0, 0)
    if pending:
        model, processor, card = load_for_inference(
            source.run_dir, torch_dtype=inference_dtype(args.infer_dtype)
        )
        template = get_template(card.template, processor.tokenizer)
        stops = stop_token_ids(card.template, processor.tokenizer, model.generation_config.eos_token_id)
        bar = tqdm(total=len(examples), initial=len(examples) - len(pending), unit="q", disable=not progress)
        began = time.perf_counter()
        try:
            for index in pending:
                sample = samples[index]
                prompt = prompt_with_image_tokens(sample.prompt, processor)
                ids = encode_prompt(prompt, template, processor.tokenizer, sample.system)
                got = answer_with_images(
                    model, processor, ids, sample.images or [], stops, settings.max_new_tokens
                )
                example = examples[index]
                row = {
                    "index": index,
                    "id": example.id,
                    "db_id": example.db_id,
                    "question": example.question,
                    "sql": extract_sql(got.text),
                    "raw": got.text,
                    "prompt_tokens": got.prompt_tokens,
                    "new_tokens": got.new_tokens,
                    "seconds": round(got.seconds, 4),
                    "images": sample.images or [],
                }
                file.add([row])
                summary.new_tokens += got.new_tokens
                bar.update(1)
        finally:
            bar.close()
        summary.seconds = time.perf_counter() - began
    if args.format == "spider":
        summary.spider_file = file.write_spider(examples)
    print_summary(summary, source.run_dir, args.dataset)
    return summary
