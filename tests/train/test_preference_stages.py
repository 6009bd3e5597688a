"""`sqltune train stage=rm|kto|orpo|simpo` end to end on a tiny model: train, reload, predict or score;
a reward model refused as a policy; and the user errors."""

import json
import math
import sqlite3

import pytest
from peft.utils import load_peft_weights

from sqltune.args import FinetuningArguments, ModelArguments
from sqltune.cli import main as cli
from sqltune.data.prompts import Prompt
from sqltune.models.loading import load_for_inference
from sqltune.models.templates import get_template
from sqltune.runcard import RunCard
from sqltune.train.arguments import TrainingArguments
from sqltune.train.reward_model import load_reward_model, load_scorer, reward_ids, reward_texts, scored_ids
from tests.tiny import QUESTIONS, build_model_dir, make_dataset
from tests.train.test_stages import predict_runs, train

INSTRUCTION = "Write the SQL query for the question.\n"


def broken(sql: str) -> str:
    """A query that fails: the gold SQL with a repeated clause at its end, the syntax error every
    rejected answer of the separable sets shares."""
    return sql + " ORDER BY ORDER BY"


def register(data_dir, name: str, rows: list[dict], **entry) -> None:
    (data_dir / f"{name}.json").write_text(json.dumps(rows))
    registry = json.loads((data_dir / "dataset_info.json").read_text())
    registry[name] = {"file_name": f"{name}.json", **entry}
    (data_dir / "dataset_info.json").write_text(json.dumps(registry))


def separable_pairs(data_dir):
    """Pairs whose rejected answer is the gold SQL with a typo: a preference a tiny model can learn."""
    rows = [
        {"instruction": INSTRUCTION, "input": q, "chosen": s, "rejected": broken(s)} for q, s in QUESTIONS
    ]
    register(data_dir, "typo_pairs", rows, ranking=True)
    return data_dir


@pytest.fixture
def typo_data(tmp_path):
    return separable_pairs(make_dataset(tmp_path / "data", count=8))


def kto_rows(formatting: str) -> tuple[list[dict], dict]:
    """LLaMA-Factory's KTO format: every question with its gold answer (desirable) and a broken one."""
    answers = [(q, s, True) for q, s in QUESTIONS] + [(q, broken(s), False) for q, s in QUESTIONS]
    if formatting == "alpaca":
        rows = [{"instruction": INSTRUCTION, "input": q, "output": a, "label": ok} for q, a, ok in answers]
        return rows, {"columns": {"response": "output", "kto_tag": "label"}}
    rows = [
        {
            "messages": [{"role": "user", "content": INSTRUCTION + q}, {"role": "assistant", "content": a}],
            "label": ok,
        }
        for q, a, ok in answers
    ]
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    return rows, {
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "kto_tag": "label"},
        "tags": tags,
    }


def logged(run_dir, key: str) -> list[float]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return [row[key] for row in history if key in row]


def falls(values: list[float], window: int = 4) -> bool:
    return sum(values[-window:]) / window < sum(values[:window]) / window


def rises(values: list[float], window: int = 4) -> bool:
    return sum(values[-window:]) / window > sum(values[:window]) / window


# enough steps, at a rate high enough, for a tiny random model to learn the separable sets
LEARN = ["max_steps=16", "learning_rate=5e-3"]
LEARN_LM = ["max_steps=16", "learning_rate=2e-2"]


# ---- rm ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rm_run(tmp_path_factory):
    """A LoRA reward model trained on the separable pairs (shared by the tests that only read it)."""
    root = tmp_path_factory.mktemp("rm")
    model_dir = build_model_dir(root / "model")
    data = separable_pairs(make_dataset(root / "data", count=8))
    out = root / "rm"
    assert train(model_dir, data, out, "stage=rm", "dataset=typo_pairs", *LEARN) == 0
    return out, data


