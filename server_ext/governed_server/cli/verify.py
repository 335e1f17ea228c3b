"""``jupyter governance verify``: check the audit log's hash chain and signed checkpoints.

Exit 0 when intact, 1 when any record or checkpoint is wrong (the first bad record is named),
2 when the store cannot be read. Read-only: the store is never migrated or written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from governed_server.cli.errors import EXIT_FOUND, EXIT_OK, EXIT_USAGE, CLIError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="verify the audit log's hash chain and signed checkpoints",
        description="Verify every audit record, the chain head and every signed checkpoint. Prints "
        "'N/N records valid, chain intact to checkpoint K signed at T' or names the first bad record "
        "(modified, deleted, inserted, reordered, truncated, bad-signature). Exit 0 when intact, "
        "1 when anything is wrong, 2 when the store cannot be read.",
    )
    parser.add_argument(
        "--db-url",
        help="SQLAlchemy URL of the store (default: $GOVERNED_DB_URL or the "
        "SQLite file in the Jupyter data dir)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="directory of checkpoints.jsonl and the public key "
        "(default: checkpoints beside the SQLite file)",
    )
    parser.add_argument(
        "--public-key",
        type=Path,
        action="append",
        default=[],
        metavar="PEM",
        help="trust this Ed25519 public key (repeatable); pin it for the strongest check",
    )
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--quiet", action="store_true", help="print nothing; only the exit code tells")
    parser.add_argument(
        "--progress", action="store_true", help="show a progress bar even when stderr is not a terminal"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from governed_server.paths import default_db_url
    from governed_server.service.audit import AuditError, AuditLog, default_checkpoint_dir
    from governed_server.service.store import StoreError, normalise_url, open_store, redact
    from governed_server.service.store.engine import sqlite_path

    url = args.db_url or default_db_url()
    try:
        parsed = normalise_url(url)
        path = sqlite_path(parsed)
        if parsed.get_backend_name() == "sqlite" and (path is None or not path.is_file()):
            raise CLIError(f"no audit store at {redact(parsed)}: the file does not exist", EXIT_USAGE)
        store = open_store(parsed, upgrade=False)
    except StoreError as error:
        raise CLIError(str(error), EXIT_USAGE) from None
    try:
        if store.schema_revision() is None:
            raise CLIError(f"{store.url} holds no governance store (no schema)", EXIT_USAGE)
        checkpoint_dir = args.checkpoint_dir or default_checkpoint_dir(store)
        audit = AuditLog(
            store, signing_key_path=None, checkpoint_dir=checkpoint_dir, public_keys=args.public_key
        )
        show = not args.quiet and (args.progress or sys.stderr.isatty())
        with tqdm(total=0, unit="rec", file=sys.stderr, disable=not show, desc="verify") as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            report = audit.verify(progress)
    except AuditError as error:
        raise CLIError(str(error), EXIT_USAGE) from None
    except Exception as error:  # a store error mid-way: report it, never a traceback with the URL
        if type(error).__module__.startswith("sqlalchemy"):
            raise CLIError(
                f"cannot read the audit log at {store.url}: {type(error).__name__}", EXIT_USAGE
            ) from None
        raise
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not args.quiet:
        print(report.summary())
        for problem in report.problems[1:]:
            print(f"  record {problem.seq}: {problem.kind}: {problem.detail}")
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FOUND
