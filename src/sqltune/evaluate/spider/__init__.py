"""Spider's exact-set-match metric: the official parser's tokens and grammar, hardness, clause scores."""
