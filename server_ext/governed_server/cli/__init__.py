"""``jupyter governance``: one entry point, one module per subcommand.

Each subcommand module in :data:`SUBCOMMANDS` exposes ``register(subparsers)``, which adds its parser
and sets ``handler`` (a function ``(args) -> int``). Heavy imports stay inside the handlers so
``--help`` and fast commands start quickly.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from governed_kernel._version import __version__
from governed_server.cli.errors import EXIT_USAGE, CLIError

PROG = "jupyter governance"

SUBCOMMANDS: tuple[str, ...] = (
    "info", "policy", "mask", "scan", "run", "approvals", "verify", "serve", "demo",
)  # fmt: skip
"""Module names under ``governed_server.cli`` that register a subcommand, in help order."""


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors name the program and suggest ``--help``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nTry '{self.prog} --help' for help.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Govern Jupyter notebooks that handle payment-card data: mask, scan, check policies, "
        "run notebooks under governance, approve cells and verify the audit log.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", dest="command", parser_class=_Parser
    )
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"governed_server.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jupyter governance``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = handler(args)
    except CLIError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error of ours.
        sys.stderr.close()
        return 0
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
