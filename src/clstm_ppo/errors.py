"""Errors that are the user's to fix.

Every subclass of :class:`UserError` is shown by the command line as a single line on stderr with
exit code 2 (never a traceback). The message must name the file, field, flag or key and say what
is wrong with it.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration key or command-line flag has a bad value."""


class DataError(UserError):
    """A data file or data source is unusable (missing, malformed, fails validation)."""


class ApiError(UserError):
    """A remote API refused us, even after retries (auth, rate limit, server error)."""


class CheckpointError(UserError):
    """A checkpoint is corrupt, foreign or incompatible with the current config."""
