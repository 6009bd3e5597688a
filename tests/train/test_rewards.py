"""The execution reward on a real SQLite file: every outcome, safety, and the TRL calling convention."""

import hashlib
import sqlite3

import pytest

from sqltune.errors import DataError
from sqltune.train.rewards import ExecutionReward, RewardWeights

GOLD = "SELECT name FROM singer WHERE country = 'France' ORDER BY age"
SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
    "SELECT count(*) FROM c"
)


@pytest.fixture
def db_dir(tmp_path):
    folder = tmp_path / "databases"
    (folder / "shop").mkdir(parents=True)
    conn = sqlite3.connect(folder / "shop" / "shop.sqlite")
    conn.execute("CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER)")
    conn.executemany(
        "INSERT INTO singer VALUES (?, ?, ?, ?)",
        [(1, "Ana", "France", 30), (2, "Ben", "Spain", 41), (3, "Cleo", "France", 25)],
    )
    conn.commit()
    conn.close()
    return folder


def checksum(db_dir) -> str:
    return hashlib.sha256((db_dir / "shop" / "shop.sqlite").read_bytes()).hexdigest()


def score(reward: ExecutionReward, *completions) -> list[float]:
    count = len(completions)
    return reward(["question"] * count, list(completions), db_id=["shop"] * count, gold_sql=[GOLD] * count)


def test_every_outcome_has_its_reward(db_dir):
    reward = ExecutionReward(db_dir, timeout=0.2)
    correct = "```sql\nSELECT name FROM singer WHERE country = 'France' ORDER BY age;\n```"
    wrong = "SELECT name FROM singer ORDER BY age"
    error = "SELECT nme FROM singer"
    # prose without SQL is kept as written by the extraction rule: not a query, and it fails
    assert score(reward, correct, wrong, error, "", "I do not know.") == [6.0, 0.0, -4.0, -6.0, -6.0]
    assert dict(reward.outcomes) == {"no_query": 2, "fails": 1, "wrong_result": 1, "match": 1}


def test_reward_weights_key_sets_the_ladder(db_dir):
    """`reward_weights=format,executes,match`: e.g. correctness first (a query that merely runs earns
    little more than one that fails), as Arctic-Text2SQL-R1 rewards."""
    from sqltune.args import FinetuningArguments
    from sqltune.errors import ConfigError

    weights = FinetuningArguments(reward_weights="0.5,0.5,3").execution_reward_weights()
    assert weights == RewardWeights(format=0.5, executes=0.5, match=3.0)
    reward = ExecutionReward(db_dir, timeout=0.2, weights=weights)
    correct = "SELECT name FROM singer WHERE country = 'France' ORDER BY age"
    wrong, error = "SELECT name FROM singer ORDER BY age", "SELECT nme FROM singer"
    assert score(reward, correct, wrong, error, "") == [4.0, -2.0, -3.0, -4.0]
    assert FinetuningArguments().execution_reward_weights() == RewardWeights()  # SQL-R1's 1, 2, 3
    for bad in ("1,2", "1,x,3", "1,-2,3", "nan,1,1"):
        with pytest.raises(ConfigError, match="reward_weights: give three weights"):
            FinetuningArguments(reward_weights=bad)


def test_evaluator_rules_decide_the_match(db_dir):
    reward = ExecutionReward(db_dir)
    gold = "SELECT name, age FROM singer WHERE country = 'France'"
    swapped = "SELECT DISTINCT age, name FROM singer WHERE country = 'France' ORDER BY name DESC"
    assert reward([None], [swapped], db_id=["shop"], gold_sql=[gold]) == [6.0]
    # the gold orders: the same rows in another order do not match
    assert score(reward, "SELECT name FROM singer WHERE country = 'France' ORDER BY age DESC") == [0.0]


def test_timeout_scores_as_a_failure_without_stalling(db_dir):
    import time

    reward = ExecutionReward(db_dir, timeout=0.05)
    began = time.perf_counter()
    judgement = reward.judge(SLOW, "shop", GOLD)
    assert time.perf_counter() - began < 5
    assert judgement.outcome == "fails" and judgement.error == "timeout" and judgement.reward == -4.0


def test_drop_table_changes_nothing(db_dir):
    before = checksum(db_dir)
    reward = ExecutionReward(db_dir)
    for attack, outcome in (
        ("DROP TABLE singer", "no_query"),
        ("SELECT 1; DROP TABLE singer;", "wrong_result"),  # one statement: the SELECT
        ("DELETE FROM singer", "no_query"),
        ("ATTACH DATABASE 'x.sqlite' AS x", "no_query"),
        ("PRAGMA writable_schema = ON", "no_query"),
        ("WITH x AS (SELECT 1) DELETE FROM singer", "fails"),  # a query's opening, then a write
    ):
        assert reward.judge(attack, "shop", GOLD).outcome == outcome, attack
    assert reward.judge("DROP TABLE singer", "shop", GOLD).reward == -6.0  # not a query, and fails
    assert checksum(db_dir) == before
    conn = sqlite3.connect(db_dir / "shop" / "shop.sqlite")
    assert conn.execute("SELECT count(*) FROM singer").fetchone() == (3,)
    conn.close()


def test_chat_completions_weights_and_trl_keywords(db_dir):
    metrics = {}
    reward = ExecutionReward(db_dir, weights=RewardWeights(format=0.5, executes=1, match=2))
    completions = [
        [{"role": "assistant", "content": "SELECT name FROM singer WHERE country = 'France' ORDER BY age"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "SELECT name FROM singer"}]}],
        [],
    ]
    values = reward(
        prompts=[[{"role": "user", "content": "q"}]] * 3,
        completions=completions,
        db_id=["shop"] * 3,
        gold_sql=[GOLD] * 3,
        completion_ids=[[1], [2], [3]],
        trainer_state=None,
        log_metric=lambda name, value: metrics.__setitem__(name, value),
    )
    assert values == [3.5, -0.5, -3.5]
    assert metrics["execution/match"] == pytest.approx(1 / 3)
    assert metrics["execution/no_query"] == pytest.approx(1 / 3)


def test_gold_that_fails_leaves_the_result_component_out(db_dir):
    reward = ExecutionReward(db_dir)
    runs = reward(
        [None], ["SELECT name FROM singer"], db_id=["shop"], gold_sql=["SELECT nothing FROM nowhere"]
    )
    fails = reward(
        [None], ["SELECT x FROM nowhere"], db_id=["shop"], gold_sql=["SELECT nothing FROM nowhere"]
    )
    assert runs == [3.0] and fails == [-1.0]


def test_missing_database_or_columns_are_user_errors(db_dir):
    reward = ExecutionReward(db_dir)
    with pytest.raises(DataError, match="no database for db_id 'nope'"):
        reward([None], ["SELECT 1"], db_id=["nope"], gold_sql=["SELECT 1"])
    with pytest.raises(DataError, match="db_id and gold_sql"):
        reward([None], ["SELECT 1"])
