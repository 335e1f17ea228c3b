"""What an execute request asks the kernel to run, as governance reads it.

Shared by the kernel and the server's inbound guard, so that both classify, hash and record the
same text. An execute request runs its ``code`` and then evaluates each of its
``user_expressions``: both are code, so both are classified, and an approval binds to both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

GOVERNED_METADATA = "governed"
"""Key of what the server's inbound guard adds to an execute request's metadata (see
``governed_server.single_user.inbound``): ``{"approval": <request id>, "recorded": <seq>}``. The server
overwrites whatever a client put there."""

EXPRESSIONS_MARK = "# user_expressions of this request:"


def expressions_of(user_expressions: Any) -> list[str]:
    """The expressions' source texts (a malformed value counts as its text: nothing is skipped)."""
    if not user_expressions:
        return []
    if isinstance(user_expressions, Mapping):
        return [str(value) for value in user_expressions.values()]
    return [str(user_expressions)]


def governed_source(code: str, user_expressions: Any = None) -> str:
    """The code the request runs: the cell, then each user expression on a line of its own."""
    expressions = expressions_of(user_expressions)
    if not expressions:
        return code
    lines = [code.rstrip("\n"), EXPRESSIONS_MARK]
    lines += [f"({expression})" for expression in expressions]
    return "\n".join(lines)


def source_hash(source: str) -> str:
    """What an approval binds to: the SHA-256 of the governed source."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
