"""`sqltune webui`: the steps behind a browser page (Gradio), one module per tab.

* `ask`: ask a database, see and edit the SQL, its rows and a chart, mark answers correct or wrong;
* `train`: build a `sqltune train` command from a recipe or a form, run it, follow it live;
* `evaluate`: predict and score a registered dataset with a run, browse the wrong answers;
* `export`: merge a run into a plain model directory.

`app` puts the tabs together and `command` is the CLI entry. Gradio is imported only in this package
(`pip install 'sqltune[webui]'`), and only when a page is built.
"""
