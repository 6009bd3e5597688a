"""Single-table question/SQL templates of the synthesizer, and the pieces every template uses.

Each template picks a table, columns and real values from a `DatabaseProfile` and returns one
question with its SQL, or None when the database offers nothing that fits. The SQL is written in
Spider's style (upper-case keywords, lower-case aggregates) so synthesized data and benchmark data
look alike to a model; each template has several phrasings, worded from the schema's own table and
column names. Joins and nested queries are in `synth_joins`. This is our own code: no library
generates Text-to-SQL pairs offline.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from sqltune.data.prompts import quote_identifier as qi
from sqltune.data.synth_profile import ColumnProfile, DatabaseProfile, TableProfile, plural


@dataclass
class Pair:
    question: str
    sql: str
    kind: str  # the template's name
    difficulty: str  # easy, medium, hard, extra (Spider's levels, estimated by template)


# ---- words and literals ------------------------------------------------------------------------
def literal(value: object) -> str:
    """A value as SQL: text quoted, whole floats without '.0' (120.0 compares equal to 120)."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def spoken(value: object) -> str:
    return value if isinstance(value, str) else literal(value)


def phrase_list(columns: list[ColumnProfile], many: bool = False) -> str:
    """'name and age' (or 'names and ages' when `many`)."""
    words = [plural(c.phrase) if many else c.phrase for c in columns]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


GREATER = {"number": ["greater than", "more than", "above", "over"], "date": ["after", "later than"]}
LESS = {"number": ["less than", "below", "under"], "date": ["before", "earlier than"]}
HIGHEST = {"number": ["highest", "largest", "greatest"], "date": ["most recent", "latest"]}
LOWEST = {"number": ["lowest", "smallest"], "date": ["earliest", "oldest"]}


@dataclass
class Condition:
    """One WHERE condition on a column, with the words that say it."""

    column: ColumnProfile
    words: str  # 'France', 'greater than 30'
    op: str
    value: object

    @property
    def whose(self) -> str:
        return f"whose {self.column.phrase} is {self.words}"

    @property
    def with_(self) -> str:
        return f"with {self.column.phrase} {self.words}"

    def sql(self, alias: str = "") -> str:
        prefix = f"{alias}." if alias else ""
        return f"{prefix}{qi(self.column.name)} {self.op} {literal(self.value)}"


def pick_table(
    rng: random.Random, db: DatabaseProfile, need: Callable[[TableProfile], bool]
) -> TableProfile | None:
    """A random table that satisfies `need`, or None when none does."""
    tables = [t for t in db.tables if need(t)]
    return rng.choice(tables) if tables else None


def pick_measure(
    rng: random.Random, db: DatabaseProfile, kinds: tuple[str, ...]
) -> tuple[TableProfile, ColumnProfile, ColumnProfile] | None:
    """(table, a column of `kinds` to order or compare by, another column to ask for), or None."""
    table = pick_table(rng, db, lambda t: t.of_kind(*kinds) and len(t.describable) >= 2)
    if table is None:
        return None
    column = rng.choice(table.of_kind(*kinds))
    target = pick_target(rng, table, avoid=column)
    return (table, column, target) if target is not None else None


def pick_target(
    rng: random.Random, table: TableProfile, avoid: ColumnProfile | None = None
) -> ColumnProfile | None:
    """The column a question asks for: usually the label, sometimes another describable column."""
    choices = [c for c in table.describable if c is not avoid]
    if table.label is not None and table.label is not avoid and rng.random() < 0.65:
        return table.label
    return rng.choice(choices) if choices else None


def pick_condition(
    rng: random.Random, table: TableProfile, avoid: ColumnProfile | None = None
) -> Condition | None:
    """An equality on a text column or a comparison on a number or date, with a value the column holds."""
    eq = [c for c in table.of_kind("category", "text") if c is not avoid and c.values]
    cmp = [c for c in table.of_kind("number", "date") if c is not avoid and c.values]
    if not eq and not cmp:
        return None
    if eq and (not cmp or rng.random() < 0.55):
        column = rng.choice(eq)
        value = rng.choice(column.values)
        return Condition(column, spoken(value), "=", value)
    column = rng.choice(cmp)
    value = rng.choice(column.values)
    if column.kind == "number" and rng.random() < 0.15:
        words, op = rng.choice([("at least", ">="), ("at most", "<=")])
    elif rng.random() < 0.55:
        words, op = rng.choice(GREATER[column.kind]), ">"
    else:
        words, op = rng.choice(LESS[column.kind]), "<"
    return Condition(column, f"{words} {spoken(value)}", op, value)


