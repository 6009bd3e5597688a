"""From raw benchmark files or a live database to prompt records: Example -> Schema -> prompt -> jsonl."""
