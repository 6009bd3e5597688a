"""The one exception type users see.

Every problem a user can fix (a missing file, a malformed line, an unknown key) is raised as a
`SqltuneError` whose message names the file, line or field. The CLI prints it on one line and exits
with status 2 instead of showing a traceback.
"""


class SqltuneError(Exception):
    """A user-facing error with a message that says what to fix."""


class ConfigError(SqltuneError):
    """A configuration key or value is wrong."""


class DataError(SqltuneError):
    """An input data file is missing or malformed."""


class SqltuneWarning(UserWarning):
    """Something the user should know that does not stop the run (printed on one line by the CLI)."""
