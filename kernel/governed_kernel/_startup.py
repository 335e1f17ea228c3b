"""Keep the kernel's start fast: import jsonschema without its optional ``rfc3987_syntax`` check.

``jsonschema`` imports ``rfc3987_syntax`` when it is installed (jupyter_events pulls it in), and that
module builds a grammar at import time: about 2 s of every kernel start on a small machine, for an
IRI format check the policy schema never uses. Importing jsonschema while that module is marked
unavailable skips it; the marker is removed afterwards, so user code can still import it.
Imported first by the kernel's entry point (:mod:`governed_kernel.__main__`).
"""

from __future__ import annotations

import sys


def import_jsonschema_quickly() -> None:
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        return
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]
    try:
        import jsonschema  # noqa: F401
    finally:
        del sys.modules["rfc3987_syntax"]


import_jsonschema_quickly()
