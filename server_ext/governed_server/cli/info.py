"""``jupyter governance info``: where the governed kernel's parts are and whether they are installed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from governed_server.cli.errors import EXIT_FOUND, EXIT_OK


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show the installed version, kernelspec, policy and store locations",
        description="Show where the governed kernel's parts are and whether they are installed; "
        "exit 1 when a part is missing.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def collect() -> dict[str, Any]:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    from governed_kernel import KERNEL_NAME
    from governed_kernel._version import __version__
    from governed_kernel.resources import default_policy_path
    from governed_server.paths import default_db_url, redact_db_url

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
    }


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(key) for key in info)
        for key, value in info.items():
            print(f"{key:<{width}}  {value if value is not None else '(not installed)'}")
    healthy = info["kernelspec"] is not None and info["policy_exists"]
    return EXIT_OK if healthy else EXIT_FOUND
