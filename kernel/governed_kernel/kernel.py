"""The governed IPython kernel.

The per-cell pipeline (classify, approve, run, record) hangs off this class; this module keeps
the kernel's identity (what ``kernel_info`` reports) in one place.
"""

from __future__ import annotations

from typing import Any

from ipykernel.ipkernel import IPythonKernel

from governed_kernel._version import __version__


class GovernedKernel(IPythonKernel):
    """An :class:`IPythonKernel` that reports itself as the governed kernel."""

    implementation = "governed_kernel"
    implementation_version = __version__
    banner = f"Python 3 (governed) — governed_kernel {__version__}"

    @property
    def kernel_info(self) -> dict[str, Any]:
        info: dict[str, Any] = super().kernel_info
        info["help_links"] = [
            *info.get("help_links", []),
            {"text": "Governed kernel", "url": "https://github.com/governed-kernel/governed-kernel#readme"},
        ]
        return info
