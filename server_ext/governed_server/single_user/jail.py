"""The kernel jail's layout as a bubblewrap command line: what the kernel sees, may write, and inherits.

Pure (no Jupyter imports, no server): a :class:`JailLayout` says which paths to hide, which to keep
read-only and which the kernel may write; :meth:`JailLayout.bwrap_argv` turns it into ``bwrap``
arguments and :func:`jail_environment` filters an environment through an allow list. The server
side (:mod:`governed_server.single_user.kernel_jail`) decides the lists from the server's settings; tests call
this module directly.

The layout, in the order bubblewrap applies it:

1. the whole filesystem read-only (``--ro-bind / /``), a new ``/proc`` for a new pid namespace,
   a minimal ``/dev``, and private empty ``/tmp``, ``/var/tmp``, ``/dev/shm``;
2. then every listed path, parents before children (the most specific path wins): writable
   binds, read-only binds, hidden paths (an empty read-only tmpfs over a directory, ``/dev/null``
   over a file); at one path a hidden entry wins over a read-only one, which wins over a writable one;
3. last the kernel's own directory (connection file, IPC sockets, audit buffer), writable, even
   inside a hidden directory.

A mount namespace hides paths only together with a pid namespace that has its own ``/proc`` and
no capabilities: otherwise ``/proc/<server pid>/root/...`` reaches the server's view of the
filesystem and ``umount`` removes what covers a secret (root in particular can). So the flags in
:data:`CORE_FLAGS` are always there.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

CORE_FLAGS: tuple[str, ...] = (
    "--die-with-parent",  # the kernel never outlives the server
    "--unshare-pid",  # its own pid namespace: the server's /proc/<pid> is not there
    "--unshare-ipc",
    "--unshare-cgroup-try",
    "--cap-drop",
    "ALL",  # no mount, umount, setns, ptrace, even for root
)
"""Namespaces and capabilities of every jail (and of the availability trial)."""

BASE_MOUNTS: tuple[str, ...] = ("--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev")
PRIVATE_DIRS: tuple[str, ...] = ("/tmp", "/var/tmp", "/dev/shm")
"""Empty writable tmpfs per kernel: temporary files work, and nothing the host keeps there shows."""

UNSET_IN_JAIL: tuple[str, ...] = ("JPY_PARENT_PID",)
"""Set by jupyter_client's launcher after the environment is built: a pid from outside the pid
namespace, which makes ipykernel's parent poller think its parent died (its parent is pid 1)."""

NEVER_PASSED: frozenset[str] = frozenset(
    {
        "GOVERNED_DB_URL",
        "GOVERNED_API_TOKEN",
        "JUPYTER_TOKEN",
        "JUPYTER_PASSWORD",
        "JPY_API_TOKEN",
        "JUPYTERHUB_API_TOKEN",
        "JUPYTERHUB_CLIENT_SECRET",
        "JUPYTERHUB_COOKIE_SECRET",
    }
)
"""Server secrets no allow list can pass on (a configured pattern that matches them is ignored)."""


class MountKind(IntEnum):
    """At the same path, a higher kind is applied later and wins."""

    PRIVATE = 0
    PIN = 1
    """A directory bound onto itself, writable, changing nothing in the view: a mount point cannot
    be renamed or removed, so a cell cannot move a protected path away (``mv ~/.local ~/x``) and
    put files of its own where the server, or the next kernel, looks for them."""
    WRITABLE = 2
    READONLY = 3
    HIDDEN = 4


@dataclass(frozen=True)
class Mount:
    kind: MountKind
    path: Path

    @property
    def depth(self) -> int:
        return len(self.path.parts)