def say_condition(rng: random.Random, condition: Condition) -> str:
    return condition.whose if rng.random() < 0.6 else condition.with_


# ---- single table ----------------------------------------------------------------------------------
def count_all(rng, db):
    table = rng.choice(db.tables)
    question = rng.choice(
        [
            "How many {P} are there?",
            "Count the number of {P}.",
            "What is the total number of {P}?",
            "How many {P} do we have?",
            "Find the number of {P}.",
        ]
    ).format(P=table.plural)
    return Pair(question, f"SELECT count(*) FROM {qi(table.name)}", "count_all", "easy")


def list_columns(rng, db):
    table = pick_table(rng, db, lambda t: t.describable)
    if table is None:
        return None
    columns = rng.sample(table.describable, min(len(table.describable), rng.choice([1, 1, 2])))
    question = rng.choice(
        [
            "List the {CP} of all {P}.",
            "What are the {CP} of all {P}?",
            "Show the {C} of every {S}.",
            "Give me the {C} of each {S}.",
        ]
    ).format(C=phrase_list(columns), CP=phrase_list(columns, many=True), P=table.plural, S=table.singular)
    sql = f"SELECT {', '.join(qi(c.name) for c in columns)} FROM {qi(table.name)}"
    return Pair(question, sql, "list_columns", "easy")


def distinct_values(rng, db):
    table = pick_table(rng, db, lambda t: t.of_kind("category"))
    if table is None:
        return None
    column = rng.choice(table.of_kind("category"))
    words = dict(C=column.phrase, P=table.plural)
    if rng.random() < 0.5:
        question = rng.choice(
            [
                "What are the different {C} values of the {P}?",
                "List the distinct {C} of all {P}.",
                "Show all the different {C} of {P}.",
            ]
        ).format(**words)
        return Pair(question, f"SELECT DISTINCT {qi(column.name)} FROM {qi(table.name)}", "distinct", "easy")
    question = rng.choice(
        ["How many different {C} values do the {P} have?", "Count the number of distinct {C} among {P}."]
    ).format(**words)
    sql = f"SELECT count(DISTINCT {qi(column.name)}) FROM {qi(table.name)}"
    return Pair(question, sql, "count_distinct", "easy")


def filter_rows(rng, db):
    table = pick_table(rng, db, lambda t: len(t.describable) >= 2)
    if table is None:
        return None
    target = pick_target(rng, table)
    condition = pick_condition(rng, table, avoid=target)
    if target is None or condition is None:
        return None
    question = rng.choice(
        [
            "What are the {T} of the {P} {W}?",
            "Show the {T} of {P} {W}.",
            "Find the {T} of all {P} {W}.",
            "List the {T} of the {P} {W}.",
        ]
    ).format(T=plural(target.phrase), P=table.plural, W=say_condition(rng, condition))
    sql = f"SELECT {qi(target.name)} FROM {qi(table.name)} WHERE {condition.sql()}"
    return Pair(question, sql, "filter", "easy")


def count_where(rng, db):
    table = pick_table(rng, db, lambda t: t.describable)
    if table is None:
        return None
    condition = pick_condition(rng, table)
    if condition is None:
        return None
    question = rng.choice(
        [
            "How many {P} are there {W}?",
            "Count the {P} {W}.",
            "What is the number of {P} {W}?",
            "Find the number of {P} {W}.",
        ]
    ).format(P=table.plural, W=say_condition(rng, condition))
    return Pair(
        question, f"SELECT count(*) FROM {qi(table.name)} WHERE {condition.sql()}", "count_where", "easy"
    )


