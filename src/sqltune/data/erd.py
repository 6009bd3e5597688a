"""`sqltune data erd`: questions asked over a picture of the schema, for multimodal SFT.

    sqltune data erd source=demo output_dir=data dataset_name=demo_erd
    sqltune data erd source=spider data_dir=../shared/data/spider split=dev output_dir=data

Any source of `sqltune data` works: its databases' schemas are drawn as entity-relationship
diagrams (one PNG per database under `<output_dir>/images/`: each table a box listing its columns,
primary key columns marked `PK`, foreign key columns `FK`, and a line from every foreign key to the
table it references), and each question becomes a LLaMA-Factory multimodal sharegpt record: the
user turn is `<image>`, a short instruction and the question, the answer is the gold SQL, and
`images` names the database's diagram (dataset name: `dataset_name`, default
`<source>_<split>_erd`). The model has to read the schema from the picture instead
of the prompt text (`sqltune.train.multimodal` trains it). Drawing is deterministic (Agg backend,
fixed layout and size, no timestamp in the PNG), so the same source gives the same bytes.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from sqltune.args import SourceArguments
from sqltune.config import format_help, parse_args
from sqltune.data.example import Example
from sqltune.data.schema import Schema
from sqltune.errors import DataError
from sqltune.files import atomic_path, check_output_dir, plain_name, write_jsonl

GROUPS = (SourceArguments,)
INSTRUCTION = "The diagram shows the database schema. Write the SQLite query that answers the question.\n"
IMAGES = "images"
COLUMNS = {"messages": "conversations", "images": "images"}
LINE_HEIGHT = 0.28  # inches per text line in a table box
BOX_WIDTH = 2.6  # inches


def _layout(schema: Schema) -> tuple[dict[str, tuple[float, float, float]], float, float]:
    """Table name (lower case) -> (left, top, height) in inches, tables in a grid row by row; figure width, height."""
    per_row = max(1, math.ceil(math.sqrt(len(schema.tables))))
    rows = [schema.tables[i : i + per_row] for i in range(0, len(schema.tables), per_row)]
    boxes: dict[str, tuple[float, float, float]] = {}
    top = 0.3
    for row in rows:
        tallest = 0.0
        for col, table in enumerate(row):
            height = LINE_HEIGHT * (len(table.columns) + 1) + 0.1
            boxes[table.name.lower()] = (0.3 + col * (BOX_WIDTH + 0.9), top, height)
            tallest = max(tallest, height)
        top += tallest + 0.6
    return boxes, 0.3 + per_row * (BOX_WIDTH + 0.9), top - 0.3  # room on the right for bends


def draw_schema(schema: Schema, path: Path) -> None:
    """Write the schema's entity-relationship diagram as a PNG (module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Rectangle

    boxes, width, height = _layout(schema)
    fig = plt.figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # y grows downwards, like the layout
    ax.axis("off")
    foreign = {(fk.table.lower(), fk.column.lower()) for fk in schema.foreign_keys}

    def row_y(table: str, column: str) -> float:
        _, top, _ = boxes[table.lower()]
        names = [c.name.lower() for c in schema.table(table).columns]
        index = names.index(column.lower()) if column.lower() in names else -1
        return top + LINE_HEIGHT * (index + 1.5)

    for fk in schema.foreign_keys:
        if fk.table.lower() not in boxes or fk.ref_table.lower() not in boxes:
            continue
        (left, _, _), (ref_left, _, _) = boxes[fk.table.lower()], boxes[fk.ref_table.lower()]
        start_x = left + BOX_WIDTH if ref_left > left else left
        end_x = ref_left if ref_left > left else ref_left + BOX_WIDTH
        bend = 0.0  # a straight line between boxes side by side
        if ref_left == left:  # same grid column: leave and enter on the right side, bending outwards
            start_x = end_x = left + BOX_WIDTH
            bend = -0.5 if row_y(fk.table, fk.column) < row_y(fk.ref_table, fk.ref_column) else 0.5
        start, end = (start_x, row_y(fk.table, fk.column)), (end_x, row_y(fk.ref_table, fk.ref_column))
        ax.annotate(
            "",
            xy=end,
            xytext=start,
            zorder=0,  # under the boxes
            arrowprops={"arrowstyle": "-|>", "color": "#555555", "connectionstyle": f"arc3,rad={bend}"},
        )
    for table in schema.tables:
        left, top, box_height = boxes[table.name.lower()]
        keys = {name.lower() for key in table.primary_keys for name in key}
        ax.add_patch(Rectangle((left, top), BOX_WIDTH, box_height, facecolor="white", edgecolor="black"))
        ax.add_patch(Rectangle((left, top), BOX_WIDTH, LINE_HEIGHT, facecolor="#d9e2f3", edgecolor="black"))
        ax.text(left + 0.08, top + LINE_HEIGHT / 2, table.name, va="center", fontsize=9, weight="bold")
        for index, column in enumerate(table.columns):
            is_key = column.name.lower() in keys
            is_foreign = (table.name.lower(), column.name.lower()) in foreign
            marks = [mark for mark, on in (("PK", is_key), ("FK", is_foreign)) if on]
            y = top + LINE_HEIGHT * (index + 1.5)
            ax.text(left + 0.08, y, column.name, va="center", fontsize=8)
            ax.text(
                left + BOX_WIDTH - 0.08,
                y,
                " ".join(marks),
                va="center",
                ha="right",
                fontsize=7,
                weight="bold",
            )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def to_record(example: Example, image: str) -> dict:
    """A multimodal sharegpt record: the diagram and the question in, the gold SQL out."""
    turns = [*example.history, (example.question, example.sql)]
    messages = []
    for index, (question, sql) in enumerate(turns):
        last = index == len(turns) - 1
        text = f"{question}\nHint: {example.evidence}" if last and example.evidence else question
        if index == 0:
            text = f"<image>{INSTRUCTION}{text}"
        messages += [{"from": "human", "value": text}, {"from": "gpt", "value": sql}]
    return {"conversations": messages, "images": [image], "db_id": example.db_id}


