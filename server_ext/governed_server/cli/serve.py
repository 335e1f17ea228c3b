"""``jupyter governance serve``: the governance API alone, e.g. as a JupyterHub service for many users.

The same extension and API as inside JupyterLab, on a jupyter_server that loads no other extension.
Configuration is the usual traitlets one (``--GovernedServerApp.db_url=…`` or a config file) plus the
``GOVERNED_*`` environment variables.
"""

from __future__ import annotations

import argparse
import os
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the governance API standalone (same API as inside JupyterLab)",
        description="Run the governance API on its own jupyter_server, without JupyterLab or other "
        "extensions. Extra traitlets options (e.g. --GovernedServerApp.db_url=postgresql://…) pass "
        "through to the server.",
    )
    parser.add_argument("--ip", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8889, help="port (default: 8889)")
    parser.add_argument("--allow-root", action="store_true", help="allow running as root (containers)")
    parser.add_argument("server_args", nargs=argparse.REMAINDER, help="traitlets options for the server")
    parser.set_defaults(handler=run)


def server_argv(args: argparse.Namespace) -> list[str]:
    argv = [
        f"--ServerApp.ip={args.ip}",
        f"--ServerApp.port={args.port}",
        "--ServerApp.open_browser=False",
        "--GovernedServerApp.set_default_kernel=False",
    ]
    if args.allow_root or os.environ.get("GOVERNED_ALLOW_ROOT") == "1":
        argv.append("--ServerApp.allow_root=True")
    return argv + [arg for arg in args.server_args if arg != "--"]


def run(args: argparse.Namespace) -> int:
    from governed_server.app import GovernedServerApp

    class GovernanceServiceApp(GovernedServerApp):
        """The extension as the server's only one."""

        load_other_extensions = False

    GovernanceServiceApp.launch_instance(argv=server_argv(args))  # type: ignore[no-untyped-call]
    return 0
