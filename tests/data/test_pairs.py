"""`sqltune data pairs`: a tiny run's sampled answers judged on a real SQLite file, the pairwise and KTO
datasets it writes (and DPO training on them), resuming, and the selection rules on hand-written answers."""

import json
import sqlite3
from collections import Counter

import pytest

from sqltune.args import stage_available
from sqltune.cli import main as cli
from sqltune.data.pairs import assemble, choose_pair, judge_question, kto_answers
from sqltune.data.prompts import Prompt
from sqltune.runcard import RunCard
from sqltune.train.data import Sample
from sqltune.train.rewards import ExecutionReward
from tests.infer.conftest import write_concert_db
from tests.tiny import make_dataset, tiny_model_dir  # noqa: F401

DB_ID = "concert_singer"
GENERATION = ["num_candidates=3", "max_new_tokens=12", "kto_per_question=2"]


def register_db_dir(data, db_dir, name="tiny_train"):
    registry = json.loads((data / "dataset_info.json").read_text())
    registry[name]["sqltune"]["db_dir"] = str(db_dir)
    (data / "dataset_info.json").write_text(json.dumps(registry))


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("databases")
    write_concert_db(folder / DB_ID / f"{DB_ID}.sqlite")
    return folder


@pytest.fixture
def data(tmp_path, db_dir):
    """Six questions (one with an earlier turn) over the concert database, with its db_dir."""
    folder = make_dataset(tmp_path / "data", count=6)
    register_db_dir(folder, db_dir)
    return folder


@pytest.fixture(scope="module")
def sft_run(tiny_model_dir, tmp_path_factory):  # noqa: F811
    """A LoRA run of the tiny model after two SFT steps: its samples are not yet SQL."""
    out = tmp_path_factory.mktemp("sft")
    train_data = make_dataset(tmp_path_factory.mktemp("sft-data"), count=8)
    argv = [
        "train",
        f"model_name_or_path={tiny_model_dir}",
        f"dataset_dir={train_data}",
        "dataset=tiny_train",
    ]
    argv += [f"output_dir={out}", "max_steps=2", "per_device_train_batch_size=4", "lora_rank=4"]
    assert cli([*argv, "learning_rate=1e-3", "save_strategy=no", "logging_steps=1"]) == 0
    return out


def pairs(run, data, output_dir, *extra: str) -> int:
    argv = ["data", "pairs", f"run_dir={run}", f"dataset_dir={data}", "dataset=tiny_train"]
    return cli([*argv, f"output_dir={output_dir}", *GENERATION, *extra])


def result(db_dir, sql: str) -> Counter | None:
    """The rows of `sql` as a multiset (None when it fails), straight from SQLite."""
    conn = sqlite3.connect(f"file:{db_dir / DB_ID / f'{DB_ID}.sqlite'}?mode=ro", uri=True)
    try:
        return Counter(conn.execute(sql).fetchall())
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def output_files(folder) -> dict[str, str]:
    names = ["tiny_train_pairs.jsonl", "tiny_train_pairs_kto.jsonl", "tiny_train_pairs.counts.json"]
    files = {name: (folder / name).read_text() for name in names}
    registry = json.loads((folder / "dataset_info.json").read_text())
    files["registry"] = json.dumps({k: v for k, v in registry.items() if k != "tiny_train"}, sort_keys=True)
    return files


