"""The check every untrusted query passes before it reaches a database server: one read-only query.

The server's read-only transaction is what actually stops writes (see `server`); this check is the
earlier, cheaper line: it refuses a second statement after `;` (so `SELECT 1; DROP TABLE x` never
reaches the server), anything that is not a query, and `SELECT ... INTO` (a table or a file). It
parses with sqlglot in the server's dialect. SQL that sqlglot cannot parse is not refused for that
alone (the parser lags behind the servers' grammars); it must then still be one statement by
sqlglot's tokenizer, start like a query and hold no INTO, and the server decides the rest inside the read-only
transaction.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

QUERY_STARTS = {TokenType.SELECT, TokenType.WITH, TokenType.VALUES, TokenType.L_PAREN, TokenType.TABLE}
ONE_QUERY = "only a single read-only query is run"


def refusal(sql: str, dialect: str) -> str | None:
    """Why `sql` may not run on a server of `dialect` (a sqlglot dialect name), or None if it may."""
    try:
        tokens = [t for t in sqlglot.tokenize(sql, read=dialect)]
    except (sqlglot.errors.TokenError, ValueError) as err:
        return f"not valid SQL: {str(err).splitlines()[0]}"
    while tokens and tokens[-1].token_type == TokenType.SEMICOLON:
        tokens.pop()
    if not tokens:
        return "empty query"
    if any(t.token_type == TokenType.SEMICOLON for t in tokens):
        return ONE_QUERY
    if tokens[0].token_type not in QUERY_STARTS:
        return ONE_QUERY
    if any(t.token_type == TokenType.INTO for t in tokens):
        return ONE_QUERY  # SELECT ... INTO a table, a variable or a file (OUTFILE, DUMPFILE)
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, ValueError, RecursionError):
        return None  # one statement that starts like a query: the read-only transaction decides
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        return ONE_QUERY
    if statements[0].find(exp.Command):
        return ONE_QUERY
    return None