def test_rm_learns_to_score_the_chosen_answer_higher(rm_run):
    out, _ = rm_run
    card = RunCard.load(out)
    assert card.stage == "rm" and card.datasets == ["typo_pairs"] and card.finetuning_type == "lora"
    assert card.stage_settings["head"] == "score (one output)"
    assert card.metrics["train_steps"] == 16 and math.isfinite(card.metrics["train_loss"])
    assert set(card.metrics["stage_signals"]) >= {"accuracy", "margin"}
    losses = logged(out, "loss")
    assert len(losses) == 16 and all(math.isfinite(x) for x in losses) and falls(losses)
    assert rises(logged(out, "margin"))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "score" in config["modules_to_save"]

    model, tokenizer, loaded = load_reward_model(out)
    assert loaded.stage == "rm" and not model.training and model.config.num_labels == 1
    template = get_template(loaded.template, tokenizer)
    chosen, rejected = [], []
    for question, sql in QUESTIONS:
        prompt = Prompt(INSTRUCTION, question)
        chosen.append(scored_ids(prompt, sql, template, tokenizer))
        rejected.append(scored_ids(prompt, broken(sql), template, tokenizer))
    # a sequence ends where a sampled answer stops: at the template's end-of-turn token
    assert all(ids[-1] in template.stop_token_ids(tokenizer) for ids in chosen + rejected)
    rewards = reward_ids(model, chosen + rejected, tokenizer.pad_token_id, batch_size=4)
    wins = sum(c > r for c, r in zip(rewards[: len(QUESTIONS)], rewards[len(QUESTIONS) :]))
    assert wins == len(QUESTIONS), rewards
    # the reward is read at each row's last real token: padding beside a row changes nothing
    alone = [reward_ids(model, [ids], tokenizer.pad_token_id)[0] for ids in chosen[:3]]
    assert alone == pytest.approx(rewards[:3], abs=1e-4)
    texts = [tokenizer.decode(ids) for ids in chosen[:2]]
    assert reward_texts(model, tokenizer, texts) == pytest.approx(rewards[:2], abs=1e-4)


@pytest.mark.parametrize(
    "finetuning",
    [["finetuning_type=full"], ["finetuning_type=freeze", "freeze_trainable_layers=1", "bf16=true"]],
)
def test_rm_trains_the_whole_classifier_or_its_last_layers(tiny_model_dir, typo_data, tmp_path, finetuning):
    out = tmp_path / "rm"
    assert train(tiny_model_dir, typo_data, out, "stage=rm", "dataset=typo_pairs", *finetuning) == 0
    card = RunCard.load(out)
    assert card.stage == "rm" and math.isfinite(card.metrics["train_loss"])
    assert not (out / "adapter_config.json").exists()
    assert json.loads((out / "config.json").read_text())["architectures"] == [
        "LlamaForSequenceClassification"
    ]
    model, tokenizer, _ = load_reward_model(out, torch_dtype="bfloat16")
    assert str(model.dtype) == "torch.bfloat16"
    assert len(reward_texts(model, tokenizer, ["SELECT 1", "SELECT name FROM singer"])) == 2


def test_rm_continues_an_sft_adapter_under_a_new_head(tiny_model_dir, typo_data, tmp_path):
    sft = tmp_path / "sft"
    assert train(tiny_model_dir, typo_data, sft, "dataset=tiny_train", "max_steps=2") == 0
    model_args = ModelArguments(model_name_or_path=str(tiny_model_dir), adapter_name_or_path=str(sft))
    scorer, _ = load_scorer(model_args, FinetuningArguments(stage="rm"), TrainingArguments(str(tmp_path)))
    trained = load_peft_weights(str(sft))
    key = next(k for k in trained if "lora_B" in k)
    assert trained[key].abs().sum() > 0  # SFT moved it from its zero start
    assert scorer.get_parameter(key.replace(".weight", ".default.weight")).tolist() == trained[key].tolist()
    out = tmp_path / "rm"
    assert train(None, typo_data, out, "stage=rm", "dataset=typo_pairs", f"adapter_name_or_path={sft}") == 0
    card = RunCard.load(out)
    assert card.base_model == str(tiny_model_dir) and card.stage_settings["started_from"] == str(
        sft.resolve()
    )
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "score" in config["modules_to_save"]
    model, tokenizer, _ = load_reward_model(out)
    assert len(reward_texts(model, tokenizer, ["SELECT 1"])) == 1


