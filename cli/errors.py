"""Exit codes and the errors commands raise; ``cli.main`` turns them into ``Error: <message>`` + the code.

| code | meaning |
|---|---|
| 0 | success |
| 1 | failure: the input was fine but something outside failed (the cluster, the API server, a write) |
| 2 | usage or input error: bad flags, a missing path, no Dockerfile/compose, an unreadable file, a malformed
      config file — fix the input and run again |
"""

from __future__ import annotations

OK = 0
FAILURE = 1
USAGE = 2


class CliError(Exception):
    """A command failed; ``str(e)`` says what to fix, ``code`` is the exit code."""

    code = FAILURE

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InputError(CliError):
    """The user's input (flags, paths, files, config) is wrong: exit 2."""

    code = USAGE


class Failure(CliError):
    """Something outside the input failed (cluster, API server, filesystem): exit 1."""

    code = FAILURE
