"""``jupyter governance serve``: the governance API alone, e.g. as a JupyterHub service for many users.

The same extension and API as inside JupyterLab, on a jupyter_server that loads no other extension.
Configuration is the usual traitlets one (``--GovernedServerApp.db_url=…`` or a config file) plus the
``GOVERNED_*`` environment variables.
"""

from __future__ import annotations

import argparse
import os
from typing import Any
from urllib.parse import urlparse

SERVICE_ROUTES = ("api", "auth")
"""jupyter_server's own route groups the service keeps: status and identity, login. No contents,
files, kernels, sessions or terminals (the service runs as the governance user, beside its store and
key, and must not serve or run anything), and not jupyter_server's event stream, which sends every
event to everyone: ``/governance/api/events`` sends each person what they may see."""

HUB_IDENTITY = "jupyterhub.singleuser.extension.JupyterHubIdentityProvider"


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
    parser.add_argument(
        "--hub",
        action="store_true",
        help="run as a JupyterHub service: people authenticate with Hub tokens or Hub OAuth; address "
        "and URL prefix from JUPYTERHUB_SERVICE_URL and JUPYTERHUB_SERVICE_PREFIX "
        "(docs/deploy-jupyterhub.md)",
    )
    parser.add_argument("server_args", nargs=argparse.REMAINDER, help="traitlets options for the server")
    parser.set_defaults(handler=run)


def server_argv(args: argparse.Namespace) -> list[str]:
    ip, port = args.ip, args.port
    hub: list[str] = []
    if getattr(args, "hub", False):
        service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
        if not service_url or not os.environ.get("JUPYTERHUB_API_TOKEN"):
            raise SystemExit(
                "jupyter governance serve --hub: JUPYTERHUB_SERVICE_URL and JUPYTERHUB_API_TOKEN are not "
                "set; --hub is for a service that JupyterHub starts (c.JupyterHub.services, see "
                "governed_server.hub.configure)"
            )
        parsed = urlparse(service_url)
        ip, port = parsed.hostname or ip, parsed.port or port
        hub = [
            f"--ServerApp.base_url={os.environ.get('JUPYTERHUB_SERVICE_PREFIX', '/')}",
            f"--ServerApp.identity_provider_class={HUB_IDENTITY}",
            "--GovernedServerApp.hub_service=True",
        ]
    argv = [
        f"--ServerApp.ip={ip}",
        f"--ServerApp.port={port}",
        "--ServerApp.open_browser=False",
        "--GovernedServerApp.set_default_kernel=False",
        *hub,
    ]
    if args.allow_root or os.environ.get("GOVERNED_ALLOW_ROOT") == "1":
        argv.append("--ServerApp.allow_root=True")
    return argv + [arg for arg in args.server_args if arg != "--"]


def run(args: argparse.Namespace) -> int:
    from jupyter_server.serverapp import ServerApp

    from governed_server.app import GovernedServerApp

    class GovernanceServer(ServerApp):
        """A server with the governance API and nothing else of jupyter_server's."""

        default_services = SERVICE_ROUTES  # type: ignore[assignment]

    class GovernanceServiceApp(GovernedServerApp):
        """The extension as the server's only one."""

        load_other_extensions = False
        serverapp_class = GovernanceServer

    GovernanceServiceApp.launch_instance(argv=server_argv(args))  # type: ignore[no-untyped-call]
    return 0
