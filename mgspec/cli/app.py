"""The ``mgspec`` command: each command parses options and hands off to the library.

Commands live in one module per group; importing them registers them on
:data:`mgspec.cli.common.app`, in the order ``mgspec --help`` lists them.
"""

# isort: off
from mgspec.cli import spec  # noqa: F401  validate, count, compile, schema, list, show, graph, export
from mgspec.cli import training  # noqa: F401  train, evaluate, sweep
from mgspec.cli import paper  # noqa: F401  paper, reproduce
from mgspec.cli import study  # noqa: F401  study run, study report
from mgspec.cli import predict  # noqa: F401  predict

# isort: on
from mgspec.cli.common import app
from mgspec.cli.errors import closed_pipe


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # outside a command (help text): quiet, as inside one
        raise SystemExit(closed_pipe().exit_code) from None