def two_conditions(rng, db):
    table = pick_table(rng, db, lambda t: len(t.describable) >= 3)
    if table is None:
        return None
    target = pick_target(rng, table)
    first = pick_condition(rng, table, avoid=target)
    if target is None or first is None:
        return None
    second = pick_condition(rng, table, avoid=first.column)
    if second is None or second.column is target:
        return None
    join = rng.choice(["and", "or"])
    question = rng.choice(["Show the {T} of {P} {A} {J} {B}.", "List the {T} of the {P} {A} {J} {B}."])
    question = question.format(T=plural(target.phrase), P=table.plural, A=first.whose, J=join, B=second.whose)
    sql = f"SELECT {qi(target.name)} FROM {qi(table.name)} WHERE {first.sql()} {join.upper()} {second.sql()}"
    return Pair(question, sql, "two_conditions", "medium")


AGGREGATES = [("average", "avg"), ("maximum", "max"), ("minimum", "min"), ("total", "sum")]
NOT_SUMMED = {"year", "age", "rank", "ranking", "rating"}  # a total of these means nothing


def _aggregate_for(rng: random.Random, column: ColumnProfile) -> tuple[str, str]:
    """(word, function) of an aggregate that makes sense for the column."""
    summable = not NOT_SUMMED & set(column.phrase.split())
    return rng.choice(AGGREGATES if summable else AGGREGATES[:3])


def aggregate(rng, db):
    table = pick_table(rng, db, lambda t: t.of_kind("number"))
    if table is None:
        return None
    column = rng.choice(table.of_kind("number"))
    c, t = qi(column.name), qi(table.name)
    if rng.random() < 0.2:
        question = rng.choice(
            [
                "What are the maximum and minimum {C} of all {P}?",
                "Show the highest and lowest {C} of the {P}.",
            ]
        ).format(C=column.phrase, P=table.plural)
        return Pair(question, f"SELECT max({c}), min({c}) FROM {t}", "aggregate", "medium")
    word, function = _aggregate_for(rng, column)
    condition = pick_condition(rng, table, avoid=column) if rng.random() < 0.35 else None
    if condition is None:
        question = rng.choice(
            ["What is the {A} {C} of all {P}?", "Find the {A} {C} of the {P}.", "Show the {A} {C} among {P}."]
        ).format(A=word, C=column.phrase, P=table.plural)
        return Pair(question, f"SELECT {function}({c}) FROM {t}", "aggregate", "easy")
    question = rng.choice(["What is the {A} {C} of {P} {W}?", "Find the {A} {C} of the {P} {W}."]).format(
        A=word, C=column.phrase, P=table.plural, W=say_condition(rng, condition)
    )
    return Pair(question, f"SELECT {function}({c}) FROM {t} WHERE {condition.sql()}", "aggregate", "medium")


def group_by(rng, db):
    table = pick_table(rng, db, lambda t: t.of_kind("category"))
    if table is None:
        return None
    group = rng.choice(table.of_kind("category"))
    g, t = qi(group.name), qi(table.name)
    numbers = table.of_kind("number")
    if numbers and rng.random() < 0.4:
        column = rng.choice(numbers)
        word, function = _aggregate_for(rng, column)
        question = rng.choice(
            [
                "What is the {A} {C} of the {P} for each {G}?",
                "Show each {G} and the {A} {C} of its {P}.",
                "For each {G}, find the {A} {C} of {P}.",
            ]
        ).format(A=word, C=column.phrase, P=table.plural, G=group.phrase)
        sql = f"SELECT {g}, {function}({qi(column.name)}) FROM {t} GROUP BY {g}"
        return Pair(question, sql, "group_aggregate", "medium")
    question = rng.choice(
        [
            "How many {P} are there for each {G}?",
            "Show each {G} and the number of {P} with it.",
            "For each {G}, count the {P}.",
            "Count the {P} in each {G}.",
        ]
    ).format(P=table.plural, G=group.phrase)
    return Pair(question, f"SELECT {g}, count(*) FROM {t} GROUP BY {g}", "group_count", "medium")


