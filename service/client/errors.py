"""The client's failures: each is one line for the user and an exit status."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ClientError(Exception):
    """A failure the user can act on: printed as one line, with the exit status to use."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UnsupportedAudioError(ClientError):
    """The input is audio this client cannot read (or not audio at all)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)
