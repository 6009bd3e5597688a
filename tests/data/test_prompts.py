from sqltune.args import PromptArguments
from sqltune.data.example import Example
from sqltune.data.prompts import build_prompt, dbgpt_schema, fit_prompt, tables_in_sql
from sqltune.data.schema import Schema

ENTRY = {
    "db_id": "shop",
    "table_names_original": ["customer", "orders", "order_item", "warehouse"],
    "table_names": ["customer", "orders", "order item", "warehouse"],
    "column_names_original": [
        [-1, "*"],
        [0, "id"],
        [0, "name"],
        [1, "id"],
        [1, "customer_id"],
        [2, "order_id"],
        [2, "line"],
        [2, "product"],
        [3, "code"],
        [3, "city"],
    ],
    "column_names": [
        [-1, "*"],
        [0, "id"],
        [0, "name"],
        [1, "id"],
        [1, "customer id"],
        [2, "order id"],
        [2, "line"],
        [2, "product"],
        [3, "code"],
        [3, "city"],
    ],
    "column_types": [
        "text",
        "number",
        "text",
        "number",
        "number",
        "number",
        "number",
        "text",
        "text",
        "text",
    ],
    "primary_keys": [1, 3, [5, 6]],
    "foreign_keys": [[4, 1], [5, 3]],
}


def schema():
    return Schema.from_spider(ENTRY)


def test_dbgpt_composite_key_and_foreign_keys():
    text = dbgpt_schema(schema(), PromptArguments())
    assert text.startswith("shop contains tables such as customer, orders, order_item, warehouse. ")
    assert (
        "Table order_item has columns such as order_id, line, product. The combination of (order_id, line) are the primary key.\n"
        in text
    )
    assert (
        "Table warehouse has columns such as code, city. The customer_id of orders is the foreign key of id of customer.\n"
        in text
    )
    assert text.endswith("The order_id of order_item is the foreign key of id of orders.\n")


def test_history_and_evidence_are_rendered():
    example = Example(
        "1",
        "shop",
        "And their names?",
        "SELECT name FROM customer",
        evidence="name is text",
        history=[("How many customers?", "SELECT count(*) FROM customer")],
    )
    prompt = build_prompt(example, schema(), PromptArguments())
    assert prompt.history == [
        ("###Input:\nHow many customers?\n\n###Response:", "SELECT count(*) FROM customer")
    ]
    assert prompt.input == "###Input:\nAnd their names?\nEvidence: name is text\n\n###Response:"


def test_ddl_renders_keys_and_quotes_odd_names():
    entry = dict(
        ENTRY,
        column_names_original=[[-1, "*"], [0, "id"], [0, "Home Town"]] + ENTRY["column_names_original"][3:],
    )
    prompt = build_prompt(
        Example("1", "shop", "q", "s"), Schema.from_spider(entry), PromptArguments(prompt_format="ddl")
    )
    assert '  "Home Town" text,' in prompt.instruction
    assert "  PRIMARY KEY (order_id, line)," in prompt.instruction
    assert "FOREIGN KEY (customer_id) REFERENCES customer(id)" in prompt.instruction


def test_compact_one_line_per_table_with_keys_types_and_values():
    entry = dict(
        ENTRY,
        column_names_original=[[-1, "*"], [0, "id"], [0, "Home Town"]] + ENTRY["column_names_original"][3:],
    )
    example = Example("1", "shop", "q", "s")
    prompt = build_prompt(example, Schema.from_spider(entry), PromptArguments(prompt_format="compact"))
    lines = prompt.instruction.splitlines()
    assert lines[0].startswith("You are a SQLite expert.")
    assert 'customer: id number (PK), "Home Town" text' in lines
    assert "orders: id number (PK), customer_id number (-> customer.id)" in lines
    assert "order_item: order_id number (PK) (-> orders.id), line number (PK), product text" in lines
    assert prompt.input == "-- Question: q\nSQL:"
    bare = PromptArguments(prompt_format="compact", include_types=False, include_foreign_keys=False)
    assert (
        "order_item: order_id (PK), line (PK), product" in build_prompt(example, schema(), bare).instruction
    )
    valued = schema()
    valued.tables[3].columns[1].values = ["Oslo", "Lima"]
    shown = build_prompt(example, valued, PromptArguments(prompt_format="compact", sample_values=1))
    assert "city text (e.g. 'Oslo')" in shown.instruction
    ddl = build_prompt(example, schema(), PromptArguments(prompt_format="ddl"))
    assert len(prompt.instruction) < 0.75 * len(ddl.instruction)


def test_fit_prompt_drops_least_related_tables_but_never_gold_tables():
    example = Example("1", "shop", "Which city is each warehouse code in?", "SELECT city FROM warehouse")
    args = PromptArguments()
    full = build_prompt(example, schema(), args)
    budget = len(full.text) - 1
    prompt, shortening = fit_prompt(
        example, schema(), args, lambda p: len(p.text) <= budget, protected={"warehouse"}
    )
    assert shortening.fits and shortening.tables_dropped == 1
    assert "warehouse" in prompt.instruction and "Table order_item" not in prompt.instruction
    # a budget nothing fits: every unprotected table goes, the protected one stays
    prompt, shortening = fit_prompt(example, schema(), args, lambda p: False, protected={"warehouse"})
    assert not shortening.fits and shortening.tables_dropped == 3
    assert "Table warehouse" in prompt.instruction and prompt.input.endswith("###Response:")


def test_tables_in_sql():
    assert tables_in_sql("SELECT T1.name FROM customer AS T1 JOIN orders AS T2", schema()) == {
        "customer",
        "orders",
    }
    assert tables_in_sql('SELECT * FROM "Order_Item"', schema()) == {"order_item"}
