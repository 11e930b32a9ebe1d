"""The one error a user of the `mixsweep` command can cause: bad input, reported in one sentence.

Every module raises `UsageError("<the input>: <what is wrong>; <the fix>")`; the CLI prints it and
exits with status 2. A `mixunlearn.config.ConfigError` (and so a search_spaces `SpaceError`) is
treated the same way: its message already names the file, the key and what is allowed.
"""
from __future__ import annotations

EXIT_USAGE = 2   # argparse's status for bad command lines; the same for bad files and impossible requests


class UsageError(Exception):
    """Bad user input (a flag, a file, an impossible resource request); the message names it and the fix."""
