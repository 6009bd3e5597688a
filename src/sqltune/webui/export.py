"""The Export tab: merge a run into a plain transformers model directory, as `sqltune export` does
(`sqltune.export.run_export`), and list what was written."""

from __future__ import annotations

from pathlib import Path

from sqltune.errors import SqltuneError


def default_export_dir(run_dir: str | None) -> str:
    return f"exports/{Path(run_dir).name}" if run_dir else ""


def size_text(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def export_files(folder: Path) -> list[list[str]]:
    """Name and size of every file written, biggest first."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    files.sort(key=lambda path: -path.stat().st_size)
    return [[str(path.relative_to(folder)), size_text(path.stat().st_size)] for path in files]


def build_tab(workspace, tab) -> None:
    import gradio as gr
    import pandas as pd

    from sqltune.args import TORCH_DTYPES, ExportArguments
    from sqltune.export import run_export

    headers = ["file", "size"]

    def export(run_dir, export_dir, export_dtype, export_size, overwrite):
        yield "Merging and saving...", pd.DataFrame([], columns=headers)
        try:
            args = ExportArguments(
                run_dir=(run_dir or "").strip() or None,
                export_dir=(export_dir or "").strip() or None,
                export_size=str(export_size or "5").strip(),
                export_dtype=export_dtype,
                overwrite=bool(overwrite),
            )
            out = run_export(args)
        except SqltuneError as err:
            yield f"Not exported: {err}", pd.DataFrame([], columns=headers)
            return
        files = export_files(out)
        message = (
            f"Exported to **{out}** ({len(files)} files). Load it with "
            f"`sqltune predict run_dir={out}` or `AutoModelForCausalLM.from_pretrained('{out}')`."
        )
        yield message, pd.DataFrame(files, columns=headers)

    runs = workspace.runs()
    with gr.Row():
        run_dir = gr.Dropdown(
            runs,
            value=runs[0] if runs else None,
            label="Run directory",
            allow_custom_value=True,
            elem_id="export-run",
            scale=3,
        )
        export_dir = gr.Textbox(
            default_export_dir(runs[0] if runs else None),
            label="Export directory",
            elem_id="export-dir",
            scale=3,
        )
    with gr.Row():
        export_dtype = gr.Dropdown(list(TORCH_DTYPES), value="auto", label="dtype", elem_id="export-dtype")
        export_size = gr.Textbox("5", label="Largest shard (GB, or e.g. 500MB)", elem_id="export-size")
        overwrite = gr.Checkbox(
            False, label="Replace an existing export directory", elem_id="export-overwrite"
        )
    export_button = gr.Button("Export", variant="primary", elem_id="export-button")
    status = gr.Markdown(elem_id="export-status", elem_classes="sqltune-status")
    files = gr.Dataframe(headers=headers, label="Written", interactive=False, elem_id="export-files")

    export_button.click(export, [run_dir, export_dir, export_dtype, export_size, overwrite], [status, files])
    run_dir.change(default_export_dir, run_dir, export_dir, show_progress="hidden")
    tab.select(lambda: gr.Dropdown(choices=workspace.runs()), None, run_dir, show_progress="hidden")