def test_pairs_are_judged_by_execution_and_train_dpo(sft_run, data, db_dir, tmp_path):
    assert pairs(sft_run, data, data) == 0
    summary = json.loads((data / "tiny_train_pairs.counts.json").read_text())
    counts = summary["counts"]
    assert counts["questions"] == 6 and counts["candidates"] == 18
    assert counts["pairs"] + counts["no_rejected"] + counts["gold_fails"] == counts["questions"]
    assert counts["gold_fails"] == 0 and counts["pairs"] >= 1
    rows = read_jsonl(data / "tiny_train_pairs.candidates.jsonl")
    outcomes = [{c["outcome"] for c in row["candidates"]} for row in rows]
    assert counts["with_correct"] == sum("match" in o for o in outcomes)
    assert counts["with_wrong_result"] == sum("wrong_result" in o for o in outcomes)
    assert counts["with_failing"] == sum(bool(o & {"fails", "no_query"}) for o in outcomes)

    records = read_jsonl(data / "tiny_train.jsonl")
    prompts = {(r["instruction"], r["input"], json.dumps(r["history"])): r["output"] for r in records}
    written = read_jsonl(data / "tiny_train_pairs.jsonl")
    assert len(written) == counts["pairs"] and any(pair["history"] for pair in written)
    assert sum(pair["chosen"] in prompts.values() for pair in written) >= counts["pairs_gold_chosen"]
    for pair in written:  # the source record's prompt; chosen runs to the gold rows, rejected does not
        gold = prompts[(pair["instruction"], pair["input"], json.dumps(pair["history"]))]
        assert result(db_dir, pair["chosen"]) == result(db_dir, gold) is not None
        assert result(db_dir, pair["rejected"]) != result(db_dir, gold)
    kto = read_jsonl(data / "tiny_train_pairs_kto.jsonl")
    assert len(kto) == counts["kto_desirable"] + counts["kto_undesirable"] and counts["kto_desirable"] >= 6
    for record in kto:
        gold = prompts[(record["instruction"], record["input"], json.dumps(record["history"]))]
        assert record["label"] == (result(db_dir, record["output"]) == result(db_dir, gold))

    registry = json.loads((data / "dataset_info.json").read_text())
    assert set(registry) == {"tiny_train", "tiny_train_pairs", "tiny_train_pairs_kto"}
    assert registry["tiny_train_pairs"]["ranking"] is True
    assert registry["tiny_train_pairs_kto"]["columns"]["kto_tag"] == "label"
    assert registry["tiny_train_pairs"]["sqltune"]["prompt"]["prompt_format"] == "ddl"

    out = tmp_path / "dpo"
    argv = ["train", "stage=dpo", "dataset=tiny_train_pairs", f"dataset_dir={data}", f"output_dir={out}"]
    argv += [f"adapter_name_or_path={sft_run}", "max_steps=2", "per_device_train_batch_size=2"]
    assert cli([*argv, "save_strategy=no", "logging_steps=1", "learning_rate=1e-3"]) == 0
    card = RunCard.load(out)
    assert card.stage == "dpo" and card.metrics["train_steps"] == 2
    assert card.data_stats["tiny_train_pairs"]["kept"] == counts["pairs"]
    if stage_available("kto"):  # the KTO labels train as they are
        argv = ["train", "stage=kto", "dataset=tiny_train_pairs_kto", f"dataset_dir={data}"]
        argv += [f"output_dir={tmp_path / 'kto'}", f"adapter_name_or_path={sft_run}", "max_steps=1"]
        assert cli([*argv, "per_device_train_batch_size=2", "save_strategy=no"]) == 0
        assert RunCard.load(tmp_path / "kto").stage == "kto"


def test_a_resumed_run_writes_what_an_uninterrupted_one_does(sft_run, data, tmp_path):
    whole = tmp_path / "whole"
    assert pairs(sft_run, data, whole) == 0
    # stopped by a limit, then continued; the questions already done are not sampled again
    resumed = tmp_path / "resumed"
    assert pairs(sft_run, data, resumed, "limit=2") == 0
    assert json.loads((resumed / "tiny_train_pairs.counts.json").read_text())["counts"]["questions"] == 2
    candidates = resumed / "tiny_train_pairs.candidates.jsonl"
    rows = read_jsonl(candidates)
    rows[0]["candidates"][0]["marker"] = "kept"
    candidates.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert pairs(sft_run, data, resumed) == 0
    rows = read_jsonl(candidates)
    assert len(rows) == 6 and rows[0]["candidates"][0].pop("marker") == "kept"
    assert rows == read_jsonl(whole / "tiny_train_pairs.candidates.jsonl")
    assert output_files(resumed) == output_files(whole)
    # interrupted: a candidates file of the first questions only
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    lines = (whole / "tiny_train_pairs.candidates.jsonl").read_text().splitlines(keepends=True)
    (interrupted / "tiny_train_pairs.candidates.jsonl").write_text("".join(lines[:3]))
    assert pairs(sft_run, data, interrupted) == 0
    assert output_files(interrupted) == output_files(whole)


