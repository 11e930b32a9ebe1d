"""The one error a user of the `mixsweep` command can cause: bad input, reported in one sentence.

Every module raises `UsageError("<the input>: <what is wrong>; <the fix>")`; the CLI prints it and
exits with status 2. A `mixunlearn.config.ConfigError` (and so a search_spaces `SpaceError`) is
treated the same way: its message already names the file, the key and what is allowed. So is a
`mixunlearn.data.DatasetNotFound`, the one user error that lives beside torch.

This module imports nothing heavy: the CLI catches user errors before torch, Ray or MLflow load.
"""
from __future__ import annotations

import sys

from mixunlearn.config import ConfigError   # mixunlearn's package imports lazily: no torch here

EXIT_USAGE = 2   # argparse's status for bad command lines; the same for bad files and impossible requests


class UsageError(Exception):
    """Bad user input (a flag, a file, an impossible resource request); the message names it and the fix."""


def user_errors() -> tuple[type[Exception], ...]:
    """The exception types the CLI reports in one sentence. DatasetNotFound is only raised once
    mixunlearn.data (and torch with it) is imported, so it is looked up there, never imported here."""
    data = sys.modules.get("mixunlearn.data")
    return (UsageError, ConfigError, *((data.DatasetNotFound,) if data is not None else ()))
