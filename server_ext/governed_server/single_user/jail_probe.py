"""Whether this machine can jail kernels: one real trial of bubblewrap at server start.

``which bwrap`` is not enough: in many containers (Docker's default seccomp profile, mybinder,
Kubernetes pods without user namespaces) bwrap is installed but cannot create the namespaces. So
the trial runs ``bwrap`` with the jail's own namespaces and capability drop around ``true``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass

from governed_server.single_user.jail import BASE_MOUNTS, CORE_FLAGS

BUBBLEWRAP = "bubblewrap"
NONE = "none"
TRIAL_TIMEOUT_S = 10.0
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
)


@dataclass(frozen=True)
class JailState:
    """What jails governed kernels on this server: ``bubblewrap`` (with the binary), or ``none``
    with the reason."""

    kind: str
    bwrap: str = ""
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.kind == BUBBLEWRAP

    def describe(self) -> str:
        """``bubblewrap``, or ``none: <reason>`` (as health and ``info`` report it)."""
        return self.kind if self.available else f"{NONE}: {self.reason}"


def disabled(reason: str) -> JailState:
    return JailState(NONE, reason=reason)


def probe(bwrap_path: str = "bwrap", *, timeout: float = TRIAL_TIMEOUT_S) -> JailState:
    """Run the trial jail once; the state says which jail kernels get, or why there is none."""
    if not sys.platform.startswith("linux"):
        return disabled(f"the kernel jail needs Linux namespaces (this is {sys.platform})")
    found = shutil.which(bwrap_path)
    if found is None:
        return disabled(f"bubblewrap is not installed ({bwrap_path!r} not found)")
    true = shutil.which("true") or "/bin/true"
    argv = [found, *CORE_FLAGS, *BASE_MOUNTS, "--tmpfs", "/tmp", "--", true]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return disabled(f"the bubblewrap trial did not finish in {timeout:g} s")
    except OSError as error:
        return disabled(f"{found} could not run: {error.strerror or error}")
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {result.returncode}"
        return disabled(f"bubblewrap cannot create the jail's namespaces here ({detail})")
    return JailState(BUBBLEWRAP, bwrap=found)
