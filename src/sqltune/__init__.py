"""sqltune: turn an open LLM into a Text-to-SQL model and prove how good it is."""

__version__ = "0.1.0"
