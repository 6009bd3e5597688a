"""The SQL extraction rule shared by prediction and evaluation."""

import pytest

from sqltune.sql_extract import extract_sql, statement_complete


@pytest.mark.parametrize(
    "text, sql",
    [
        ("SELECT name FROM singer", "SELECT name FROM singer"),
        ("```sql\nSELECT name\nFROM singer;\n```\nThis lists every singer.", "SELECT name FROM singer"),
        ("```\nSELECT 1\n```", "SELECT 1"),
        ("```sql\nSELECT 1", "SELECT 1"),  # unclosed fence
        ("Here is the query: SELECT name FROM singer", "SELECT name FROM singer"),
        ("To select the oldest singer, run:\nSELECT name FROM singer ORDER BY age DESC LIMIT 1",
         "SELECT name FROM singer ORDER BY age DESC LIMIT 1"),
        ("### Question: which singers?\n### SQL:\nselect name from singer", "select name from singer"),
        ("With a CTE:\nWITH old AS (SELECT * FROM singer WHERE age > 40) SELECT name FROM old",
         "WITH old AS (SELECT * FROM singer WHERE age > 40) SELECT name FROM old"),
        ("SELECT name FROM singer WHERE country = \u2018France\u2019", "SELECT name FROM singer WHERE country = 'France'"),
        ("SELECT name -- the name\nFROM singer /* all */ WHERE age > 1", "SELECT name FROM singer WHERE age > 1"),
        ("SELECT name FROM singer WHERE note = '-- not a comment'", "SELECT name FROM singer WHERE note = '-- not a comment'"),
        ("SELECT 1;;", "SELECT 1"),
        ("SELECT 'a;b' FROM t; DROP TABLE t;", "SELECT 'a;b' FROM t"),
        # A `;` inside parentheses or quotes is not the end of the statement.
        ('SELECT * FROM t WHERE (a LIKE "%x;y%");', 'SELECT * FROM t WHERE (a LIKE "%x;y%")'),
        ('SELECT total FROM b WHERE id IN (SELECT id FROM p WHERE d LIKE "%January%" ;)',
         'SELECT total FROM b WHERE id IN (SELECT id FROM p WHERE d LIKE "%January%" ;)'),
        ("SELECT a FROM t WHERE a IN (SELECT a FROM u;) ; SELECT 2", "SELECT a FROM t WHERE a IN (SELECT a FROM u;)"),
        ("SELECT [a;b] FROM t WHERE x = ')' ; SELECT 2", "SELECT [a;b] FROM t WHERE x = ')'"),
        ("SELECT 1) ; DROP TABLE t", "SELECT 1)"),
        ("SELECT   a,\n\tb  FROM t", "SELECT a, b FROM t"),
        ("SELECT 'x  y' FROM t", "SELECT 'x  y' FROM t"),
        ("SELECT nom FROM chanteur WHERE pays = 'Côte d''Ivoire'", "SELECT nom FROM chanteur WHERE pays = 'Côte d''Ivoire'"),
        ("I cannot answer that.", "I cannot answer that."),
        ("", ""),
    ],
)  # fmt: skip
def test_extract_sql(text, sql):
    assert extract_sql(text) == sql


def test_extraction_is_idempotent():
    text = "Answer:\n```sql\nSELECT a ,\n b FROM t -- done\n;\n```"
    assert extract_sql(extract_sql(text)) == extract_sql(text) == "SELECT a , b FROM t"


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("SELECT a FROM t;", True),
        ("SELECT a FROM t", False),
        ("Here it is:\nSELECT a FROM t; and more", True),
        ("SELECT a FROM t WHERE b = 'x;", False),  # inside a literal
        ("SELECT a FROM t WHERE b IN (SELECT c FROM u;", False),  # inside parentheses
        ("-- note; SELECT a", False),  # inside a comment
        ("you can select rows; then", False),  # prose, not a statement starting a line
        ("```sql\nSELECT a FROM t\n```", True),
        ("```sql\nSELECT a FROM t;", False),  # the fence decides: still open
        ("The table has columns a; b", False),
    ],
)
def test_statement_complete(text, complete):
    assert statement_complete(text) is complete
