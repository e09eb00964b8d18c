"""Turning user errors into one message and an exit code, never a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import typer

from mgspec.errors import SpecError

#: Exit code for user errors in specs and arguments (typer uses 2 for usage errors too).
USER_ERROR = 2


def report(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def user_errors(command: Callable) -> Callable:
    """Run ``command``; a SpecError (or OSError on a user path) becomes one message, exit 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SpecError as exc:
            report(str(exc))
            raise typer.Exit(USER_ERROR) from None
        except OSError as exc:
            report(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
            raise typer.Exit(USER_ERROR) from None

    return wrapper