@dataclass(frozen=True)
class JailLayout:
    """What one kernel's mount namespace holds; paths are made absolute and symlink-free."""

    kernel_dir: Path
    """Writable and always visible: the connection file, the IPC sockets, the audit buffer."""
    workdir: Path
    hidden: tuple[Path, ...] = ()
    readonly: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    private: tuple[str, ...] = field(default=PRIVATE_DIRS)

    def mounts(self) -> list[Mount]:
        """Every mount after the base ones, in the order bubblewrap must apply them."""
        chosen: dict[Path, Mount] = {}
        groups = (
            (MountKind.PRIVATE, [Path(p) for p in self.private]),
            (MountKind.WRITABLE, list(self.writable)),
            (MountKind.READONLY, list(self.readonly)),
            (MountKind.HIDDEN, list(self.hidden)),
        )
        for kind, paths in groups:
            for raw in paths:
                path = canonical(raw)
                if not _mountable(path, kind):
                    continue
                previous = chosen.get(path)
                if previous is None or previous.kind < kind:
                    chosen[path] = Mount(kind, path)
        ordered: list[Mount] = []
        for mount in sorted(chosen.values(), key=lambda m: (m.depth, m.kind, str(m.path))):
            if not _redundant(mount, ordered):
                ordered.append(mount)
        ordered.append(Mount(MountKind.WRITABLE, canonical(self.kernel_dir)))
        return _pinned(ordered)

    def bwrap_argv(self, bwrap: str, command: Sequence[str]) -> list[str]:
        """``bwrap`` with this layout, running ``command`` in :attr:`workdir`."""
        argv = [bwrap, *CORE_FLAGS, *BASE_MOUNTS]
        remount: list[str] = []
        for mount in self.mounts():
            target = str(mount.path)
            if mount.kind is MountKind.PRIVATE:
                argv += ["--tmpfs", target]
            elif mount.kind in (MountKind.WRITABLE, MountKind.PIN):
                argv += ["--bind", target, target]
            elif mount.kind is MountKind.READONLY:
                argv += ["--ro-bind", target, target]
            elif mount.path.is_dir():
                argv += ["--tmpfs", target]
                remount += ["--remount-ro", target]  # after the binds made inside it
            else:
                argv += ["--ro-bind", os.devnull, target]
        argv += remount
        for name in UNSET_IN_JAIL:
            argv += ["--unsetenv", name]
        argv += ["--chdir", str(canonical(self.workdir)), "--", *command]
        return argv

    def shows(self, path: Path | str) -> bool:
        """Whether the host's ``path`` is visible in the jail (the last mount over it is neither a
        hidden one nor a private empty folder)."""
        over = self._last_over(path)
        return over is None or over.kind not in (MountKind.HIDDEN, MountKind.PRIVATE)

    def writes(self, path: Path | str) -> bool:
        """Whether the kernel may write ``path`` (the last mount over it is a writable one)."""
        over = self._last_over(path)
        return over is not None and over.kind in (MountKind.WRITABLE, MountKind.PIN, MountKind.PRIVATE)

    def _last_over(self, path: Path | str) -> Mount | None:
        return _last_over(canonical(path), self.mounts())


def _redundant(mount: Mount, applied: list[Mount]) -> bool:
    """Whether what is already mounted over ``mount.path`` shows it the same way (a read-only path
    under the read-only base, a file inside a hidden directory...): fewer mounts, same view.
    Writable areas are always mounted (a mount point cannot be renamed away)."""
    if mount.kind in (MountKind.PRIVATE, MountKind.WRITABLE):  # a writable area stays a mount point
        return False
    over = _last_over(mount.path, applied)
    if over is None:
        return mount.kind is MountKind.READONLY
    if over.kind is MountKind.PRIVATE:  # an empty tmpfs: nothing of the host there to hide
        return mount.kind is MountKind.HIDDEN
    return over.kind is mount.kind


def _pinned(ordered: list[Mount]) -> list[Mount]:
    """``ordered`` with a pin on every directory between a writable area and a mount inside it
    (each mount is itself a mount point already); pins go before what they hold."""
    taken = {mount.path for mount in ordered}
    pins: dict[Path, Mount] = {}
    for index, mount in enumerate(ordered):
        area = _last_over(mount.path, ordered[:index])
        if area is None or area.kind not in (MountKind.WRITABLE, MountKind.PIN):
            continue
        for parent in mount.path.parents:
            if parent == area.path:
                break
            if parent not in taken:
                pins[parent] = Mount(MountKind.PIN, parent)
    if not pins:
        return ordered
    final: list[Mount] = []
    for mount in ordered:  # each pin right before the first mount it holds (its parents first)
        for pin in sorted((p for p in pins.values() if p.path in mount.path.parents), key=lambda p: p.depth):
            if pin not in final:
                final.append(pin)
        final.append(mount)
    return final


def _last_over(target: Path, mounts: Iterable[Mount]) -> Mount | None:
    """Of ``mounts`` (in the order applied), the last one at ``target`` or above it: it decides what
    the jail shows there (None: the read-only base)."""
    last: Mount | None = None
    for mount in mounts:
        if target == mount.path or mount.path in target.parents:
            last = mount
    return last


def canonical(path: Path | str) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def _mountable(path: Path, kind: MountKind) -> bool:
    """Real paths outside /proc and /dev (the jail's own); never the root itself (the base mount)."""
    if path == Path("/"):
        return False
    if kind is MountKind.PRIVATE:
        return path.is_dir()
    if path.parts[1:2] in (("proc",), ("dev",)):
        return False
    return path.exists()


def python_isolated(command: Sequence[str]) -> list[str]:
    """``command`` with ``-I`` after the interpreter (no ``PYTHON*`` variables, no user site, no
    script directory on ``sys.path``), when it starts Python; unchanged otherwise."""
    argv = list(command)
    if argv and Path(argv[0]).name.startswith("python") and "-I" not in argv[1:2]:
        argv.insert(1, "-I")
    return argv


def jail_environment(
    environ: Mapping[str, str], allowed: Iterable[str], *, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables of ``environ`` whose names match ``allowed`` (exact names, or patterns with
    ``*``), never one of :data:`NEVER_PASSED`; then ``overrides``."""
    exact: set[str] = set()
    patterns: list[str] = []
    for name in allowed:
        if "*" in name:
            patterns.append(name)
        else:
            exact.add(name)
    kept = {
        name: value
        for name, value in environ.items()
        if name not in NEVER_PASSED
        and (name in exact or any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns))
    }
    kept.update(overrides or {})
    return kept
