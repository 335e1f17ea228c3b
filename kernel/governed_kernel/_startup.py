"""Keep the kernel's start fast: import jsonschema without its optional format checkers.

``jsonschema`` imports the packages behind its ``format`` checks when they are installed
(jupyter_events pulls them in): ``rfc3987_syntax`` builds a grammar at import time (about 2 s of
every kernel start on a small machine), and the others (arrow via isoduration, idna, webcolors…)
add another ~60 ms. The policy schema uses no ``format`` and nothing here validates formats.
Importing jsonschema while those modules are marked unavailable skips them; the markers are removed
afterwards, so user code can still import them. Imported first by the kernel's entry point
(:mod:`governed_kernel.__main__`).
"""

from __future__ import annotations

import sys

FORMAT_CHECKER_MODULES = (
    "rfc3987_syntax", "rfc3987", "rfc3986_validator", "rfc3339_validator", "isoduration", "fqdn",
    "idna", "jsonpointer", "uri_template", "webcolors",
)  # fmt: skip
"""What ``jsonschema._format`` tries to import for its optional checks."""


def import_jsonschema_quickly() -> None:
    if "jsonschema" in sys.modules:
        return
    hidden = [name for name in FORMAT_CHECKER_MODULES if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import jsonschema  # noqa: F401
    finally:
        for name in hidden:
            del sys.modules[name]


import_jsonschema_quickly()
