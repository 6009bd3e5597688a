"""What the model did, judged, turned back into records that `sqltune data` reads like any dataset.

* `verdicts`: the web UI's "correct" / "wrong" buttons, one jsonl line per answer judged.
"""
