"""``jupyter governance approvals list|approve|deny``: work the approval queue from a terminal.

Talks to the governance API with the user's own Jupyter token, so the server applies exactly the
rules it applies in the side panel (approvers only, never one's own request, reason required).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from governed_server.cli.errors import EXIT_FOUND, EXIT_OK, EXIT_USAGE, CLIError

URL_ENVS = ("GOVERNED_API_URL", "JUPYTER_SERVER_URL")
TOKEN_ENVS = ("GOVERNED_API_TOKEN", "JUPYTER_TOKEN")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "approvals",
        help="list, approve or deny approval requests through the API",
        description="Work the approval queue through the governance API, with your own Jupyter token.",
    )
    parser.add_argument(
        "--url",
        default=_first_env(URL_ENVS),
        help="Jupyter server URL, e.g. http://127.0.0.1:8888/ ($GOVERNED_API_URL or $JUPYTER_SERVER_URL)",
    )
    parser.add_argument(
        "--token", default=_first_env(TOKEN_ENVS), help="your token ($GOVERNED_API_TOKEN or $JUPYTER_TOKEN)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list requests (pending ones by default)")
    listing.add_argument("--status", default="pending", help="pending|approved|denied|expired|cancelled|all")
    listing.add_argument("--mine", action="store_true", help="only my own requests")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    for name in ("approve", "deny"):
        decide = actions.add_parser(name, help=f"{name} a request (a reason is required)")
        decide.add_argument("request_id")
        decide.add_argument("--reason", "-r", required=True, help="why; recorded in the audit log")
        decide.add_argument("--json", action="store_true", help="print the API's JSON")
    parser.set_defaults(handler=run)


def _first_env(names: tuple[str, ...]) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


def call(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    if not args.url:
        raise CLIError("no server URL: pass --url or set GOVERNED_API_URL", EXIT_USAGE)
    if not args.token:
        raise CLIError("no token: pass --token or set GOVERNED_API_TOKEN (your Jupyter token)", EXIT_USAGE)
    url = args.url.rstrip("/") + "/governance/api/" + path
    try:
        response = httpx.request(
            method, url, headers={"Authorization": f"token {args.token}"}, timeout=args.timeout, **kwargs
        )
    except httpx.HTTPError as error:
        raise CLIError(f"cannot reach {args.url}: {error}", EXIT_USAGE) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        message = body.get("message") if isinstance(body, dict) else response.reason_phrase
        if response.status_code == 404 and body is None:
            message = "the governance API is not on that server (is governed_server enabled?)"
        code = EXIT_USAGE if response.status_code in (400, 401, 503) else EXIT_FOUND
        raise CLIError(f"{response.status_code}: {message}", code)
    return body


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        params: dict[str, str] = {}
        if args.status != "all":
            params["status"] = args.status
        if args.mine:
            params["mine"] = "1"
        body = call(args, "GET", "approvals", params=params)
        if args.json:
            print(json.dumps(body, indent=2))
        else:
            print_requests(body["requests"], args.status, mine=args.mine)
        return EXIT_OK
    decision = "approve" if args.action == "approve" else "deny"
    body = call(
        args,
        "POST",
        f"approvals/{args.request_id}/decision",
        json={"decision": decision, "reason": args.reason},
    )
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(f"{body['id']}: {body['status']} ({body['approvals']}/{body['required_approvals']} approvals)")
    return EXIT_OK


def print_requests(requests: list[dict[str, Any]], status: str = "all", *, mine: bool = False) -> None:
    if not requests:
        kind = "" if status == "all" else f"{status} "
        print(f"no {kind}requests{' of yours' if mine else ''}")
        return
    for request in requests:
        rules = ", ".join(str(rule.get("id")) for rule in request["rules"])
        progress = f"{request['approvals']}/{request['required_approvals']}"
        notebook = request["notebook_path"] or "-"
        who = f"{request['status']:<9} {request['requester']:<16}"
        print(f"{request['id']}  {who} {progress}  {notebook}  [{rules}]")
        first_line = (request.get("code") or "").strip().splitlines()[:1]
        if first_line:
            print(f"    {first_line[0][:100]}")
