"""Kernel ids that masking never changes.

A kernel's id is in every audit record of its cells (and is the key auditors query by); the service
masks every record, so an id holding a digit run that passes for a card number (a random UUID does,
rarely: its last group is twelve hex characters) would be stored masked, and the kernel's records
would no longer match its id. The server's kernel manager therefore draws ids the masker leaves
alone, as the kernel does for comm ids (:mod:`governed_kernel.comm_ids`); so do the ids of batch
kernels (``batch-<uuid>``), which ``jupyter governance run`` and ``POST /credentials`` make.
"""

from __future__ import annotations

import uuid
from typing import Any

from governed_kernel.comm_ids import unmasked_id
from governed_kernel.masking import Masker

BATCH_PREFIX = "batch-"


def new_batch_kernel_id(masker: Masker) -> str:
    """The id of a kernel started outside a Jupyter server (a batch run), never masked."""
    return BATCH_PREFIX + unmasked_id(masker, lambda: str(uuid.uuid4()))


def install(kernel_manager: Any, masker: Masker) -> None:
    """Make ``kernel_manager.new_kernel_id`` (jupyter_client's hook for it) skip card-like UUIDs."""
    if getattr(kernel_manager.new_kernel_id, "governed_ids", False):
        return

    def new_kernel_id(**_kwargs: Any) -> str:
        return unmasked_id(masker, lambda: str(uuid.uuid4()))

    new_kernel_id.governed_ids = True  # type: ignore[attr-defined]
    kernel_manager.new_kernel_id = new_kernel_id
