"""Ids the server makes, drawn so that masking never changes them.

Ids are in audit records (a kernel's id in every record of its cells, an approval's id in the records
of the cell it let run) and are the keys auditors query by; the service masks every record, so an id
holding a digit run that passes for a card number (a random UUID does, rarely: its last group is
twelve hex characters) would be stored masked and no longer match. Every id the server makes is
therefore drawn again until the masker leaves it alone, as the kernel does for comm ids
(:mod:`governed_kernel.comm_ids`): kernel ids (the kernel manager's hook), batch kernel ids
(``batch-<uuid>``, for ``jupyter governance run`` and ``POST /credentials``) and approval request ids.
"""

from __future__ import annotations

import uuid
from typing import Any

from governed_kernel.comm_ids import unmasked_id
from governed_kernel.masking import Masker

BATCH_PREFIX = "batch-"


def new_uuid(masker: Masker) -> str:
    """A random UUID (text form) that the masker leaves alone."""
    return unmasked_id(masker, lambda: str(uuid.uuid4()))


def new_batch_kernel_id(masker: Masker) -> str:
    """The id of a kernel started outside a Jupyter server (a batch run), never masked."""
    return BATCH_PREFIX + new_uuid(masker)


def install(kernel_manager: Any, masker: Masker) -> None:
    """Make ``kernel_manager.new_kernel_id`` (jupyter_client's hook for it) skip card-like UUIDs."""
    if getattr(kernel_manager.new_kernel_id, "governed_ids", False):
        return

    def new_kernel_id(**_kwargs: Any) -> str:
        return new_uuid(masker)

    new_kernel_id.governed_ids = True  # type: ignore[attr-defined]
    kernel_manager.new_kernel_id = new_kernel_id
