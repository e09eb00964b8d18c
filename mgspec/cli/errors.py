"""Turning user errors into one message and an exit code, never a traceback.

A closed pipe (``mgspec ... | head -1``) is not an error: the command stops quietly with
status 141 (128 + SIGPIPE), as Unix tools killed by SIGPIPE report.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

import typer

from mgspec.errors import SpecError

#: Exit code for user errors in specs and arguments (typer uses 2 for usage errors too).
USER_ERROR = 2
#: Exit code when the reader of stdout went away: 128 + SIGPIPE.
CLOSED_PIPE = 141
#: Exit code after Ctrl-C: 128 + SIGINT, as shells report it.
INTERRUPTED = 130


def closed_pipe() -> typer.Exit:
    """Point stdout at /dev/null (so the final flush cannot fail again) and exit 141."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (tests capture it)
        pass
    return typer.Exit(CLOSED_PIPE)


def report(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def user_errors(command: Callable) -> Callable:
    """Run ``command``; a SpecError (or OSError on a user path) becomes one message, exit 2; Ctrl-C exits 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            result = command(*args, **kwargs)
            sys.stdout.flush()  # a reader that went away shows here, not at exit
            return result
        except BrokenPipeError:
            raise closed_pipe() from None
        except KeyboardInterrupt:  # Ctrl-C outside a training (which says how to resume): no traceback
            print("interrupted", file=sys.stderr)
            raise typer.Exit(INTERRUPTED) from None
        except SpecError as exc:
            report(str(exc))
            raise typer.Exit(USER_ERROR) from None
        except OSError as exc:
            report(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
            raise typer.Exit(USER_ERROR) from None

    return wrapper
