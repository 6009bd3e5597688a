"""Multimodal SFT end to end on a tiny random LLaVA built here: train through the CLI, reload,
predict with images, export; LoRA leaves the vision tower alone, train_mm_proj_only trains the
projector alone; bad records fail in one line."""

import json
import math

import pytest

from sqltune.cli import main as cli
from sqltune.runcard import RunCard
from tests.tiny import QUESTIONS, build_tokenizer, llama_config

COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 180, 30), "black": (0, 0, 0)}


def build_vlm_dir(folder, seed: int = 0):
    """A LLaVA: a one-layer CLIP vision encoder on 32x32 images (16 patches of 8x8), a projector,
    and the two-layer Llama of tests.tiny with an `<image>` token; the processor expands each
    image into 16 image tokens."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    images = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
        chat_template=tokenizer.chat_template,
    )
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    # logits that LoRA on 32 dimensions can move far from uniform
    text = llama_config(tokenizer, initializer_range=0.25)
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    return build_vlm_dir(tmp_path_factory.mktemp("tiny-llava"))


def draw(path, color: str, shape: str) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (40, 40), "white")
    pen = ImageDraw.Draw(image)
    if shape == "box":
        pen.rectangle((6, 6, 34, 34), fill=COLORS[color])
    else:
        pen.ellipse((6, 6, 34, 34), fill=COLORS[color])
    image.save(path)


def mm_dataset(folder, count: int = 8, name: str = "shapes", rows=None):
    """LLaMA-Factory's multimodal sharegpt format: the color of the drawn shape picks the SQL."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    if rows is None:
        rows = []
        for i in range(count):
            color = list(COLORS)[i % len(COLORS)]
            draw(folder / "images" / f"{i}.png", color, "box" if i % 2 else "disc")
            question, sql = QUESTIONS[list(COLORS).index(color)]
            rows.append(
                {
                    "conversations": [
                        {"from": "human", "value": f"<image>{question}"},
                        {"from": "gpt", "value": sql},
                    ],
                    "images": [f"images/{i}.png"],
                    "db_id": "concert_singer",
                }
            )
    (folder / f"{name}.json").write_text(json.dumps(rows))
    registry_path = folder / "dataset_info.json"
    registry = json.loads(registry_path.read_text()) if registry_path.is_file() else {}
    registry[name] = {
        "file_name": f"{name}.json",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "images": "images"},
    }
    registry_path.write_text(json.dumps(registry))
    return folder


def train(model_dir, data_dir, out, *extra: str) -> int:
    argv = [
        "train",
        f"model_name_or_path={model_dir}",
        f"dataset_dir={data_dir}",
        "dataset=shapes",
        f"output_dir={out}",
        "cutoff_len=256",
        "max_steps=8",
        "per_device_train_batch_size=4",
        "logging_steps=1",
        "save_strategy=no",
        "learning_rate=5e-2",
        "lora_rank=8",
        *extra,
    ]
    return cli(argv)


def losses(run_dir) -> list[float]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return [row["loss"] for row in history if "loss" in row]


def saved_weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_lora_trains_the_language_model_reloads_predicts_and_exports(vlm_dir, tmp_path):
    data = mm_dataset(tmp_path / "data")
    out = tmp_path / "run"
    assert train(vlm_dir, data, out) == 0
    card = RunCard.load(out)
    assert card.stage_settings["multimodal"] is True and card.stage_settings["freeze_vision_tower"] is True
    assert card.arguments["freeze_vision_tower"] is True and card.arguments["train_mm_proj_only"] is False
    assert card.data_stats["shapes"]["kept"] == 8 and card.data_stats["shapes"]["images"] == 8
    assert card.precision["used"] == "fp32"
    steps = losses(out)
    assert len(steps) == 8 and all(math.isfinite(x) for x in steps)
    assert sum(steps[-2:]) / 2 < 0.7 * sum(steps[:2]) / 2  # the loss falls
    adapter = saved_weights_adapter(out)
    assert adapter and all("language_model" in key for key in adapter)  # no vision tower, no projector
    assert (out / "processor_config.json").is_file() and (out / "chat_template.jinja").is_file()

    from sqltune.models.multimodal import load_for_inference

    model, processor, loaded = load_for_inference(out)
    assert loaded.stage == "sft" and processor.image_token == "<image>"
    predictions = tmp_path / "predictions.jsonl"
    argv = ["predict", f"run_dir={out}", f"dataset_dir={data}", "dataset=shapes", "max_samples=3"]
    assert cli([*argv, "max_new_tokens=24", f"output={predictions}"]) == 0
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [row["index"] for row in rows] == [0, 1, 2]
    assert all(row["db_id"] == "concert_singer" and row["prompt_tokens"] > 16 for row in rows)
    assert all(row["new_tokens"] >= 1 and isinstance(row["sql"], str) for row in rows)
    assert rows[0]["images"] == [str(data / "images" / "0.png")]

    exported = tmp_path / "export"
    assert cli(["export", f"run_dir={out}", f"export_dir={exported}"]) == 0
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    merged = AutoModelForImageTextToText.from_pretrained(exported)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert AutoProcessor.from_pretrained(exported).image_token == "<image>"
    with Image.open(data / "images" / "1.png") as image:
        inputs = processor(
            text=f"<image>{QUESTIONS[1][0]}", images=[image.convert("RGB")], return_tensors="pt"
        )
    with torch.no_grad():
        assert torch.allclose(merged(**inputs).logits, model(**inputs).logits, atol=1e-4)
    again = tmp_path / "predictions_export.jsonl"
    argv = ["predict", f"run_dir={exported}", f"dataset_dir={data}", "dataset=shapes", "max_samples=3"]
    assert cli([*argv, "max_new_tokens=4", f"output={again}"]) == 0
    assert len(again.read_text().splitlines()) == 3


