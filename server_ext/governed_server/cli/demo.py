"""``jupyter governance demo``: JupyterLab ready for a two-person demo (what ``make lab`` runs).

Named demo identities for an analyst (``ana``) and an approver (``bob``, also an auditor), the demo
policy that names them, the embedded default store; prints one login URL per person. DEMO ONLY:
the tokens in those URLs are the only credentials. See ``docs/ui.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from governed_server.cli.errors import CLIError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="start JupyterLab for a two-person demo (analyst + approver), printing a URL for each",
        description="Start JupyterLab with named demo identities (ana: analyst, bob: approver and "
        "auditor), the demo policy and the embedded store, and print one login URL per person. "
        "DEMO ONLY: anybody with a URL is that person. Extra arguments after -- go to jupyter lab.",
    )
    parser.add_argument("--ip", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8888, help="port (default: 8888)")
    parser.add_argument(
        "--notebook-dir",
        type=Path,
        default=None,
        help="folder JupyterLab serves (default: a scratch copy of the demo notebook in the demo folder, "
        "kept across restarts; nothing is written into the repository)",
    )
    parser.add_argument(
        "--fresh-notebook",
        action="store_true",
        help="replace the scratch copy of the demo notebook with the original (your edits are lost)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show JupyterLab's informational log, not only warnings"
    )
    parser.add_argument(
        "--demo-dir",
        type=Path,
        default=None,
        help="where the demo config and tokens are kept (default: <jupyter data dir>/governance-demo)",
    )
    parser.add_argument(
        "--policy", type=Path, default=None, help="policy file (default: the bundled demo policy)"
    )
    parser.add_argument("--new-tokens", action="store_true", help="replace the saved demo tokens")
    parser.add_argument(
        "--no-launch", action="store_true", help="write the config and print the URLs, do not start"
    )
    parser.add_argument("lab_args", nargs=argparse.REMAINDER, help="extra options for jupyter lab")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from governed_server.demo import default_demo_dir, run_demo

    notebook_dir: Path | None = args.notebook_dir
    if notebook_dir is not None and not notebook_dir.is_dir():
        raise CLIError(f"--notebook-dir {notebook_dir} is not a folder")
    if not 0 < args.port < 65536:
        raise CLIError(f"--port {args.port} is not a port number")
    try:
        return run_demo(
            demo_dir=(args.demo_dir or default_demo_dir()).expanduser(),
            ip=args.ip,
            port=args.port,
            notebook_dir=notebook_dir.resolve() if notebook_dir is not None else None,
            policy_path=args.policy.expanduser().resolve() if args.policy else None,
            renew_tokens=args.new_tokens,
            fresh_notebook=args.fresh_notebook,
            verbose=args.verbose,
            launch=not args.no_launch,
            extra=args.lab_args,
        )
    except FileNotFoundError as error:
        raise CLIError(str(error)) from None