def test_a_reward_model_is_refused_as_a_policy(rm_run, tiny_model_dir, tmp_path, capsys):
    out, data = rm_run
    message = f"{out} is a reward model (stage=rm): it scores answers and cannot write SQL; "
    message += f"give it to stage=ppo as reward_model={out}"
    db = tmp_path / "one.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE singer (name text)")
    predict = ["predict", f"dataset_dir={data}", "dataset=tiny_train", f"output={tmp_path / 'p.jsonl'}"]
    commands = [
        predict + [f"run_dir={out}"],
        predict + [f"model_name_or_path={tiny_model_dir}", f"adapter_name_or_path={out}"],
        ["ask", "--db", str(db), f"run_dir={out}", "How many singers are there?"],
        ["export", f"run_dir={out}", f"export_dir={tmp_path / 'export'}"],
        [
            "train",
            "stage=dpo",
            "dataset=typo_pairs",
            f"dataset_dir={data}",
            f"adapter_name_or_path={out}",
            f"output_dir={tmp_path / 'dpo'}",
        ],
    ]
    for argv in commands:
        assert cli(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].endswith(message), (argv, err)
    with pytest.raises(Exception, match="is a reward model"):
        load_for_inference(out)


def test_load_reward_model_refuses_a_policy_run(tiny_model_dir, typo_data, tmp_path):
    out = tmp_path / "sft"
    assert train(tiny_model_dir, typo_data, out, "dataset=tiny_train", "max_steps=1") == 0
    with pytest.raises(Exception, match=r"is not a reward model \(stage=sft\)"):
        load_reward_model(out)


# ---- orpo, simpo ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stage, extra", [("orpo", ["beta=1.0"]), ("simpo", ["bf16=true", "simpo_gamma=0.2", "beta=2.0"])]
)
def test_reference_free_preference_stages_learn_and_predict(
    tiny_model_dir, typo_data, tmp_path, stage, extra
):
    out = tmp_path / stage
    assert (
        train(tiny_model_dir, typo_data, out, f"stage={stage}", "dataset=typo_pairs", *LEARN_LM, *extra) == 0
    )
    card = RunCard.load(out)
    assert card.stage == stage and card.datasets == ["typo_pairs"]
    assert card.stage_settings["reference"] == "none (the loss needs no reference model)"
    assert card.metrics["train_steps"] == 16 and math.isfinite(card.metrics["train_loss"])
    signals = card.metrics["stage_signals"]
    assert {"rewards/margins", "rewards/accuracies", "rewards/chosen"} <= set(signals)
    losses = logged(out, "loss")
    assert len(losses) == 16 and all(math.isfinite(x) for x in losses) and falls(losses)
    assert rises(logged(out, "rewards/margins"))
    if stage == "orpo":
        assert card.stage_settings["beta"] == 1.0 and "log_odds_ratio" in signals
        assert rises(logged(out, "log_odds_ratio"))
    else:
        settings = card.stage_settings
        assert settings["loss_type"] == "simpo" and settings["cpo_alpha"] == 0.0
        assert settings["simpo_gamma"] == 0.2 and settings["beta"] == 2.0 and card.precision["used"] == "bf16"
    assert (out / "adapter_model.safetensors").is_file()
    model, _, loaded = load_for_inference(out)
    assert loaded.stage == stage and list(model.peft_config) == ["default"]
    predict_runs(out, typo_data, tmp_path)


def test_orpo_likelihood_term_is_on_the_answer_only(tiny_model_dir, typo_data, tmp_path):
    """ORPO's NLL is the chosen answer's mean negative log-probability per token (-logps/chosen)."""
    out = tmp_path / "orpo"
    assert train(tiny_model_dir, typo_data, out, "stage=orpo", "dataset=typo_pairs", "max_steps=2") == 0
    assert RunCard.load(out).stage_settings["beta"] == 0.1  # TRL's default
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    rows = [row for row in history if "nll_loss" in row]
    assert rows and all(row["nll_loss"] == pytest.approx(-row["logps/chosen"], rel=1e-4) for row in rows)


