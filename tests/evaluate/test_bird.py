"""BIRD: EX as set equality of rows, R-VES rewards, and the breakdown by difficulty."""

from __future__ import annotations

import json
import math

import pytest

from sqltune.evaluate import evaluate
from sqltune.evaluate.bird import r_ves, reward

from .conftest import build_db


@pytest.mark.parametrize(
    "ratio, expected",
    [(0, 0), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.99, 0.75), (1, 1), (1.99, 1), (2, 1.25), (9, 1.25)],
)
def test_reward_tiers(ratio, expected):
    assert reward(ratio) == expected


def test_r_ves_is_the_mean_square_root_reward():
    assert r_ves([1.25, 0, 1, 0.25]) == pytest.approx(100 * (math.sqrt(1.25) + 1 + 0.5) / 4)
    assert r_ves([]) == 0


def test_bird_ex_and_r_ves_end_to_end(tmp_path):
    build_db(tmp_path / "dbs" / "music" / "music.sqlite")
    gold = [
        {"question": "q0", "evidence": "", "SQL": "SELECT name FROM singer WHERE age > 40", "db_id": "music", "difficulty": "simple"},
        {"question": "q1", "evidence": "", "SQL": "SELECT name, age FROM singer", "db_id": "music", "difficulty": "moderate"},
        {"question": "q2", "evidence": "", "SQL": "SELECT count(*) FROM concert", "db_id": "music", "difficulty": "challenging"},
        {"question": "q3", "evidence": "", "SQL": "SELECT venue FROM concert", "db_id": "music", "difficulty": "simple"},
    ]  # fmt: skip
    preds = {
        "0": "SELECT name FROM singer WHERE age > 40 UNION ALL SELECT 'Bob'\t----- bird -----\tmusic",  # duplicates: a set
        "1": "SELECT age, name FROM singer\t----- bird -----\tmusic",  # columns swapped: wrong for BIRD
        "2": "SELECT count(*) FROM concert ORDER BY 1\t----- bird -----\tmusic",
        "3": "SELECT nonsense\t----- bird -----\tmusic",
    }
    (tmp_path / "dev.json").write_text(json.dumps(gold))
    (tmp_path / "predict_dev.json").write_text(json.dumps(preds))
    report = evaluate(
        tmp_path / "predict_dev.json",
        tmp_path / "dev.json",
        tmp_path / "dbs",
        format="bird",
        ves_repeats=3,
        workers=1,
    )
    rows = report["examples"]
    assert [r["exec"] for r in rows] == [1, 0, 1, 0]
    assert [r["difficulty"] for r in rows] == ["simple", "moderate", "challenging", "simple"]
    assert rows[1]["reward"] == 0 and rows[3]["reward"] == 0 and "no such column" in rows[3]["error"]
    assert all(rows[i]["reward"] in (0.25, 0.5, 0.75, 1.0, 1.25) for i in (0, 2))
    levels = report["summary"]["levels"]
    assert levels["simple"]["exec"] == {"correct": 1, "count": 2, "rate": 0.5}
    assert levels["all"]["exec"]["correct"] == 2
    assert levels["all"]["r_ves"] == pytest.approx(r_ves([r["reward"] for r in rows]))
    assert report["settings"]["ves_repeats"] == 3
    ex_only = evaluate(
        tmp_path / "predict_dev.json",
        tmp_path / "dev.json",
        tmp_path / "dbs",
        format="bird",
        etype="exec",
        workers=1,
    )
    assert [r["exec"] for r in ex_only["examples"]] == [1, 0, 1, 0] and ex_only["summary"]["levels"]["all"][
        "r_ves"
    ] is None