def run_erd(args: SourceArguments) -> dict:
    """Draw the diagrams, write the records, register the dataset; return the summary."""
    from sqltune.data.records import register
    from sqltune.data.sources import read_source

    began = time.perf_counter()
    name = plain_name(args.dataset_name or f"{args.source}_{args.split}_erd", "dataset_name")
    output_dir = check_output_dir(args.output_dir)
    data = read_source(args)
    if not data.examples:
        raise DataError(f"source={args.source}: no examples to draw diagrams for; nothing written")
    used = sorted({example.db_id for example in data.examples})
    for db_id in used:
        draw_schema(data.schemas[db_id], output_dir / IMAGES / f"{db_id}.png")
    records = [to_record(e, f"{IMAGES}/{e.db_id}.png") for e in data.examples]
    path = output_dir / f"{name}.jsonl"
    write_jsonl(path, records)
    entry = {
        "file_name": path.name,
        "formatting": "sharegpt",
        "columns": dict(COLUMNS),
        "db_dir": str(Path(data.db_dir).resolve()) if data.db_dir else None,
        "erd": {"source": args.source, "split": args.split, "count": len(records), "images": len(used)},
    }
    register(output_dir, name, entry)
    summary = {
        "dataset": name,
        "file": str(path),
        "records": len(records),
        "diagrams": len(used),
        "images_dir": str(output_dir / IMAGES),
        "seconds": round(time.perf_counter() - began, 2),
    }
    print_summary(summary)
    return summary


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sqltune data erd: {summary['dataset']}", show_header=False)
    table.add_row("records file", summary["file"])
    table.add_row("records written", str(summary["records"]))
    table.add_row("diagrams", f"{summary['diagrams']} in {summary['images_dir']}")
    table.add_row("time", f"{summary['seconds']} s")
    Console(file=sys.stderr).print(table)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help(GROUPS, "data erd"))
        return 0
    (args,) = parse_args(GROUPS, argv)
    run_erd(args)
    return 0