def test_user_errors_are_one_line(sft_run, data, tmp_path, capsys):
    plain = make_dataset(tmp_path / "plain", count=2)  # registers no db_dir
    assert pairs(sft_run, plain, plain) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "sqltune data: error: sqltune data pairs executes answers: dataset 'tiny_train' records no db_dir "
        "(the folder of <db_id>/<db_id>.sqlite); build it with sqltune data ... db_dir=..."
    ]
    assert not (plain / "tiny_train_pairs.jsonl").exists()
    # a candidates file sampled with other settings is not continued
    (data / "tiny_train_pairs.candidates.jsonl").write_text('{"index": 0, "settings": "other"}\n')
    assert pairs(sft_run, data, data) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 1 was written with other settings" in err[0]
    assert pairs(sft_run, data, data, "dataset_name=tiny_train") == 2
    assert "would replace the dataset it is built from" in capsys.readouterr().err


GOLD = "SELECT name FROM singer WHERE country = 'France'"


def judged(db_dir, *answers: str, gold: str = GOLD) -> dict:
    """The row `sqltune data pairs` keeps for one question answered with `answers` (most likely first)."""
    sample = Sample(Prompt("schema\n", "-- Question: French singers?\nSQL:"), gold, db_id=DB_ID)
    reward = ExecutionReward(db_dir)
    try:
        return judge_question(0, sample, [(a, None) for a in answers], reward, "key")
    finally:
        reward.close()


def test_selection_prefers_own_correct_answers_and_hard_negatives(db_dir):
    failing = "SELECT nme FROM singer"
    wrong = "SELECT name FROM singer"
    correct = "```sql\nSELECT name FROM singer WHERE 'France' = country;\n```"
    row = judged(db_dir, failing, "I do not know", wrong, correct, "")
    assert [c["outcome"] for c in row["candidates"]] == [
        "fails",
        "no_query",
        "wrong_result",
        "match",
        "no_query",
    ]
    # the model's own correct answer (its SQL), against the wrong result though failures were likelier
    assert choose_pair(row) == ("SELECT name FROM singer WHERE 'France' = country", wrong, False)
    # no correct answer: the gold; no wrong result: the likeliest failure
    assert choose_pair(judged(db_dir, "", "I do not know", failing)) == (GOLD, failing, True)
    # nothing to reject: every answer is right (or empty)
    assert choose_pair(judged(db_dir, correct, "")) is None
    assert kto_answers(row, cap=3) == [
        (failing, False),
        ("I do not know", False),
        (wrong, False),
        (GOLD, True),
    ]
    assert kto_answers(judged(db_dir, correct, correct, wrong), cap=4) == [
        ("SELECT name FROM singer WHERE 'France' = country", True),
        (wrong, False),
        (GOLD, True),
    ]


def test_counts_add_up_and_a_failing_gold_gives_nothing(db_dir):
    rows = [
        judged(db_dir, "SELECT name FROM singer", "SELECT nme FROM singer"),
        judged(db_dir, GOLD, GOLD),
        judged(db_dir, "SELECT nme FROM singer"),
        judged(db_dir, "SELECT name FROM singer", gold="SELECT nothing FROM nowhere"),
    ]
    samples = [Sample(Prompt("schema\n", f"q{i}"), row["gold"], db_id=DB_ID) for i, row in enumerate(rows)]
    pairs_, kto, counts = assemble(rows, samples, cap=4)
    assert counts == {
        "questions": 4,
        "candidates": 6,
        "with_correct": 1,
        "with_wrong_result": 1,
        "with_failing": 2,
        "gold_fails": 1,
        "pairs": 2,
        "pairs_gold_chosen": 2,
        "no_rejected": 1,
        "kto_desirable": 3,
        "kto_undesirable": 3,
    }
    assert [p["input"] for p in pairs_] == ["q0", "q2"] and {k["input"] for k in kto} == {"q0", "q1", "q2"}
