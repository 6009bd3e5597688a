"""What the model did, judged, turned back into records that `sqltune data` reads like any dataset.

* `verdicts`: the web UI's "correct" / "wrong" buttons, one jsonl line per answer judged.
* `agent_traces`: `sqltune data agent`, tool-call conversations (direct and repair) whose
  observations are real output of the question's database.
"""
