"""Execution-guided choice on a real SQLite database."""

import pytest

from sqltune.infer.guided import choose, result_key
from tests.infer.conftest import write_concert_db


@pytest.fixture
def db(tmp_path):
    return write_concert_db(tmp_path / "concert_singer.sqlite")


def test_majority_of_agreeing_results_wins(db):
    sqls = [
        "SELECT name FROM singer WHERE country = 'Spain'",  # most likely, but alone
        "SELECT nme FROM singer",  # fails: no such column
        "SELECT name FROM singer WHERE country = 'France'",
        "SELECT name FROM singer WHERE age < 35 ORDER BY age",  # same rows, other order and SQL
    ]
    choice = choose(sqls, db, timeout=2, rule="vote")
    assert (choice.index, choice.votes, choice.reason) == (2, 2, "vote")
    assert choice.outcomes[0] == "rows" and "no such column" in choice.outcomes[1]


def test_first_keeps_the_most_likely_candidate_that_returns_rows(db):
    sqls = [
        "SELECT nme FROM singer",  # most likely, fails
        "SELECT name FROM singer WHERE age > 99",  # executes, empty
        "SELECT name FROM singer WHERE country = 'Spain'",  # the most likely with rows, alone
        "SELECT name FROM singer WHERE country = 'France'",
        "SELECT name FROM singer WHERE age < 35 ORDER BY age",  # agrees with the one above
    ]
    choice = choose(sqls, db, timeout=2)
    assert (choice.index, choice.votes, choice.reason) == (2, 1, "most likely with rows result")
    assert choose(sqls, db, timeout=2, rule="vote").index == 3
    assert choose(sqls[:2], db, timeout=2).index == 1  # only an empty result: still better than a failure


def test_ties_go_to_the_most_likely_executable_candidate(db):
    sqls = ["SELEC 1", "SELECT count(*) FROM singer", "SELECT count(*) FROM song"]
    choice = choose(sqls, db, timeout=2, rule="vote")
    assert (choice.index, choice.votes, choice.reason) == (1, 1, "most likely executable")


def test_rows_beat_empty_results_and_failures_fall_back_to_the_first(db):
    sqls = [
        "SELECT name FROM singer WHERE age > 99",
        "SELECT name FROM singer WHERE age > 99 AND 1",
        "SELECT 1",
    ]
    assert choose(sqls, db, timeout=2, rule="vote").index == 2  # rows beat two agreeing empty results
    assert choose(sqls[:2], db, timeout=2, rule="vote").reason == "vote"  # empty results vote too
    assert choose(sqls, db, timeout=2).index == 2  # first: rows beat empty results too
    nothing = choose(["", "DROP TABLE singer", "SELECT * FROM nowhere"], db, timeout=2)
    assert (nothing.index, nothing.votes, nothing.reason) == (0, 0, "none executable")
    assert nothing.outcomes[0] == "empty answer"


def test_slow_and_writing_candidates_are_discarded(db):
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT max(x) FROM n"
    choice = choose([endless, "DELETE FROM singer", "SELECT count(*) FROM singer"], db, timeout=0.2)
    assert choice.index == 2 and choice.outcomes[0] == "timeout"
    assert choose(["SELECT count(*) FROM singer"], db, timeout=1).index == 0  # nothing was deleted
    assert result_key([(1.0, "a"), (2, None)]) == result_key([(2, None), (1, "a")])
