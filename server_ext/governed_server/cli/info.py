"""``jupyter governance info``: what is in effect, and whether the governed kernel's parts are there.

A running server can use another policy or store than this installation's defaults (the demo runs
its own policy; a deployment sets ``GovernedServerApp.policy_path``). So ``info`` describes the
running server when it is given one (``--url``) or finds one (jupyter_server's runtime files, as
``jupyter server list`` does), asking its ``/governance/api/health``; otherwise the defaults a new
server would start with. The first line says which of the two it describes.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from governed_server.cli.errors import EXIT_FOUND, EXIT_OK, EXIT_USAGE, CLIError

TOKEN_ENVS = ("GOVERNED_API_TOKEN", "JUPYTER_TOKEN")
HEALTH_PATH = "governance/api/health"
SERVER_FIELDS = (
    "status", "problem", "version", "policy_path", "policy_version", "mode", "store",
    "jail", "jail_risk_accepted", "jail_kernels", "hardening", "weakened", "roles",
)  # fmt: skip
"""What the running server reports and ``info`` shows (the health endpoint's fields)."""
JAIL_KERNELS_TEXT = {
    "jailed": "",
    "unjailed": "governed kernels run without the jail",
    "refused": "governed kernels are refused until the jail works or the risk is accepted",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show what is in effect: the running server's policy and store, or this install's defaults",
        description="Show the governed kernel's version, kernelspec, policy and store. With --url, or when "
        "a running Jupyter server is found in the runtime files, it describes that server (asked over "
        "its API); otherwise the defaults a new server would use. Exit 1 when a part is missing or the "
        "server's governance service is not running, or in enforce mode its kernels run without the jail.",
    )
    parser.add_argument("--url", help="a running server to describe, e.g. http://127.0.0.1:8888/")
    parser.add_argument(
        "--token",
        default=next((os.environ[name] for name in TOKEN_ENVS if os.environ.get(name)), None),
        help="token for --url ($GOVERNED_API_TOKEN or $JUPYTER_TOKEN; default: the runtime file's)",
    )
    parser.add_argument(
        "--defaults", action="store_true", help="describe this installation's defaults, not a running server"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the server")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def installation() -> dict[str, Any]:
    """What this installation has, and the defaults a new server would use."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    from governed_kernel import KERNEL_NAME
    from governed_kernel._version import __version__
    from governed_kernel.resources import default_policy_path
    from governed_server.paths import default_db_url, redact_db_url
    from governed_server.single_user.jail_probe import probe

    try:
        kernelspec_dir: str | None = KernelSpecManager().get_kernel_spec(KERNEL_NAME).resource_dir
    except NoSuchKernel:
        kernelspec_dir = None
    policy = default_policy_path()
    return {
        "version": __version__,
        "kernel_name": KERNEL_NAME,
        "kernelspec": kernelspec_dir,
        "policy_path": str(policy),
        "policy_exists": policy.is_file(),
        "store": redact_db_url(default_db_url()),
        "jail": probe().describe(),
    }


def running_servers() -> list[dict[str, Any]]:
    """jupyter_server's runtime files of live servers (url, token, pid, root_dir), newest first."""
    from jupyter_server.serverapp import list_running_servers

    servers = list(list_running_servers())
    return sorted(servers, key=lambda server: -int(server.get("pid", 0)))


def ask_server(url: str, token: str | None, timeout: float) -> dict[str, Any]:
    """The server's health answer; CLIError with what to do when it cannot be had."""
    import httpx

    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        response = httpx.get(url.rstrip("/") + "/" + HEALTH_PATH, headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        raise CLIError(f"cannot reach {url}: {error}", EXIT_USAGE) from None
    if response.status_code in (401, 403):
        raise CLIError(f"{url} refused the token ({response.status_code}): pass --token", EXIT_USAGE)
    if response.status_code == 404:
        raise CLIError(f"{url} has no governance API (is the governed_server extension enabled?)", EXIT_FOUND)
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        raise CLIError(f"{url} answered {response.status_code} without JSON", EXIT_USAGE) from None
    if response.status_code >= 400:
        raise CLIError(f"{url}: {response.status_code}: {body.get('message', '')}", EXIT_FOUND)
    return body


def describe_server(url: str, token: str | None, timeout: float, pid: Any = None) -> dict[str, Any]:
    health = ask_server(url, token, timeout)
    local = installation()
    described = {"describing": "running server", "url": url, "pid": pid}
    described.update({field: health.get(field) for field in SERVER_FIELDS})
    described["kernelspec"] = local["kernelspec"]
    described["policy_exists"] = health.get("policy_exists")
    return described


def collect(args: argparse.Namespace) -> dict[str, Any]:
    if args.url:
        token = args.token
        if token is None:  # the runtime file of that server, if it is a local one
            token = next((s.get("token") for s in running_servers() if _same(s.get("url"), args.url)), None)
        return describe_server(args.url, token, args.timeout)
    if not args.defaults:
        for server in running_servers():
            try:
                return describe_server(server["url"], server.get("token"), args.timeout, server.get("pid"))
            except CLIError:
                continue  # not a governed server, or gone: try the next one
    return {"describing": "installation defaults (no running server found)", **installation()}


def _same(left: Any, right: str) -> bool:
    return str(left or "").rstrip("/") == right.rstrip("/")


def jail_text(info: dict[str, Any]) -> str | None:
    """One line for the jail: ``bubblewrap``, or ``none: <reason> (risk accepted: ...)``."""
    jail = info.get("jail")
    if jail is None:
        return None
    notes = []
    if info.get("jail_risk_accepted"):
        notes.append("risk accepted by GovernedServerApp.allow_unjailed_kernels")
    kernels = JAIL_KERNELS_TEXT.get(str(info.get("jail_kernels")), "")
    if kernels:
        notes.append(kernels)
    return f"{jail} ({'; '.join(notes)})" if notes else str(jail)


def weakened(info: dict[str, Any]) -> bool:
    """Enforce mode without the kernel jail (refused kernels, or the risk accepted), or with another
    hardened default relaxed by a setting (the server's ``weakened`` list)."""
    if info.get("mode") != "enforce":
        return False
    return info.get("jail_kernels") in ("unjailed", "refused") or bool(info.get("weakened"))


def run(args: argparse.Namespace) -> int:
    info = collect(args)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        shown = {key: value for key, value in info.items() if not (key == "problem" and value is None)}
        if "hardening" in shown:
            shown["hardening"] = ", ".join(f"{k}: {v}" for k, v in (info.get("hardening") or {}).items())
        if "weakened" in shown:
            shown["weakened"] = "; ".join(info.get("weakened") or []) or "nothing"
        if "jail" in shown:
            shown["jail"] = jail_text(info)
            shown.pop("jail_risk_accepted", None)
            shown.pop("jail_kernels", None)
        width = max(len(key) for key in shown)
        for key, value in shown.items():
            missing = "(not installed)" if key == "kernelspec" else "-"
            print(f"{key:<{width}}  {value if value is not None else missing}")
    healthy = (
        info["kernelspec"] is not None
        and bool(info["policy_exists"])
        and info.get("status") != "unavailable"
        and not weakened(info)
    )
    return EXIT_OK if healthy else EXIT_FOUND
