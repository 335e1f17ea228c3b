"""The governed server's hardened defaults, and what weakens them.

A plain ``jupyter lab`` offers routes around every control: another kernel (``python3``) runs
anything unmasked and unrecorded, a terminal runs anything, a kernelspec in the user's own data dir
named ``governed-python`` can start a plain kernel under the governed name, and a replaced websocket
class or gateway mode takes kernel traffic past the server's guards. So the governance extension:

- offers only the governed kernel (``KernelSpecManager.allowed_kernelspecs``, no native kernel), and
  always the installed ``governed-python``, whatever shadows it in a user-writable kernel dir;
- refuses terminals (their routes answer 403) — the package's server config also turns them off;
- installs its websocket connection class over another one configured, and refuses to start kernels
  in gateway mode (where kernel traffic bypasses this server).

Each is relaxed only by an explicit ``GovernedServerApp`` setting; what is relaxed is listed as
*weakened* by the health endpoint and ``jupyter governance info`` (which exits 1 in enforce mode).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from governed_kernel import KERNEL_NAME
from governed_server.single_user.patching import original
from governed_server.single_user.routes import walk

log = logging.getLogger("governed_server")
TERMINAL_PACKAGE = "jupyter_server_terminals"
KERNEL_REFUSED = (
    "kernel {name!r} is refused: only the governed kernel (governed-python) starts on a governed server, "
    "other kernels run with no policy, masking or record. An administrator can allow them with "
    "GovernedServerApp.allow_ungoverned_kernels"
)
TERMINALS_REFUSED = (
    "terminals are off on a governed server: a terminal runs commands with no policy, masking or record. "
    "An administrator can allow them with GovernedServerApp.allow_terminals"
)


@dataclass
class Hardening:
    """What is in effect (``state``, shown by health and info) and what weakens it (``weakened``)."""

    state: dict[str, str] = field(default_factory=dict)
    weakened: list[str] = field(default_factory=list)

    def note(self, key: str, value: str, *, weak: str | None = None) -> None:
        self.state[key] = value
        if weak is not None:
            self.weakened.append(weak)
            log.warning("governed_server: %s", weak)


def installed_kernelspec_dir() -> Path | None:
    """The ``governed-python`` kernelspec this installation ships (in the environment's prefix)."""
    for base in (Path(sys.prefix), Path(sys.base_prefix)):
        candidate = base / "share" / "jupyter" / "kernels" / KERNEL_NAME
        if (candidate / "kernel.json").is_file():
            return candidate
    return None


def restrict_kernels(kernel_spec_manager: Any, hardening: Hardening, *, allow_ungoverned: bool) -> None:
    """Only the governed kernel, and its installed kernelspec (see the module)."""
    if allow_ungoverned:
        weak = "kernels other than governed-python can start (GovernedServerApp.allow_ungoverned_kernels)"
        hardening.note("kernels", "any installed kernel", weak=weak)
    else:
        kernel_spec_manager.allowed_kernelspecs = {KERNEL_NAME}  # what is listed
        kernel_spec_manager.ensure_native_kernel = False
        hardening.note("kernels", "governed-python only")
    trusted = installed_kernelspec_dir()
    if trusted is None:
        hardening.note("kernelspec", "as found (no installed governed-python kernelspec in this environment)")
    else:
        found = kernel_spec_manager.find_kernel_specs().get(KERNEL_NAME)
        if found and Path(found).resolve() != trusted.resolve():
            log.warning("governed_server: a kernelspec %s in %s shadows the installed one; the installed "
                        "one %s is used", KERNEL_NAME, found, trusted)  # fmt: skip
        # The installed kernels' folder first, for listings too.
        home = str(trusted.parent)
        kernel_spec_manager.kernel_dirs = [home, *(d for d in kernel_spec_manager.kernel_dirs if d != home)]
        hardening.note("kernelspec", str(trusted))
    guard_lookups(kernel_spec_manager, trusted, allow_ungoverned=allow_ungoverned)


def guard_lookups(kernel_spec_manager: Any, trusted: Path | None, *, allow_ungoverned: bool) -> None:
    """What is started: ``governed-python`` always from ``trusted`` (a kernelspec of that name in a
    user-writable kernel dir would otherwise win and start a plain kernel), and no other kernel
    unless allowed (jupyter_client's ``allowed_kernelspecs`` filters listings, not lookups)."""
    from jupyter_client.kernelspec import KernelSpec

    lookup = original(kernel_spec_manager, "get_kernel_spec")
    if getattr(lookup, "guarded", False):
        return

    def get_kernel_spec(kernel_name: str, *args: Any, **kwargs: Any) -> Any:
        if kernel_name == KERNEL_NAME and trusted is not None:
            return KernelSpec.from_resource_dir(str(trusted))
        if kernel_name != KERNEL_NAME and not allow_ungoverned:
            raise KernelRefused(kernel_name)
        return lookup(kernel_name, *args, **kwargs)

    get_kernel_spec.guarded = True  # type: ignore[attr-defined]
    kernel_spec_manager.get_kernel_spec = get_kernel_spec


class KernelRefused(web.HTTPError, KeyError):
    """A kernel other than governed-python was asked for: 403 with what to do (a ``KeyError`` like
    jupyter_client's ``NoSuchKernel``, for callers that look kernels up)."""

    def __init__(self, kernel_name: str) -> None:
        super().__init__(403, KERNEL_REFUSED.format(name=kernel_name))
        self.kernel_name = kernel_name


class TerminalsRefused(JupyterHandler):
    """Stands in for every terminal route (REST and websocket) while terminals are not allowed."""

    def initialize(self, **_kwargs: Any) -> None:
        """Whatever the terminal route was given (its extension's name...) is not needed."""

    def prepare(self) -> None:  # type: ignore[override]
        raise web.HTTPError(403, TERMINALS_REFUSED)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish({"message": TERMINALS_REFUSED, "status": status_code})


def refuse_terminals(web_app: Any) -> int:
    """Replace the handler of every terminal route (and tell JupyterLab there are none, so it offers
    no terminal); the number of routes refused."""
    web_app.settings["terminals_available"] = False
    refused = 0
    for rule, route in walk(web_app.default_router):
        if route.handler.__module__.startswith(TERMINAL_PACKAGE) and route.handler is not TerminalsRefused:
            rule.target = TerminalsRefused
            refused += 1
    return refused


def terminals_on(serverapp: Any) -> bool:
    return bool(getattr(serverapp, "terminals_enabled", False)) and any(
        route.handler.__module__.startswith(TERMINAL_PACKAGE)
        for _, route in walk(serverapp.web_app.default_router)
    )


def refuse_gateway_kernels(kernel_manager: Any) -> None:
    """In gateway mode kernels run elsewhere and their traffic bypasses this server's guards."""
    start = original(kernel_manager, "start_kernel")

    async def start_kernel(*_args: Any, **_kwargs: Any) -> str:
        raise web.HTTPError(
            403,
            "no kernel starts on a governed server in gateway mode: the gateway's kernels are not behind "
            "this server's guards (GovernedServerApp.allow_gateway accepts the risk)",
        )

    start_kernel.wrapped = start  # type: ignore[attr-defined]
    kernel_manager.start_kernel = start_kernel
