"""Spider exact set match and the per-clause partial scores, by the official definitions.

Before comparing, both queries are normalised the official way (`normalize`): condition values are
dropped (so `WHERE age > 30` matches `WHERE age > 40`), DISTINCT flags are dropped, and a column
that takes part in a foreign key is replaced by the first column of its key group, so `T2.singer_id`
and `T1.singer_id` compare equal across a join. The original applies these steps unevenly and that
is reproduced: subqueries in FROM keep their values and columns untouched, subqueries in
WHERE/HAVING lose their values but keep their columns and DISTINCT flags, and set operations are
mapped with the outer query's tables.

Each clause then gets a score (`partial_scores`): a clause counts as right only when both queries
have the same number of items and all of them match (`get_scores` below). The exact match is the
conjunction of all clause scores plus an equal multiset of FROM tables.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from sqltune.evaluate.spider.parse import WHERE_OPS, ColUnit, CondUnit, SpiderSchema, Sql, ValUnit

CLAUSES = (
    "select",
    "select(no AGG)",
    "where",
    "where(no OP)",
    "group(no Having)",
    "group",
    "order",
    "and/or",
    "IUEN",
    "keywords",
)
EMPTY_SQL = Sql()  # what a prediction that does not parse is compared as


class ClauseScore(NamedTuple):
    acc: int
    rec: int
    f1: int
    label_total: int
    pred_total: int


# --- foreign keys -------------------------------------------------------------------------------------
def foreign_key_map(entry: dict) -> dict[str, str]:
    """Column id -> id of the lowest-numbered column of its foreign-key group (tables.json entry).

    Groups are built pair by pair and a pair joins the first group that holds either column; two
    existing groups are never merged, exactly as in the original.
    """
    tables = entry["table_names_original"]
    ids = [
        f"__{tables[t].lower()}.{name.lower()}__" if t >= 0 else "__all__"
        for t, name in entry["column_names_original"]
    ]
    groups: list[set[int]] = []
    for first, second in entry.get("foreign_keys", []):
        group = next((g for g in groups if first in g or second in g), None)
        if group is None:
            group = set()
            groups.append(group)
        group.update((first, second))
    mapping = {}
    for group in groups:
        root = min(group)
        for index in group:
            mapping[ids[index]] = ids[root]
    return mapping


# --- normalisation --------------------------------------------------------------------------------------
def _drop_values(sql: Sql) -> Sql:
    def condition(cond: list) -> list:
        out = []
        for position, item in enumerate(cond):
            if position % 2 == 0 and isinstance(item, CondUnit):
                item = item._replace(
                    val1=_drop_values(item.val1) if isinstance(item.val1, Sql) else None,
                    val2=_drop_values(item.val2) if isinstance(item.val2, Sql) else None,
                )
            out.append(item)
        return out

    return replace(
        sql,
        from_conds=condition(sql.from_conds),
        where=condition(sql.where),
        having=condition(sql.having),
        intersect=sql.intersect and _drop_values(sql.intersect),
        except_=sql.except_ and _drop_values(sql.except_),
        union=sql.union and _drop_values(sql.union),
    )


def _map_columns(sql: Sql, mappable: set[str], fk_map: dict[str, str]) -> Sql:
    def col(unit: ColUnit | None) -> ColUnit | None:
        if unit is None:
            return None
        column = fk_map[unit.column] if unit.column in fk_map and unit.column in mappable else unit.column
        return ColUnit(unit.agg, column, None)

    def val(unit: ValUnit) -> ValUnit:
        return ValUnit(unit.op, col(unit.col1), col(unit.col2))

    def condition(cond: list) -> list:
        return [
            item._replace(val_unit=val(item.val_unit))
            if position % 2 == 0 and isinstance(item, CondUnit)
            else item
            for position, item in enumerate(cond)
        ]

    return replace(
        sql,
        select=(None, [(agg, val(unit)) for agg, unit in sql.select[1]]),
        from_conds=condition(sql.from_conds),
        where=condition(sql.where),
        group_by=[col(unit) for unit in sql.group_by],
        having=condition(sql.having),
        order_by=sql.order_by and (sql.order_by[0], [val(unit) for unit in sql.order_by[1]]),
        intersect=sql.intersect and _map_columns(sql.intersect, mappable, fk_map),
        except_=sql.except_ and _map_columns(sql.except_, mappable, fk_map),
        union=sql.union and _map_columns(sql.union, mappable, fk_map),
    )


def normalize(sql: Sql, schema: SpiderSchema, fk_map: dict[str, str]) -> Sql:
    """The official `rebuild_sql_val` then `rebuild_sql_col`, without changing `sql` in place."""
    tables = [unit for kind, unit in sql.table_units if kind == "table_unit"]
    return _map_columns(_drop_values(sql), schema.column_ids_of(tables), fk_map)


# --- clause scores --------------------------------------------------------------------------------------
def get_scores(count: int, pred_total: int, label_total: int) -> tuple[int, int, int]:
    """All or nothing: (1, 1, 1) only when the totals agree and every predicted item matched."""
    if pred_total != label_total or count != pred_total:
        return 0, 0, 0
    return 1, 1, 1


def _matches(pred_items: list, gold_items: list) -> int:
    """How many predicted items find a still unmatched equal gold item (multiset intersection)."""
    remaining = list(gold_items)
    count = 0
    for item in pred_items:
        if item in remaining:
            remaining.remove(item)
            count += 1
    return count


def _distinct(items: list) -> list:
    """The distinct items, like a set but without hashing (items may hold nested queries)."""
    out: list = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def keywords(sql: Sql) -> set[str]:
    found = set()
    for name, present in (
        ("where", sql.where),
        ("group", sql.group_by),
        ("having", sql.having),
        ("limit", sql.limit is not None),
        ("except", sql.except_),
        ("union", sql.union),
        ("intersect", sql.intersect),
    ):
        if present:
            found.add(name)
    if sql.order_by:
        found.update((sql.order_by[0], "order"))
    conds = sql.from_conds[::2] + sql.where[::2] + sql.having[::2]
    if "or" in sql.from_conds[1::2] + sql.where[1::2] + sql.having[1::2]:
        found.add("or")
    # Indexed like the original, so a stray connector in a condition slot behaves the same.
    if any(c[0] for c in conds):
        found.add("not")
    if any(c[1] == WHERE_OPS.index("in") for c in conds):
        found.add("in")
    if any(c[1] == WHERE_OPS.index("like") for c in conds):
        found.add("like")
    return found


def _column_name(column_id: str) -> str:
    return column_id.split(".")[1] if "." in column_id else column_id


def _nested(pred: Sql | None, gold: Sql | None) -> tuple[int, int, int]:
    count = int(exact_match(pred, gold)[0]) if pred is not None and gold is not None else 0
    return int(gold is not None), int(pred is not None), count


def partial_scores(pred: Sql, gold: Sql) -> dict[str, ClauseScore]:
    """The ten official clause scores of a (normalised) prediction against a (normalised) gold."""
    raw: dict[str, tuple[int, int, int]] = {}  # clause -> (label_total, pred_total, count)
    pred_sel, gold_sel = pred.select[1], gold.select[1]
    raw["select"] = (len(gold_sel), len(pred_sel), _matches(pred_sel, gold_sel))
    raw["select(no AGG)"] = (
        len(gold_sel),
        len(pred_sel),
        _matches([u[1] for u in pred_sel], [u[1] for u in gold_sel]),
    )
    pred_where, gold_where = pred.where[::2], gold.where[::2]
    raw["where"] = (len(gold_where), len(pred_where), _matches(pred_where, gold_where))
    raw["where(no OP)"] = (
        len(gold_where),
        len(pred_where),
        _matches([c[2] for c in pred_where], [c[2] for c in gold_where]),
    )
    pred_group = [unit.column for unit in pred.group_by]
    gold_group = [unit.column for unit in gold.group_by]
    raw["group(no Having)"] = (
        len(gold_group),
        len(pred_group),
        _matches([_column_name(c) for c in pred_group], [_column_name(c) for c in gold_group]),
    )
    having_ok = bool(pred_group) and bool(gold_group) and pred_group == gold_group
    raw["group"] = (
        int(bool(gold_group)),
        int(bool(pred_group)),
        int(having_ok and pred.having == gold.having),
    )
    same_limit = (pred.limit is None) == (gold.limit is None)
    order_ok = bool(gold.order_by) and pred.order_by == gold.order_by and same_limit
    raw["order"] = (int(bool(gold.order_by)), int(bool(pred.order_by)), int(order_ok))
    pred_ao, gold_ao = _distinct(pred.where[1::2]), _distinct(gold.where[1::2])
    # The original returns (len(pred), len(gold), 0) into (label_total, pred_total, count): swapped.
    raw["and/or"] = (1, 1, 1) if _same_set(pred_ao, gold_ao) else (len(pred_ao), len(gold_ao), 0)
    totals = [
        _nested(p, g) for p, g in zip(pred.set_operations(), gold.set_operations())
    ]  # intersect, except, union
    raw["IUEN"] = tuple(sum(parts) for parts in zip(*totals))  # type: ignore[assignment]
    pred_kw, gold_kw = keywords(pred), keywords(gold)
    raw["keywords"] = (len(gold_kw), len(pred_kw), len(pred_kw & gold_kw))
    scores = {}
    for clause in CLAUSES:
        label_total, pred_total, count = raw[clause]
        acc, rec, f1 = get_scores(count, pred_total, label_total)
        scores[clause] = ClauseScore(acc, rec, f1, label_total, pred_total)
    return scores


def _same_set(first: list, second: list) -> bool:
    return len(first) == len(second) and all(item in second for item in first)


def _table_key(unit: tuple) -> tuple[str, str]:
    # Two subqueries in FROM made the original crash while sorting; here they keep their order.
    return unit[0], unit[1] if isinstance(unit[1], str) else ""


def exact_match(pred: Sql, gold: Sql) -> tuple[bool, dict[str, ClauseScore]]:
    """(exact set match, clause scores) of two normalised queries."""
    scores = partial_scores(pred, gold)
    if any(score.f1 != 1 for score in scores.values()):
        return False, scores
    if gold.table_units:
        same = sorted(gold.table_units, key=_table_key) == sorted(pred.table_units, key=_table_key)
        return same, scores
    return True, scores
