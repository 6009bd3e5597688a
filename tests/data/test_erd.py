"""`sqltune data erd`: ER diagrams of the demo databases and multimodal records over them."""

import json

from sqltune.cli import main as cli
from sqltune.data.erd import INSTRUCTION
from sqltune.train.data import read_samples


def build(out, *extra: str) -> int:
    return cli(
        ["data", "erd", "source=demo", "split=dev", f"output_dir={out}", "dataset_name=demo_erd", *extra]
    )


def test_erd_writes_one_diagram_per_database_and_llama_factory_records(tmp_path):
    from PIL import Image

    out = tmp_path / "data"
    assert build(out) == 0
    images = sorted(p.name for p in (out / "images").iterdir())
    assert images == ["flights.png", "hospital.png"]  # the dev split's databases
    for name in images:
        with Image.open(out / "images" / name) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200
            darkest, lightest = image.convert("L").getextrema()
            assert darkest < 64 and lightest == 255  # black lines and text on white
    entry = json.loads((out / "dataset_info.json").read_text())["demo_erd"]
    assert entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "conversations", "images": "images"}
    assert entry["erd"] == {"source": "demo", "split": "dev", "count": 100, "images": 2}
    rows = [json.loads(line) for line in (out / "demo_erd.jsonl").read_text().splitlines()]
    assert len(rows) == 100
    first = rows[0]
    assert first["images"] == [f"images/{first['db_id']}.png"]
    human, gpt = first["conversations"]
    assert human["from"] == "human" and human["value"].startswith("<image>" + INSTRUCTION)
    assert gpt["from"] == "gpt" and gpt["value"].upper().startswith("SELECT")
    samples = read_samples(out, "demo_erd")  # as training reads it: placeholders and files checked
    assert len(samples) == 100 and samples[0].images == [
        str(out / "images" / first["images"][0].split("/")[1])
    ]
    assert samples[0].db_id == first["db_id"]


def test_erd_is_deterministic(tmp_path):
    assert build(tmp_path / "a", "limit=3") == 0
    assert build(tmp_path / "b", "limit=3") == 0
    assert not (tmp_path / "a" / "images" / "flights.png").exists()  # only the databases asked about
    for name in ("demo_erd.jsonl", "images/hospital.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_erd_refuses_a_bad_dataset_name(tmp_path, capsys):
    assert cli(["data", "erd", "source=demo", f"output_dir={tmp_path}", "dataset_name=../x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset_name" in err[0]
