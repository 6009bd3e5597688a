"""The execution reward on real PostgreSQL and MariaDB servers (`db_url=`): the same rewards as on
the SQLite file, gold run on the same server, nothing changed, nothing hanging."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from sqltune.db import execute
from sqltune.errors import ConfigError, DataError
from sqltune.train.rewards import ExecutionReward
from tests.servers import create_database

from .test_rewards import GOLD

ROWS = [(1, "Ana", "France", 30), (2, "Ben", "Spain", 41), (3, "Cleo", "France", 25)]
PASSWORD = "pw-never-shown"


@pytest.fixture
def shop(server_url, tmp_path) -> tuple[str, Path]:
    """(URL template on the server, db_dir): the shop database of test_rewards.py on both."""
    (tmp_path / "shop").mkdir()
    conn = sqlite3.connect(tmp_path / "shop" / "shop.sqlite")
    conn.execute("CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER)")
    conn.executemany("INSERT INTO singer VALUES (?, ?, ?, ?)", ROWS)
    conn.commit()
    conn.close()
    values = ", ".join(f"({i}, '{name}', '{country}', {age})" for i, name, country, age in ROWS)
    create_database(
        server_url,
        "sqltune_reward_shop",
        [
            "CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name VARCHAR(20), country VARCHAR(20), age INTEGER)",
            f"INSERT INTO singer VALUES {values}",
        ],
    )
    return server_url + "sqltune_reward_{db_id}", tmp_path


def judge_all(reward: ExecutionReward, completions: list[str], gold: str = GOLD) -> list[float]:
    count = len(completions)
    return reward(["question"] * count, completions, db_id=["shop"] * count, gold_sql=[gold] * count)


COMPLETIONS = [
    "```sql\nSELECT name FROM singer WHERE country = 'France' ORDER BY age;\n```",  # match
    "SELECT name FROM singer ORDER BY age",  # wrong result
    "SELECT nme FROM singer",  # fails
    "",  # no query
    "DROP TABLE singer",  # not a query: refused, fails
    "DELETE FROM singer",
    "SELECT name FROM singer WHERE country = 'France' ORDER BY age DESC",  # order counts: wrong
]


def test_the_reward_on_a_server_is_the_reward_on_sqlite(shop):
    url, db_dir = shop
    on_server = ExecutionReward(db_url=url, timeout=2)
    on_sqlite = ExecutionReward(db_dir, timeout=2)
    expected = [6.0, 0.0, -4.0, -6.0, -6.0, -6.0, 0.0]
    assert judge_all(on_sqlite, COMPLETIONS) == expected
    assert judge_all(on_server, COMPLETIONS) == expected
    assert dict(on_server.outcomes) == dict(on_sqlite.outcomes)
    assert execute(url.format(db_id="shop"), "SELECT count(*) FROM singer").rows == [(3,)]
    on_server.close()


def test_gold_the_server_rejects_scores_the_result_component_0(shop):
    reward = ExecutionReward(db_url=shop[0], timeout=2)
    gold = "SELECT name FROM singer WHERE name GLOB 'A*'"  # SQLite's own GLOB: both servers refuse it
    assert judge_all(reward, ["SELECT name FROM singer", "SELECT nme FROM singer"], gold) == [3.0, -1.0]
    reward.close()


def test_a_slow_answer_is_stopped_by_the_server(shop):
    url = shop[0]
    sleep = "pg_sleep(1)" if url.startswith("postgresql") else "SLEEP(1)"
    reward = ExecutionReward(db_url=url, timeout=0.5)
    start = time.monotonic()
    judgement = reward.judge(f"SELECT name, {sleep} FROM singer", "shop", GOLD)
    assert time.monotonic() - start < 5
    assert (judgement.outcome, judgement.error) == ("fails", "timeout")
    reward.close()


def test_databases_are_checked_and_passwords_hidden(shop):
    url = shop[0]
    scheme, rest = url.split("://")
    with_password = f"{scheme}://{rest.split('@')[0]}:{PASSWORD}@{rest.split('@')[1]}"
    reward = ExecutionReward(db_url=with_password.replace("sqltune_reward_", "sqltune_absent_"), timeout=2)
    assert not reward.has_database("shop")
    with pytest.raises(DataError, match="not reachable") as caught:
        reward.database("shop")
    assert PASSWORD not in str(caught.value) and "***" in str(caught.value)
    assert ExecutionReward(db_url=url).has_database("shop")
    with pytest.raises(ConfigError, match="one of them"):
        ExecutionReward(shop[1], db_url=url)
    with pytest.raises(ConfigError, match="one of them"):
        ExecutionReward()
