"""Evaluation: Spider exact match and execution accuracy (official test-suite semantics), BIRD EX/R-VES.

from sqltune.evaluate import evaluate
report = evaluate("pred.sql", "dev_gold.sql", "database", "tables.json", etype="all")
report["summary"]["levels"]["all"]["exec"]["rate"]
"""

from sqltune.evaluate.run import evaluate

__all__ = ["evaluate"]
