"""`sqltune run`: the whole flow in one command, and its before/after report."""
