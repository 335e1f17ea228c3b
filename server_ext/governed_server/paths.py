"""Default locations of the governance store (resolved like JupyterHub resolves its db_url)."""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir

DB_URL_ENV = "GOVERNED_DB_URL"
STORE_DIR_NAME = "governance"
SQLITE_FILE_NAME = "governance.sqlite"


def default_store_dir() -> Path:
    """The folder of the embedded store: ``<jupyter data dir>/governance``."""
    return Path(jupyter_data_dir()) / STORE_DIR_NAME


def default_db_url() -> str:
    """``GOVERNED_DB_URL`` if set, else an SQLite file in the Jupyter data dir."""
    configured = os.environ.get(DB_URL_ENV)
    if configured:
        return configured
    return f"sqlite:///{default_store_dir() / SQLITE_FILE_NAME}"


def redact_db_url(url: str) -> str:
    """The URL without its password, safe for logs and API answers."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, location = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}" if ":" in credentials else f"{scheme}://{user}@{location}"
