"""Fixtures of the training tests: the tiny model and datasets of `tests.tiny`."""

from tests.tiny import tiny_data_dir, tiny_model_dir, tiny_tokenizer  # noqa: F401