def group_having(rng, db):
    table = pick_table(rng, db, lambda t: t.of_kind("category") and t.rows >= 4)
    if table is None:
        return None
    group = rng.choice(table.of_kind("category"))
    g, t = qi(group.name), qi(table.name)
    k = rng.choice([1, 2, 2, 3, 3, 5, 10])
    if rng.random() < 0.5:
        words, op = "more than", ">"
    else:
        words, op = "at least", ">="
    question = rng.choice(
        ["Which {G} values have {O} {K} {P}?", "List the {G} that have {O} {K} {P}."]
    ).format(G=group.phrase, O=words, K=k, P=table.plural)
    return Pair(
        question, f"SELECT {g} FROM {t} GROUP BY {g} HAVING count(*) {op} {k}", "group_having", "hard"
    )


def most_common(rng, db):
    table = pick_table(rng, db, lambda t: t.of_kind("category"))
    if table is None:
        return None
    group = rng.choice(table.of_kind("category"))
    most = rng.random() < 0.75
    question = rng.choice(
        ["Which {G} has the {M} {P}?", "What is the {C} {G} among the {P}?", "Find the {G} with the {M} {P}."]
    ).format(
        G=group.phrase,
        P=table.plural,
        M="most" if most else "fewest",
        C="most common" if most else "least common",
    )
    g = qi(group.name)
    order = "DESC" if most else "ASC"
    sql = f"SELECT {g} FROM {qi(table.name)} GROUP BY {g} ORDER BY count(*) {order} LIMIT 1"
    return Pair(question, sql, "most_common", "medium")


def superlative(rng, db):
    picked = pick_measure(rng, db, ("number", "date"))
    if picked is None:
        return None
    table, column, target = picked
    high = rng.random() < 0.6
    word = rng.choice((HIGHEST if high else LOWEST)[column.kind])
    k = rng.choice([1, 1, 1, 3, 5])
    if k == 1:
        question = rng.choice(
            [
                "What is the {T} of the {S} with the {W} {C}?",
                "Which {S} has the {W} {C}? Give its {T}.",
                "Find the {T} of the {S} whose {C} is the {W}.",
            ]
        )
    else:
        question = rng.choice(
            ["List the {T} of the {K} {P} with the {W} {C}.", "Show the {T} of the top {K} {P} by {W} {C}."]
        )
    shown = target.phrase if k == 1 else plural(target.phrase)
    question = question.format(T=shown, S=table.singular, P=table.plural, W=word, C=column.phrase, K=k)
    order = "DESC" if high else "ASC"
    sql = f"SELECT {qi(target.name)} FROM {qi(table.name)} ORDER BY {qi(column.name)} {order} LIMIT {k}"
    return Pair(question, sql, "superlative", "medium")


def order_by(rng, db):
    picked = pick_measure(rng, db, ("number", "date"))
    if picked is None:
        return None
    table, column, target = picked
    if rng.random() < 0.5:
        words, order = (
            rng.choice(["in descending order of {C}", "sorted by {C} from highest to lowest"]),
            " DESC",
        )
    else:
        words, order = rng.choice(["in ascending order of {C}", "sorted by {C}", "ordered by {C}"]), ""
    question = rng.choice(["List the {T} of all {P} {O}.", "Show the {T} of the {P} {O}."])
    question = question.format(T=plural(target.phrase), P=table.plural, O=words.format(C=column.phrase))
    sql = f"SELECT {qi(target.name)} FROM {qi(table.name)} ORDER BY {qi(column.name)}{order}"
    return Pair(question, sql, "order_by", "medium")


def above_average(rng, db):
    picked = pick_measure(rng, db, ("number",))
    if picked is None:
        return None
    table, column, target = picked
    above = rng.random() < 0.6
    question = rng.choice(
        [
            "List the {T} of {P} whose {C} is {D} the average.",
            "Which {P} have a {C} {D} the average {C}? Give their {T}.",
        ]
    ).format(T=plural(target.phrase), P=table.plural, C=column.phrase, D="above" if above else "below")
    c, t = qi(column.name), qi(table.name)
    sql = f"SELECT {qi(target.name)} FROM {t} WHERE {c} {'>' if above else '<'} (SELECT avg({c}) FROM {t})"
    return Pair(question, sql, "nested_average", "hard")
