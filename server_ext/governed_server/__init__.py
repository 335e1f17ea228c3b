"""The governed kernel's Jupyter server extension: governance API, store and data-path guard."""

from __future__ import annotations

from typing import Any

from governed_kernel._version import __version__

EXTENSION_NAME = "governed_server"
LABEXTENSION_NAME = "@governed-kernel/labextension"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from governed_server.app import GovernedServerApp

    return [{"module": "governed_server", "app": GovernedServerApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]


__all__ = ["EXTENSION_NAME", "LABEXTENSION_NAME", "__version__"]