# ---- kto -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("formatting", ["alpaca", "sharegpt"])
def test_kto_learns_from_labelled_answers_and_predicts(tiny_model_dir, tmp_path, formatting):
    data = make_dataset(tmp_path / "data", count=8)
    rows, entry = kto_rows(formatting)
    register(data, "typo_kto", rows, **entry)
    out = tmp_path / "kto"
    options = ["stage=kto", "dataset=typo_kto", "desirable_weight=1.5", *LEARN]
    assert train(tiny_model_dir, data, out, *options) == 0
    card = RunCard.load(out)
    assert card.stage == "kto" and card.datasets == ["typo_kto"]
    settings = card.stage_settings
    assert settings["desirable_weight"] == 1.5 and settings["undesirable_weight"] == 1.0
    assert settings["desirable"] == settings["undesirable"] == len(QUESTIONS)
    assert settings["reference"] == "the base model (adapter disabled), no second copy of the weights"
    assert card.data_stats["typo_kto"]["kept"] == 2 * len(QUESTIONS)
    assert card.arguments["train_sampling_strategy"] == "group_by_length"  # what was asked; KTO runs in order
    assert {"kl", "rewards/chosen", "rewards/rejected"} <= set(card.metrics["stage_signals"])
    losses = logged(out, "loss")
    assert len(losses) == 16 and all(math.isfinite(x) for x in losses) and falls(losses)
    assert rises(logged(out, "rewards/margins"))
    predict_runs(out, data, tmp_path)


def test_kto_continues_an_sft_run_against_a_frozen_copy_of_its_adapter(tiny_model_dir, tmp_path):
    data = make_dataset(tmp_path / "data", count=8)
    rows, entry = kto_rows("alpaca")
    register(data, "typo_kto", rows, **entry)
    sft = tmp_path / "sft"
    assert train(tiny_model_dir, data, sft, "dataset=tiny_train", "max_steps=2") == 0
    out = tmp_path / "kto"
    assert train(None, data, out, "stage=kto", "dataset=typo_kto", f"adapter_name_or_path={sft}") == 0
    card = RunCard.load(out)
    assert card.base_model == str(tiny_model_dir) and card.prompt_format == "ddl"
    assert card.stage_settings["reference"].startswith("a frozen copy of the starting adapter")
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == []  # the reference is not saved
    predict_runs(out, data, tmp_path)


# ---- user errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        (["stage=rm", "dataset=tiny_train"], "stage=rm needs pairwise data: dataset 'tiny_train'"),
        (["stage=orpo", "dataset=tiny_train"], "stage=orpo needs pairwise data: dataset 'tiny_train'"),
        (["stage=simpo", "dataset=tiny_train"], "stage=simpo needs pairwise data: dataset 'tiny_train'"),
        (["stage=orpo", "dataset=typo_pairs", "loss_type=ipo"], "stage=orpo has one loss"),
        (
            ["stage=kto", "dataset=tiny_train"],
            "stage=kto needs a desirable/undesirable label per answer: "
            "dataset 'tiny_train' maps no kto_tag column",
        ),
        (
            ["stage=kto", "dataset=typo_kto", "per_device_train_batch_size=1"],
            "stage=kto needs per_device_train_batch_size >= 2",
        ),
        (["stage=kto", "dataset=typo_kto", "loss_type=sigmoid"], "loss_type: stage=kto takes kto or"),
        (["stage=kto", "dataset=bad_kto"], "dataset 'bad_kto' record 2: its kto_tag column 'label' must be"),
        (["stage=kto", "dataset=typo_kto", "undesirable_weight=-1"], "undesirable_weight: must be >= 0"),
    ],
)
def test_user_errors_are_one_line(tiny_model_dir, typo_data, tmp_path, capsys, options, message):
    rows, entry = kto_rows("alpaca")
    register(typo_data, "typo_kto", rows, **entry)
    register(typo_data, "bad_kto", [rows[0], {**rows[1], "label": "yes"}], **entry)
    assert train(tiny_model_dir, typo_data, tmp_path / "run", *options) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run" / "sqltune_run.json").exists()
