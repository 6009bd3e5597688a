"""Tokeniser, grammar, hardness and exact set match: the official behaviour, quirks included."""

from __future__ import annotations

import pytest

from sqltune.evaluate.spider.exact import EMPTY_SQL, exact_match, foreign_key_map, normalize
from sqltune.evaluate.spider.hardness import hardness
from sqltune.evaluate.spider.parse import ParseError, SpiderSchema, parse_sql
from sqltune.evaluate.spider.tokenize import sentences, tokenize

from .conftest import TABLES


@pytest.fixture()
def schema(bench):
    db_dir, _, _ = bench
    return SpiderSchema.from_sqlite(db_dir / "music" / "music.sqlite")


def em(pred: str, gold: str, schema: SpiderSchema) -> bool:
    fk = foreign_key_map(TABLES[0])
    try:
        pred_sql = parse_sql(pred, schema)
    except ParseError:
        pred_sql = EMPTY_SQL
    return exact_match(normalize(pred_sql, schema, fk), normalize(parse_sql(gold, schema), schema, fk))[0]


def test_tokens_without_nltk():
    assert tokenize("SELECT T1.name, count(*) FROM singer AS T1 WHERE age >= 30 AND name != 'Ann'") == [
        "select", "t1.name", ",", "count", "(", "*", ")", "from", "singer", "as", "t1",
        "where", "age", ">=", "30", "and", "name", "!=", '"Ann"',
    ]  # fmt: skip
    assert tokenize("a > = 3 and b ! = 4") == ["a", ">=", "3", "and", "b", "!=", "4"]
    assert tokenize("a <> 3") == ["a", "<", ">", "3"]  # never rejoined: <> does not parse
    assert tokenize("x = 'it''s'")[-1] == "__val_4_7____val_8_10__"  # '' splits the literal: unparseable
    with pytest.raises(ParseError):
        tokenize('name = "O\'Brien"')  # three quote characters after ' -> "


def test_sentence_split_moves_a_final_period_only_where_punkt_would():
    assert sentences("where x > 5. AND y = 2") == ["where x > 5.", "AND y = 2"]
    assert sentences("where x > 5. and y = 2") == ["where x > 5. and y = 2"]  # number, then lower case
    assert sentences("FROM a AS c. T2") == ["FROM a AS c. T2"]  # 'c' is a known abbreviation
    assert tokenize("SELECT age FROM singer WHERE age > 5. AND age < 9")[-6:] == [
        "5",
        ".",
        "and",
        "age",
        "<",
        "9",
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT T1.name FROM singer T1",  # table alias without AS
        "SELECT count(*) AS n FROM singer",  # column alias
        "SELECT name FROM singer WHERE age <> 30",
        "SELECT name FROM singer WHERE country IS NULL",
        "SELECT name FROM singer WHERE age=30",  # '=' glued to its operands
        "SELECT name FROM singer AS singer",  # alias equal to a table name
        "SELECT nope FROM singer",
        "SELECT name FROM singer LIMIT",
        "",
    ],
)
def test_the_official_grammar_rejects(sql, schema):
    with pytest.raises(ParseError):
        parse_sql(sql, schema)


def test_the_official_grammar_accepts_and_ignores(schema):
    limited = parse_sql("SELECT name FROM singer ORDER BY age LIMIT 3.0", schema)
    assert limited.limit == 1  # every LIMIT value is recorded as 1
    trailing = parse_sql("SELECT name FROM singer ORDER BY age whatever comes after", schema)
    assert trailing == parse_sql("SELECT name FROM singer ORDER BY age", schema)
    assert parse_sql("SELECT name FROM singer WHERE age > 30", schema).where[0].val1 == 30.0


def test_exact_set_match_ignores_values_order_of_items_and_join_direction(schema):
    gold = "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id WHERE T2.year > 2014"
    assert em(gold, gold, schema)
    assert em(gold.replace("2014", "1999"), gold, schema)
    swapped = (
        "SELECT T2.name FROM concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.singer_id WHERE T1.year > 5"
    )
    assert em(swapped, gold, schema)
    assert em("select name , age from singer", "SELECT age, name FROM singer", schema)
    assert em("SELECT count(DISTINCT name) FROM singer", "SELECT count(name) FROM singer", schema)
    assert not em("SELECT name FROM singer ORDER BY age DESC", "SELECT name FROM singer ORDER BY age", schema)
    assert not em("SELECT name FROM singer", "SELECT name FROM singer LIMIT 1", schema)
    assert not em("SELECT T1.name FROM singer T1", "SELECT name FROM singer", schema)  # parse failure


def test_foreign_key_groups_never_merge():
    entry = {
        "table_names_original": ["a", "b", "c"],
        "column_names_original": [[-1, "*"], [0, "x"], [1, "x"], [2, "x"], [2, "y"]],
        "foreign_keys": [[2, 1], [4, 3], [3, 2]],  # the last pair bridges two groups
    }
    mapping = foreign_key_map(entry)
    assert mapping["__b.x__"] == "__a.x__" and mapping["__c.y__"] == "__c.x__"
    # c.x joined the first group too, but its own group, written later, wins: nothing is unified.
    assert mapping["__c.x__"] == "__c.x__"


@pytest.mark.parametrize(
    "sql, level",
    [
        ("SELECT name FROM singer", "easy"),
        ("SELECT name FROM singer WHERE age > 3", "easy"),
        ("SELECT name, age FROM singer WHERE age > 3", "medium"),
        ("SELECT count(*) FROM singer WHERE age NOT BETWEEN 1 AND 5", "medium"),  # NOT counts as an aggregation
        ("SELECT count(*) FROM singer GROUP BY country HAVING count(*) > 1 AND min(age) > 2", "medium"),  # so does AND
        ("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)", "hard"),
        ("SELECT name FROM singer EXCEPT SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id", "hard"),
    ],
)  # fmt: skip
def test_hardness(sql, level, schema):
    assert hardness(parse_sql(sql, schema)) == level
