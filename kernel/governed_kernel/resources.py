"""Where the files shipped with the package live (policies bundled in the wheel or in a checkout)."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
POLICY_ENV = "GOVERNED_POLICY"
DEFAULT_POLICY_NAME = "pci-dss.yaml"


def policies_dir() -> Path:
    """The bundled ``policies/`` folder: inside the wheel, or at the top of a source checkout."""
    installed = _PACKAGE_DIR / "policies"
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent.parent / "policies"


def default_policy_path() -> Path:
    """The policy used when nothing is configured: ``GOVERNED_POLICY`` or the bundled PCI DSS policy."""
    configured = os.environ.get(POLICY_ENV)
    if configured:
        return Path(configured).expanduser()
    return policies_dir() / DEFAULT_POLICY_NAME
