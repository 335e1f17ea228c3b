"""``jupyter governance run NOTEBOOK``: a governed batch run (CI), with exit codes scripts can use.

Exit codes: 0 every cell ran; 1 a cell raised an error (or timed out, or the kernel died); 2 usage
error; 3 a cell needs approval (the message names the request and how to approve it); 4 governance
refused (policy deny, approval denied) or failed (service, audit, policy unusable).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from governed_server.cli.errors import EXIT_USAGE, CLIError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a notebook under governance (nbclient on governed-python)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("notebook", type=Path, help="the notebook to run")
    parser.add_argument("--output", "-o", type=Path, help="write the executed (masked) notebook here")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per cell (default: no limit)")
    parser.add_argument(
        "--wait-for-approval", type=float, default=0.0, metavar="S",
        help="wait up to S seconds for an approver instead of failing at once (default 0)",
    )  # fmt: skip
    parser.add_argument("--url", default=os.environ.get("GOVERNED_API_URL"),
                        help="a Jupyter server or `jupyter governance serve` to use ($GOVERNED_API_URL); "
                        "default: an embedded service on the configured store")  # fmt: skip
    parser.add_argument("--token", default=os.environ.get("GOVERNED_API_TOKEN"),
                        help="your token for --url ($GOVERNED_API_TOKEN)")  # fmt: skip
    parser.add_argument(
        "--db-url", default=None, help="store of the embedded service (default: $GOVERNED_DB_URL or Lab's)"
    )
    parser.add_argument(
        "--policy", type=Path, default=None, help="policy file (default: $GOVERNED_POLICY or bundled)"
    )
    parser.add_argument("--kernel", default="governed-python", help="kernel name (default governed-python)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from governed_kernel.resources import default_policy_path
    from governed_server.paths import default_db_url
    from governed_server.single_user.runner import (
        RunError,
        describe_exit,
        embedded_service,
        remote_service,
        run_notebook,
    )

    if not args.notebook.is_file():
        raise CLIError(f"no such notebook: {args.notebook}", EXIT_USAGE)
    if args.url and not args.token:
        raise CLIError("--url needs --token (your Jupyter token) or $GOVERNED_API_TOKEN", EXIT_USAGE)
    policy = args.policy or default_policy_path()
    try:
        with tempfile.TemporaryDirectory(prefix="governed-run-") as workdir:
            service = (
                remote_service(args.url, args.token) if args.url
                else embedded_service(args.db_url or default_db_url(), policy, Path(workdir))
            )  # fmt: skip
            with service as access:
                print(f"jupyter governance run: {args.notebook} as {access.user} (kernel {access.kernel_id})",
                      file=sys.stderr)  # fmt: skip
                result = run_notebook(
                    args.notebook, output=args.output, access=access, timeout=args.timeout,
                    wait_for_approval=args.wait_for_approval, kernel_name=args.kernel, policy_path=policy,
                )  # fmt: skip
    except RunError as error:
        raise CLIError(str(error), error.exit_code) from None
    stream = sys.stdout if result.exit_code == 0 else sys.stderr
    print(f"{result.message}\nexit {result.exit_code}: {describe_exit(result.exit_code)}", file=stream)
    return result.exit_code
