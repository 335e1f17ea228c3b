"""Keep the kernel's start fast: jsonschema without its optional format checkers, ipykernel
without debugpy.

``jsonschema`` imports the packages behind its ``format`` checks when they are installed
(jupyter_events pulls them in): ``rfc3987_syntax`` builds a grammar at import time (about 2 s of
every kernel start on a small machine), and the others (arrow via isoduration, idna, webcolors…)
add another ~60 ms. The policy schema uses no ``format`` and nothing here validates formats.

ipykernel imports debugpy (and pydevd: ~60 ms) only to learn whether it could offer the debugger.
The governed kernel never offers it (it would show unmasked values), so ipykernel's debugger module
is imported while debugpy is marked unavailable: ipykernel then sets no debugger up and pydevd is
never loaded into the kernel.

Both imports run while the modules are marked unavailable (``None`` in ``sys.modules``); the markers
are removed afterwards, so user code can still import them. Imported first by the kernel's entry
point (:mod:`governed_kernel.__main__`).
"""

from __future__ import annotations

import importlib
import sys

FORMAT_CHECKER_MODULES = (
    "rfc3987_syntax", "rfc3987", "rfc3986_validator", "rfc3339_validator", "isoduration", "fqdn",
    "idna", "jsonpointer", "uri_template", "webcolors",
)  # fmt: skip
"""What ``jsonschema._format`` tries to import for its optional checks."""


def import_without(module: str, unavailable: tuple[str, ...]) -> None:
    """Import ``module`` while the ``unavailable`` modules (not yet imported) cannot be imported."""
    if module in sys.modules:
        return
    hidden = [name for name in unavailable if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        importlib.import_module(module)
    finally:
        for name in hidden:
            del sys.modules[name]


import_without("jsonschema", FORMAT_CHECKER_MODULES)
import_without("ipykernel.debugger", ("debugpy",))
