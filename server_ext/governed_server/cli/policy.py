"""``jupyter governance policy``: validate a policy file, and explain the decision for a cell.

``check`` is what an operator runs before deploying a policy (exit 1 with ``file:line:column`` when
it is invalid); ``explain`` shows an analyst or approver why a cell is gated, with the same classifier
the kernel uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from governed_server.cli.errors import EXIT_FOUND, EXIT_OK, EXIT_USAGE, CLIError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "policy",
        help="check a policy file or explain the decision for a cell",
        description="Validate governance policy files and explain how a cell is classified.",
    )
    actions = parser.add_subparsers(
        title="actions", metavar="ACTION", dest="policy_action", parser_class=type(parser)
    )
    check = actions.add_parser(
        "check",
        help="validate a policy file; print its version and a summary",
        description="Validate a policy file (default: GOVERNED_POLICY or the bundled PCI DSS policy). "
        "Exit 0 when valid, 1 with file:line:column errors when not.",
    )
    check.add_argument("file", nargs="?", metavar="FILE", help="policy YAML file")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(handler=run_check)
    explain = actions.add_parser(
        "explain",
        help="print the decision for a cell, with the matched rules and their locations",
        description="Classify a cell (a text file, a notebook .ipynb, or - for stdin) with a policy and "
        "print the decision (allow, approve, deny), each matched rule, where it matched and why.",
    )
    explain.add_argument("cell", metavar="CELLFILE|-", help="cell source file, notebook, or - for stdin")
    explain.add_argument("--policy", metavar="FILE", help="policy file (default: GOVERNED_POLICY or bundled)")
    explain.add_argument(
        "--json",
        action="store_true",
        help="print JSON: decision, rules [id, action, reason, span], policy_version",
    )
    explain.set_defaults(handler=run_explain)
    parser.set_defaults(handler=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _load(path: str | None) -> Any:
    from governed_kernel.policy.errors import PolicyError
    from governed_kernel.policy.loader import load_default_policy, load_policy

    try:
        return load_policy(path) if path else load_default_policy()
    except PolicyError as error:
        raise CLIError(f"invalid policy\n{error}", EXIT_FOUND) from None


def summarize(policy: Any) -> dict[str, Any]:
    actions = Counter(rule.action for rule in policy.rules)
    approvals = policy.approvals
    return {
        "valid": True,
        "file": policy.source,
        "name": policy.name,
        "version": policy.version,
        "mode": policy.mode,
        "rules": {"total": len(policy.rules), **{a: actions.get(a, 0) for a in ("allow", "approve", "deny")}},
        "required_approvers": approvals.required_approvers,
        "pending_ttl_minutes": approvals.pending_ttl_minutes,
        "approval_validity": approvals.validity
        if approvals.validity == "once"
        else f"window of {approvals.window_minutes} minutes",
        "audit_retention_days": policy.audit.retention_days,
        "checkpoint_interval_minutes": policy.audit.checkpoint_interval_minutes,
    }


def run_check(args: argparse.Namespace) -> int:
    summary = summarize(_load(args.file))
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    print(f"{summary['file']}: valid")
    rules = summary["rules"]
    rows = {
        "name": summary["name"],
        "version": summary["version"],
        "mode": summary["mode"],
        "rules": f"{rules['total']} ({rules['allow']} allow, {rules['approve']} approve, "
        f"{rules['deny']} deny)",
        "approvers": f"{summary['required_approvers']} distinct, requests expire after "
        f"{summary['pending_ttl_minutes']} min, approval valid {summary['approval_validity']}",
        "audit": f"kept {summary['audit_retention_days']} days, checkpoint every "
        f"{summary['checkpoint_interval_minutes']} min",
    }
    for key, value in rows.items():
        print(f"  {key:<10} {value}")
    return EXIT_OK


def _read_cells(spec: str) -> list[str]:
    try:
        text = sys.stdin.read() if spec == "-" else Path(spec).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CLIError(f"cannot read {spec}: {error}", EXIT_USAGE) from None
    if spec.endswith(".ipynb"):
        try:
            notebook = json.loads(text)
            return [
                "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                for c in notebook["cells"]
                if c.get("cell_type") == "code"
            ]
        except (ValueError, KeyError, TypeError) as error:
            raise CLIError(f"{spec} is not a readable notebook: {error}", EXIT_USAGE) from None
    return [text]


def run_explain(args: argparse.Namespace) -> int:
    from governed_kernel.policy.classifier import Classifier
    from governed_kernel.policy.model import strictness

    policy = _load(args.policy)
    classifier = Classifier(policy)
    cells = _read_cells(args.cell)
    decisions = [classifier.classify(cell) for cell in cells]
    notebook = args.cell.endswith(".ipynb")
    if args.json:
        if not notebook:
            print(json.dumps(decisions[0].to_dict(), indent=2, ensure_ascii=False))
        else:
            overall = max((d.action for d in decisions), key=strictness, default="allow")
            rules = [{**f.to_dict(), "cell": index} for index, d in enumerate(decisions) for f in d.findings]
            print(
                json.dumps(
                    {
                        "decision": overall,
                        "mode": policy.mode,
                        "policy_version": policy.version,
                        "rules": rules,
                        "cells": [d.to_dict() for d in decisions],
                    },
                    indent=2,
                    ensure_ascii=False,
                )
            )
        return EXIT_OK
    print(f"policy {policy.name} ({policy.version[:19]}), mode {policy.mode}")
    for index, decision in enumerate(decisions):
        prefix = f"cell {index}: " if notebook else ""
        print(f"{prefix}decision: {decision.action}")
        for finding in decision.findings:
            print(f"  {finding.span} {finding.action:<7} {finding.rule_id}: {finding.reason}")
        for note in decision.notes:
            print(f"  note: {note}")
    return EXIT_OK
