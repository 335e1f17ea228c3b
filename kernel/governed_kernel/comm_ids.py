"""Comm ids that masking never changes.

A comm's id travels in the content of every ``comm_*`` message, which the kernel (and the server's
guard) mask like any other text. A random hex id holds a digit run that passes as a card number in
about 1 of 1,400 ids; masking it would break that comm (the frontend answers to an id the kernel does
not know) and the guard would report a false bypass. Comms the kernel creates therefore get ids the
masker leaves alone. An id chosen by user code or by the frontend is masked as usual (fail closed).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import comm

from governed_kernel.masking import Masker


def unmasked_id(masker: Masker, make: Callable[[], str] = lambda: uuid.uuid4().hex) -> str:
    """A random id from ``make`` (by default uuid4 hex, as ``comm`` makes them) that contains nothing
    ``masker`` finds. Also used by the server for kernel ids (they are in every audit record)."""
    while True:
        candidate = make()
        if not masker.find(candidate):
            return candidate


def install(masker: Callable[[], Masker]) -> None:
    """Make ``comm.create_comm`` (what ipywidgets and other libraries call) pick such ids."""
    create = comm.create_comm
    if getattr(create, "governed_ids", False):
        return

    def create_comm(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("comm_id"):
            kwargs["comm_id"] = unmasked_id(masker())
        return create(*args, **kwargs)

    create_comm.governed_ids = True  # type: ignore[attr-defined]
    comm.create_comm = create_comm
