"""Question/SQL templates that follow foreign keys: joins (with filters, GROUP BY, HAVING and
superlatives over the joined rows) and nested queries (IN / NOT IN a subquery).

A foreign key `child.column -> parent.key` reads as "each child has one parent": questions ask
about children by a property of their parent ("the books whose author country is Spain"), about
parents by their children ("the authors with at least 3 books"), or for parents without children.
In the SQL the child is `T1` and the parent `T2`, as in Spider.
"""

from __future__ import annotations

from collections.abc import Callable

from sqltune.data.prompts import quote_identifier as qi
from sqltune.data.synth_profile import DatabaseProfile, Link, plural
from sqltune.data.synth_templates import Pair, pick_condition, pick_target, say_condition


def _join(link: Link) -> str:
    return (
        f"FROM {qi(link.child.name)} AS T1 JOIN {qi(link.parent.name)} AS T2 "
        f"ON T1.{qi(link.column)} = T2.{qi(link.key)}"
    )


def _links(db: DatabaseProfile, need: Callable[[Link], bool]) -> list[Link]:
    return [link for link in db.links if need(link)]


def join_columns(rng, db):
    links = _links(db, lambda k: k.child.describable and k.parent.label)
    if not links:
        return None
    link = rng.choice(links)
    child, parent = pick_target(rng, link.child), link.parent.label
    question = rng.choice(
        [
            "Show the {A} of each {CS} and the {B} of its {PS}.",
            "For every {CS}, list its {A} and the {B} of the {PS}.",
            "List the {AP} of all {CP} together with the {B} of their {PS}.",
        ]
    ).format(
        A=child.phrase,
        AP=plural(child.phrase),
        B=parent.phrase,
        CS=link.child.singular,
        CP=link.child.plural,
        PS=link.parent.singular,
    )
    return Pair(question, f"SELECT T1.{qi(child.name)}, T2.{qi(parent.name)} {_join(link)}", "join", "medium")


def join_filter(rng, db):
    links = _links(db, lambda k: k.child.describable and k.parent.describable)
    if not links:
        return None
    link = rng.choice(links)
    if rng.random() < 0.6:  # a condition on the parent, a question about the children
        condition, target = pick_condition(rng, link.parent), pick_target(rng, link.child)
        if condition is None or target is None:
            return None
        question = rng.choice(
            [
                "What are the {T} of the {CP} whose {PS} {C} is {V}?",
                "List the {T} of {CP} of the {PS} {W}.",
                "Show the {T} of all {CP} that belong to a {PS} {W}.",
            ]
        ).format(
            T=plural(target.phrase),
            CP=link.child.plural,
            PS=link.parent.singular,
            C=condition.column.phrase,
            V=condition.words,
            W=say_condition(rng, condition),
        )
        sql = f"SELECT T1.{qi(target.name)} {_join(link)} WHERE {condition.sql('T2')}"
    else:  # a condition on the children, a question about the parents
        condition, target = pick_condition(rng, link.child), pick_target(rng, link.parent)
        if condition is None or target is None:
            return None
        question = rng.choice(
            [
                "Which {PP} have {CP} {W}? List their {T}.",
                "Show the distinct {T} of {PP} with at least one {CS} {W}.",
            ]
        ).format(
            T=plural(target.phrase),
            PP=link.parent.plural,
            CP=link.child.plural,
            CS=link.child.singular,
            W=say_condition(rng, condition),
        )
        sql = f"SELECT DISTINCT T2.{qi(target.name)} {_join(link)} WHERE {condition.sql('T1')}"
    return Pair(question, sql, "join_filter", "medium")


def join_group(rng, db):
    links = _links(db, lambda k: k.parent.label is not None)
    if not links:
        return None
    link = rng.choice(links)
    label = link.parent.label
    fk, shown = f"T1.{qi(link.column)}", f"T2.{qi(label.name)}"
    words = dict(
        L=label.phrase,
        LP=plural(label.phrase),
        CP=link.child.plural,
        PS=link.parent.singular,
        PP=link.parent.plural,
    )
    shape = rng.random()
    if shape < 0.4:
        question = rng.choice(
            [
                "How many {CP} does each {PS} have? Show the {L} and the count.",
                "For each {PS}, show its {L} and the number of {CP}.",
                "Count the {CP} of every {PS}, with its {L}.",
            ]
        ).format(**words)
        return Pair(question, f"SELECT {shown}, count(*) {_join(link)} GROUP BY {fk}", "join_group", "medium")
    if shape < 0.75:
        most = rng.random() < 0.75
        question = rng.choice(
            ["Which {PS} has the {M} {CP}? Give its {L}.", "What is the {L} of the {PS} with the {M} {CP}?"]
        ).format(M="most" if most else "fewest", **words)
        order = "DESC" if most else "ASC"
        sql = f"SELECT {shown} {_join(link)} GROUP BY {fk} ORDER BY count(*) {order} LIMIT 1"
        return Pair(question, sql, "join_most", "extra")
    k = rng.choice([2, 2, 3])
    question = rng.choice(
        [
            "Which {PP} have at least {K} {CP}? List their {LP}.",
            "Show the {LP} of {PP} with at least {K} {CP}.",
        ]
    ).format(K=k, **words)
    sql = f"SELECT {shown} {_join(link)} GROUP BY {fk} HAVING count(*) >= {k}"
    return Pair(question, sql, "join_having", "hard")


def nested(rng, db):
    links = _links(db, lambda k: k.parent.label is not None)
    if not links:
        return None
    link = rng.choice(links)
    label, parent, child = link.parent.label, link.parent, link.child
    words = dict(PP=parent.plural, CP=child.plural, CS=child.singular, L=plural(label.phrase))
    inner = f"SELECT {qi(link.column)} FROM {qi(child.name)}"
    head = f"SELECT {qi(label.name)} FROM {qi(parent.name)} WHERE {qi(link.key)}"
    if rng.random() < 0.5:
        question = rng.choice(
            ["Which {PP} have no {CP}? List their {L}.", "Show the {L} of {PP} without any {CS}."]
        )
        return Pair(question.format(**words), f"{head} NOT IN ({inner})", "nested_not_in", "hard")
    condition = pick_condition(rng, child)
    if condition is None:
        return None
    question = rng.choice(
        ["Show the {L} of {PP} that have a {CS} {W}.", "What are the {L} of the {PP} with some {CS} {W}?"]
    ).format(W=condition.whose, **words)
    return Pair(question, f"{head} IN ({inner} WHERE {condition.sql()})", "nested_in", "hard")
