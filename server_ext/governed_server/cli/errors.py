"""Exit codes and the error type shared by every subcommand."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FOUND = 1
"""A check found something (e.g. ``scan`` found a PAN, ``verify`` found tampering)."""
EXIT_USAGE = 2
"""Bad command line or unusable input."""


class CLIError(Exception):
    """An error meant for the person at the terminal: printed without a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