def saved_weights_adapter(run_dir) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter_model.safetensors"))


def test_full_keeps_the_vision_tower_and_proj_only_trains_the_projector(vlm_dir, tmp_path):
    data = mm_dataset(tmp_path / "data", count=4)
    base = saved_weights(vlm_dir)

    def changed(run_dir) -> set[str]:
        trained = saved_weights(run_dir)
        assert set(trained) == set(base)
        return {key.split(".")[0] for key in base if not (trained[key] == base[key]).all()}

    full = tmp_path / "full"
    assert train(vlm_dir, data, full, "finetuning_type=full", "max_steps=2", "learning_rate=1e-3") == 0
    assert changed(full) == {"language_model", "multi_modal_projector"}  # vision tower bit-identical
    assert RunCard.load(full).stage_settings["vision_tower"] == ["model.vision_tower"]

    proj = tmp_path / "proj"
    extra = ("finetuning_type=full", "train_mm_proj_only=true", "max_steps=2", "learning_rate=1e-3")
    assert train(vlm_dir, data, proj, *extra) == 0
    assert changed(proj) == {"multi_modal_projector"}
    card = RunCard.load(proj)
    assert card.arguments["train_mm_proj_only"] is True and card.stage_settings["train_mm_proj_only"] is True


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            ["train_mm_proj_only=true"],
            "train_mm_proj_only trains the projector's weights: finetuning_type=full",
        ),
        (["finetuning_type=freeze"], "finetuning_type=freeze is not available for vision-language models"),
        (["lora_layers=1"], "lora_layers: not available for vision-language models"),
    ],
)
def test_unsupported_choices_are_one_line_errors(vlm_dir, tmp_path, capsys, extra, expected):
    data = mm_dataset(tmp_path / "data", count=2)
    assert train(vlm_dir, data, tmp_path / "run", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def record(text: str, images: list[str]) -> dict:
    return {
        "conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": "SELECT 1"}],
        "images": images,
    }


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [record("<image>ok", ["images/a.png"]), record("<image><image>two?", ["images/a.png"])],
            "dataset 'shapes' record 2: 2 <image> placeholder(s) for 1 image(s)",
        ),
        (
            [record("no placeholder", ["images/a.png"])],
            "dataset 'shapes' record 1: 0 <image> placeholder(s) for 1 image(s)",
        ),
        (
            [record("<image>ok", ["images/a.png"]), record("<image>gone", ["images/missing.png"])],
            "dataset 'shapes' record 2: image file not found: ",
        ),
    ],
)
def test_bad_records_are_one_line_errors(vlm_dir, tmp_path, capsys, rows, expected):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    draw(data / "images" / "a.png", "red", "box")
    mm_dataset(data, rows=rows)
    assert train(vlm_dir, data, tmp_path / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    if "not found" in expected:
        assert "missing.png" in err[0]


def test_a_tiny_vlm_trains_on_er_diagram_records(vlm_dir, tmp_path):
    data = tmp_path / "data"
    argv = ["data", "erd", "source=demo", f"output_dir={data}", "dataset_name=demo_erd", "limit=4"]
    assert cli(argv) == 0
    out = tmp_path / "erd_run"
    assert train(vlm_dir, data, out, "dataset=demo_erd", "cutoff_len=1024", "max_steps=4") == 0
    card = RunCard.load(out)
    assert card.datasets == ["demo_erd"] and card.data_stats["demo_erd"]["kept"] == 4
    steps = losses(out)
    assert len(steps) == 4 and steps[-1] < steps[0]


def test_only_the_answer_is_labelled_and_the_collator_stacks_images(vlm_dir, tmp_path):
    from sqltune.models.encoding import IGNORE_INDEX
    from sqltune.models.multimodal import load_processor
    from sqltune.models.templates import get_template
    from sqltune.train.data import read_samples
    from sqltune.train.multimodal import MultimodalCollator, encode_multimodal

    data = mm_dataset(tmp_path / "data", count=2)
    processor = load_processor(vlm_dir)
    template = get_template("auto", processor.tokenizer)
    samples = read_samples(data, "shapes")
    features = [encode_multimodal(sample, template, processor)[0] for sample in samples]
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    for sample, feature in zip(samples, features):
        ids, labels = feature["input_ids"], feature["labels"]
        assert ids.count(image_id) == 16 and tuple(feature["pixel_values"].shape) == (1, 3, 32, 32)
        labelled = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
        assert labelled == list(range(labelled[0], len(ids)))  # one run, at the end: the answer
        assert [labels[i] for i in labelled] == [ids[i] for i in labelled]
        assert image_id not in [ids[i] for i in labelled]
        answer = processor.tokenizer.decode([ids[i] for i in labelled])
        assert answer.startswith(sample.response) and "<image>" not in answer
        assert sample.response not in processor.tokenizer.decode(ids[: labelled[0]])
    batch = MultimodalCollator(processor.tokenizer.pad_token_id)(features)
    lengths = [len(f["input_ids"]) for f in features]
    assert lengths[0] != lengths[1] and batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    short = lengths.index(min(lengths))
    assert (batch["labels"][short, min(lengths) :] == IGNORE_INDEX).all()
    assert (batch["input_ids"][short, min(lengths) :] == processor.tokenizer.pad_token_id).all()
    assert tuple(batch["pixel_values"].shape) == (2, 3, 32, 32)


def test_llama_factory_mllm_demo_records_load_unchanged(vlm_dir, tmp_path):
    """The shape of LLaMA-Factory's mllm_demo: role/content messages, several turns, the image in
    the first one, a JPEG under a subfolder; its registry entry as LLaMA-Factory writes it."""
    from PIL import Image

    from sqltune.models.encoding import IGNORE_INDEX
    from sqltune.models.multimodal import load_processor
    from sqltune.models.templates import get_template
    from sqltune.train.data import read_samples
    from sqltune.train.multimodal import encode_multimodal

    data = tmp_path / "data"
    (data / "mllm_demo_data").mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 120, 40)).save(data / "mllm_demo_data" / "1.jpg")
    rows = [
        {
            "messages": [
                {"content": "<image>Who are they?", "role": "user"},
                {"content": "They are singers.", "role": "assistant"},
                {"content": "How many singers are there?", "role": "user"},
                {"content": "SELECT count(*) FROM singer", "role": "assistant"},
            ],
            "images": ["mllm_demo_data/1.jpg"],
        }
    ]
    (data / "mllm_demo.json").write_text(json.dumps(rows))
    entry = {
        "file_name": "mllm_demo.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
        },
    }
    (data / "dataset_info.json").write_text(json.dumps({"mllm_demo": entry}))
    (sample,) = read_samples(data, "mllm_demo")
    assert sample.images == [str(data / "mllm_demo_data" / "1.jpg")]
    processor = load_processor(vlm_dir)
    feature, answer = encode_multimodal(sample, get_template("auto", processor.tokenizer), processor)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert feature["input_ids"].count(image_id) == 16
    labelled = [i for i, label in enumerate(feature["labels"]) if label != IGNORE_INDEX]
    text = processor.tokenizer.decode([feature["input_ids"][i] for i in labelled])
    assert answer == len(labelled) and text.startswith("SELECT count(*) FROM singer")
    assert "They are singers." not in text  # earlier answers are context


def test_lora_targets_follow_freeze_vision_tower(vlm_dir):
    from sqltune.args import FinetuningArguments, ModelArguments
    from sqltune.models.multimodal import load_vision_model, lora_target_modules

    model = load_vision_model(ModelArguments(model_name_or_path=str(vlm_dir)))
    frozen = lora_target_modules(model, FinetuningArguments())
    both = lora_target_modules(model, FinetuningArguments(freeze_vision_tower=False))
    assert frozen and all(name.startswith("model.language_model.") for name in frozen)
    assert set(frozen) < set(both) and any(name.startswith("model.vision_tower.") for name in both)
    assert not any("multi_modal_projector" in name or "lm_head" in name for name in both)
    only_q = lora_target_modules(model, FinetuningArguments(lora_target="q_proj"))
    assert only_q and all(name.endswith(".self_attn.q_proj") for name in only_q)


def test_text_model_paths_refuse_a_vision_language_model_in_one_line(vlm_dir):
    from sqltune.args import ModelArguments
    from sqltune.errors import ConfigError
    from sqltune.models.loading import load_model

    with pytest.raises(ConfigError, match="is a vision-language model: sqltune trains it with stage=sft"):
        load_model(ModelArguments(model_name_or_path=str(vlm_dir)))
