"""Spider hardness (easy, medium, hard, extra) of a gold query, by the official counting rules.

The level is decided by three counts over the parsed gold query:
* component 1: WHERE, GROUP BY, ORDER BY, LIMIT, each JOINed table, each OR and each LIKE;
* component 2: nested queries in conditions plus INTERSECT/UNION/EXCEPT;
* others: more than one aggregation, more than one selected column, more than one WHERE
  condition, more than one GROUP BY column.

The official "aggregation" count has two quirks reproduced here: a WHERE or HAVING condition
written with NOT counts as an aggregation, and so does every AND/OR joining HAVING conditions
(the original tests `item[0] != 0` on condition tuples and on the connector strings alike).
"""

from __future__ import annotations

from sqltune.evaluate.spider.parse import WHERE_OPS, CondUnit, Sql

LEVELS = ("easy", "medium", "hard", "extra")
_LIKE = WHERE_OPS.index("like")


def _counts_as_aggregation(item) -> bool:
    """The original `has_agg`: the first field is not 0 (agg id, NOT flag, or a connector's letter)."""
    return item[0] != 0


def _conditions(sql: Sql) -> list:
    return sql.from_conds[::2] + sql.where[::2] + sql.having[::2]


def _connectors(sql: Sql) -> list:
    return sql.from_conds[1::2] + sql.where[1::2] + sql.having[1::2]


def nested_queries(sql: Sql) -> list[Sql]:
    """Subqueries used as condition values, then intersect, except, union (the official order)."""
    nested = []
    for cond in _conditions(sql):
        if isinstance(cond, CondUnit):
            nested += [value for value in (cond.val1, cond.val2) if isinstance(value, Sql)]
    return nested + [s for s in sql.set_operations() if s is not None]


def component1(sql: Sql) -> int:
    count = sum(bool(part) for part in (sql.where, sql.group_by, sql.order_by))
    count += sql.limit is not None
    count += max(len(sql.table_units) - 1, 0)
    count += sum(token == "or" for token in _connectors(sql))
    count += sum(isinstance(c, CondUnit) and c.op == _LIKE for c in _conditions(sql))
    return count


def others(sql: Sql) -> int:
    aggregations = sum(_counts_as_aggregation(unit) for unit in sql.select[1])
    aggregations += sum(_counts_as_aggregation(cond) for cond in sql.where[::2])
    aggregations += sum(_counts_as_aggregation(unit) for unit in sql.group_by)
    if sql.order_by:
        order_cols = [vu.col1 for vu in sql.order_by[1] if vu.col1] + [
            vu.col2 for vu in sql.order_by[1] if vu.col2
        ]
        aggregations += sum(_counts_as_aggregation(unit) for unit in order_cols)
    aggregations += sum(_counts_as_aggregation(item) for item in sql.having)
    return (aggregations > 1) + (len(sql.select[1]) > 1) + (len(sql.where) > 1) + (len(sql.group_by) > 1)


def hardness(sql: Sql) -> str:
    comp1, comp2, other = component1(sql), len(nested_queries(sql)), others(sql)
    if comp1 <= 1 and other == 0 and comp2 == 0:
        return "easy"
    if (other <= 2 and comp1 <= 1 and comp2 == 0) or (comp1 <= 2 and other < 2 and comp2 == 0):
        return "medium"
    if (
        (other > 2 and comp1 <= 2 and comp2 == 0)
        or (2 < comp1 <= 3 and other <= 2 and comp2 == 0)
        or (comp1 <= 1 and other == 0 and comp2 <= 1)
    ):
        return "hard"
    return "extra"
