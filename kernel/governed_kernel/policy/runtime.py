"""Runtime enforcement with PEP 578 audit hooks, while a cell that was not approved runs.

Static rules cannot see ``getattr(__import__("o" + "s"), "sys" + "tem")("id")`` or ``exec`` of decoded
text; the effects they produce (a process, a connection, a native library, a file write, a new audit
hook) are audited by CPython, and this guard refuses them with a :class:`PermissionError` that names
the policy rule.

Scope, so that the kernel's own machinery is never hit: the guard applies only between
:meth:`RuntimeGuard.start` and :meth:`RuntimeGuard.stop` (around the cell), only on the thread that
started it and on threads born while it was active (user code started them; they stay guarded until
they end). Kernel threads (heartbeat, IOPub, history, control) exist before the cell and are never
guarded. An audit hook cannot be removed, so one process-wide hook is installed once and returns at
the first check when no guard is active.

This is a guard against accidents and casual evasion, not a security boundary: code in the same
process can reach the guard's objects. The out-of-process data-path guard and the audit are the boundary.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from governed_kernel.policy.model import Policy, Rule

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_KERNEL_THREAD_MODULES = ("ipykernel", "zmq", "jupyter_client", "IPython", "governed_kernel", "tornado")


@dataclass(frozen=True)
class Violation:
    """What a guarded cell tried, which rule refused it, and whether it was refused (enforce mode)."""

    rule_id: str
    kind: str
    event: str
    detail: str
    enforced: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "kind": self.kind,
            "event": self.event,
            "detail": self.detail,
            "enforced": self.enforced,
        }


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(_text(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _HostRules:
    """The network allow-list: host globs, IP addresses and networks; names are resolved once."""

    def __init__(self, entries: tuple[str, ...]) -> None:
        self.names: list[str] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.append(entry.lower())
        self.resolved: set[str] = set()

    def name_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if any(fnmatch.fnmatchcase(host, pattern) for pattern in self.names):
            return True
        return self.address_allowed(host)

    def address_allowed(self, host: str) -> bool:
        if host in self.resolved:
            return True
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def learn(self, host: str) -> None:
        """Remember the addresses of an allowed name, so connecting to them is allowed too."""
        try:
            for info in socket.getaddrinfo(host, None):
                self.resolved.add(str(info[4][0]))
        except OSError:
            pass


class RuntimeGuard:
    """Enforces a policy's runtime rules while started. One guard per kernel; start/stop per cell."""

    def __init__(
        self,
        policy: Policy,
        *,
        on_violation: Callable[[Violation], None] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.policy = policy
        self.on_violation = on_violation
        self.enforce = policy.mode == "enforce"
        self.rules: dict[str, Rule] = {
            kind: rule for kind, rule in policy.runtime_rules().items() if rule.action != "allow"
        }
        self.hosts = _HostRules(policy.runtime.network_allow_hosts)
        base = os.path.realpath(cwd or os.getcwd())
        self.write_roots = tuple(self._expand(entry, base) for entry in policy.runtime.write_allow_paths)
        self.violations: list[Violation] = []
        self.exempt: set[int] = set()
        self._owner: int | None = None
        self._baseline: frozenset[int] = frozenset()
        self._parents: dict[str, str] = {}
        self._verdicts: dict[str, bool] = {}

    @staticmethod
    def _expand(entry: str, cwd: str) -> str:
        text = entry.replace("{cwd}", cwd).replace("{tmp}", tempfile.gettempdir())
        return os.path.realpath(os.path.expanduser(text))

    # -- activation ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Guard the calling thread (and threads it starts) until :meth:`stop`."""
        _install()
        if _STATE.active is not None and _STATE.active is not self:
            raise RuntimeError("another runtime guard is already active")
        _STATE.prune()
        self._parents.clear()
        self._verdicts.clear()
        self._baseline = frozenset(thread.ident for thread in threading.enumerate() if thread.ident)
        self._owner = threading.get_ident()
        _STATE.active = self

    def stop(self) -> None:
        """Stop guarding; threads the cell started stay guarded until they end."""
        if _STATE.active is not self:
            return
        for thread in threading.enumerate():
            ident = thread.ident
            if ident and ident not in self._baseline and ident != self._owner and not self._is_kernel(thread):
                _STATE.lingering[ident] = self
        _STATE.active = None
        self._owner = None

    @contextmanager
    def activate(self) -> Iterator[RuntimeGuard]:
        """``with guard.activate(): run_the_cell()``."""
        self.start()
        try:
            yield self
        finally:
            self.stop()

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """For the kernel's own code that must run on the cell's thread while the cell runs."""
        _LOCAL.busy = True
        try:
            yield
        finally:
            _LOCAL.busy = False

    def exempt_thread(self, ident: int | None = None) -> None:
        """Never guard this thread (kernel machinery started while a cell runs)."""
        self.exempt.add(ident if ident is not None else threading.get_ident())

    @staticmethod
    def _is_kernel(thread: threading.Thread) -> bool:
        return type(thread).__module__.startswith(_KERNEL_THREAD_MODULES)

    def guards_current_thread(self) -> bool:
        ident = threading.get_ident()
        if ident == self._owner:
            return True
        if ident in self.exempt:
            return False
        if self._owner is not None and ident not in self._baseline:
            return not self._is_kernel(threading.current_thread())
        return False

    # -- checks ----------------------------------------------------------------------------------------------
    def check(self, event: str, args: tuple[Any, ...]) -> None:
        kind, describe = _EVENTS[event]
        rule = self.rules.get(kind)
        if rule is None:
            return
        detail = describe(self, args)
        if detail is None:
            return
        violation = Violation(rule.id, kind, event, detail, self.enforce)
        self.violations.append(violation)
        del self.violations[:-100]
        if self.on_violation is not None:
            try:
                self.on_violation(violation)
            except Exception:  # recording failed: refuse rather than let it through unrecorded
                if not self.enforce:
                    raise PermissionError(f"governed kernel: could not record {detail}; refused") from None
        if self.enforce:
            pci = ", ".join(rule.pci)
            raise PermissionError(
                f"governed kernel: {detail} is not allowed in a cell that was not approved — rule "
                f"'{rule.id}' (PCI DSS {pci}): {rule.description} Request approval to run this cell."
            )

    def _network(self, args: tuple[Any, ...], event: str) -> str | None:
        if event in (
            "socket.getaddrinfo",
            "socket.gethostbyname",
            "socket.gethostbyname_ex",
            "socket.gethostbyaddr",
        ):
            host = args[0] if args else None
            if host in (None, b"", ""):
                return None
            name = _text(host)
            if self.hosts.name_allowed(name):
                if not self.hosts.address_allowed(name):
                    self.hosts.learn(name)
                return None
            return f"looking up host {_short(name)}"
        address = args[1] if len(args) > 1 else None
        if isinstance(address, tuple) and address:
            host = _text(address[0])
            if self.hosts.address_allowed(host) or self.hosts.name_allowed(host):
                return None
            port = f":{address[1]}" if len(address) > 1 else ""
            return f"connecting to {_short(host)}{port}"
        if isinstance(address, (str, bytes)):
            path = _text(address)
            return None if self.hosts.name_allowed(path) else f"connecting to socket {_short(path)}"
        return None

    def _write_allowed(self, path: Any) -> bool:
        if isinstance(path, int) or path is None:
            return True
        text = _text(path)
        key = text if os.path.isabs(text) else os.getcwd() + os.sep + text
        known = self._verdicts.get(key)
        if known is not None:
            return known
        full = self._resolve(text)
        allowed = full == os.devnull or any(
            full == root or full.startswith(root.rstrip(os.sep) + os.sep) for root in self.write_roots
        )
        if len(self._verdicts) > 1024:
            self._verdicts.clear()
        self._verdicts[key] = allowed
        return allowed

    def _resolve(self, path: str) -> str:
        """``realpath`` with the parent folder cached per cell: one ``lstat``, not one per component."""
        absolute = os.path.abspath(path)
        if os.path.islink(absolute):
            return os.path.realpath(absolute)
        parent, name = os.path.split(absolute)
        real_parent = self._parents.get(parent)
        if real_parent is None:
            if len(self._parents) > 256:
                self._parents.clear()
            real_parent = self._parents[parent] = os.path.realpath(parent)
        return os.path.join(real_parent, name)

    def _file(self, event: str, args: tuple[Any, ...]) -> str | None:
        if event == "open":
            path, mode, flags = [*args, None, None, 0][:3]
            writes = (
                any(c in mode for c in "wax+")
                if isinstance(mode, str)
                else isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
            )
            if not writes or self._write_allowed(path):
                return None
            return f"writing file {_short(path)}"
        # The tree changes (a file may become a symlink): forget cached verdicts.
        self._verdicts.clear()
        self._parents.clear()
        paths = [args[0]] if args else []
        if event in ("os.rename", "os.symlink", "os.link") and len(args) > 1:
            paths = [args[0], args[1]] if event == "os.rename" else [args[1]]
        for path in paths:
            if not self._write_allowed(path):
                return f"{event.split('.')[-1]} on {_short(path)}"
        return None


def _process(guard: RuntimeGuard, args: tuple[Any, ...], event: str) -> str:
    if event == "subprocess.Popen" and len(args) > 1:
        return f"starting a process ({_short(args[1] if args[1] is not None else args[0])})"
    if event == "os.system" and args:
        return f"running a shell command ({_short(args[0])})"
    if event in ("os.exec", "os.posix_spawn") and args:
        return f"starting a process ({_short(args[0])})"
    if event == "os.spawn" and len(args) > 1:
        return f"starting a process ({_short(args[1])})"
    return f"creating a process ({event})"


def _native(guard: RuntimeGuard, args: tuple[Any, ...], event: str) -> str | None:
    if event == "ctypes.dlopen":
        return None if not args or args[0] is None else f"loading native library {_short(args[0])}"
    if event == "ctypes.dlsym":
        return f"looking up native symbol {_short(args[1]) if len(args) > 1 else ''}".rstrip()
    return "calling native code through ctypes"


def _make(
    kind: str, function: Callable[[RuntimeGuard, tuple[Any, ...], str], str | None], event: str
) -> tuple[str, Callable[[RuntimeGuard, tuple[Any, ...]], str | None]]:
    return kind, lambda guard, args: function(guard, args, event)


_EVENTS: dict[str, tuple[str, Callable[[RuntimeGuard, tuple[Any, ...]], str | None]]] = {}
for _event in (
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "os.fork",
    "os.forkpty",
    "os.startfile",
):
    _EVENTS[_event] = _make("process", _process, _event)
for _event in ("ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function"):
    _EVENTS[_event] = _make("native_code", _native, _event)
for _event in (
    "socket.connect",
    "socket.sendto",
    "socket.sendmsg",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
):
    _EVENTS[_event] = _make("network", lambda g, a, e: g._network(a, e), _event)
for _event in (
    "open",
    "os.remove",
    "os.rename",
    "os.rmdir",
    "os.mkdir",
    "os.truncate",
    "os.symlink",
    "os.link",
    "os.chmod",
    "os.chown",
    "shutil.rmtree",
):
    _EVENTS[_event] = _make("file_write", lambda g, a, e: g._file(e, a), _event)
_EVENTS["sys.addaudithook"] = ("audit_hook", lambda guard, args: "adding an audit hook")


class _State:
    def __init__(self) -> None:
        self.active: RuntimeGuard | None = None
        self.lingering: dict[int, RuntimeGuard] = {}
        self.installed = False

    def prune(self) -> None:
        if self.lingering:
            alive = {thread.ident for thread in threading.enumerate()}
            for ident in [i for i in self.lingering if i not in alive]:
                del self.lingering[ident]


_STATE = _State()
_LOCAL = threading.local()
_INSTALL_LOCK = threading.Lock()


def _hook(event: str, args: tuple[Any, ...]) -> None:
    state = _STATE
    if state.active is None and not state.lingering:
        return
    if event not in _EVENTS:
        return
    if getattr(_LOCAL, "busy", False):
        return
    guard = state.active
    if guard is None or not guard.guards_current_thread():
        guard = state.lingering.get(threading.get_ident())
        if guard is None:
            return
    _LOCAL.busy = True
    try:
        guard.check(event, args)
    finally:
        _LOCAL.busy = False


def _install() -> None:
    with _INSTALL_LOCK:
        if not _STATE.installed:
            sys.addaudithook(_hook)
            _STATE.installed = True


def attach_to_shell(shell: Any, guard: RuntimeGuard) -> Callable[[], None]:
    """Guard every cell an IPython shell runs (pre_run_cell → start, post_run_cell → stop).

    For tests and simple deployments; the governed kernel starts the guard only for cells that were
    not approved. Returns a function that detaches the guard.
    """

    def before(*_: Any) -> None:
        guard.start()

    def after(*_: Any) -> None:
        guard.stop()

    shell.events.register("pre_run_cell", before)
    shell.events.register("post_run_cell", after)

    def detach() -> None:
        guard.stop()
        shell.events.unregister("pre_run_cell", before)
        shell.events.unregister("post_run_cell", after)

    return detach
