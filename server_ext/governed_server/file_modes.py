"""Files of the governance service are the owner's alone: 0600 in 0700 directories.

The store (SQLite file and its ``-wal``/``-shm``), the audit signing key, the checkpoint directory
and its files, the demo's tokens: created so, and tightened (with a log line saying what changed)
when found wider at start. Another OS user then cannot read or change them; against code running as
the same user (a kernel), only the jail helps (:mod:`governed_server.single_user.kernel_jail`).

A directory is tightened only when it is the owner's, not shared (no sticky bit, as ``/tmp`` has),
not ``/`` and not the home directory: giving a key a shared folder must not lock others out of it.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("governed_server")

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 when missing (its folder 0700); True when created.
    SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def private_dir(path: Path) -> Path:
    """``path`` as a directory, created 0700 (its missing parents too) when missing."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    for created in missing:
        if created.is_dir():
            os.chmod(created, PRIVATE_DIR)
    return path


def tighten(path: Path, *, why: str = "") -> str | None:
    """Take group and other permissions off ``path`` (a file: 0600 at most; a directory: 0700 at
    most, when it is ours alone to change). Returns what changed, or None."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return None
    mode = stat.S_IMODE(info.st_mode)
    is_dir = stat.S_ISDIR(info.st_mode)
    allowed = PRIVATE_DIR if is_dir else PRIVATE_FILE
    if not mode & ~allowed & 0o777:
        return None
    if is_dir and not _ours_to_tighten(path, info):
        log.warning(
            "governed_server: %s holds %s but is mode %04o and shared; it is left as it is: give it a "
            "directory of its own",
            path, why or "governance files", mode,
        )  # fmt: skip
        return None
    new = mode & allowed
    try:
        os.chmod(path, new)
    except OSError as error:
        log.warning("governed_server: could not make %s private (%s): %s", path, why, error.strerror)
        return None
    change = f"{path}: mode {mode:04o} -> {new:04o}" + (f" ({why})" if why else "")
    log.warning("governed_server: tightened permissions of %s", change)
    return change


def _ours_to_tighten(path: Path, info: os.stat_result) -> bool:
    home = Path.home().resolve()
    resolved = path.resolve()
    return (
        info.st_uid == os.geteuid()
        and not info.st_mode & stat.S_ISVTX
        and resolved not in (Path("/"), home)
        and resolved not in home.parents
    )


def tighten_all(paths: Iterable[tuple[Path, str]], *, with_files_of: Iterable[Path] = ()) -> list[str]:
    """:func:`tighten` each (path, why), and the files of each directory in ``with_files_of`` (the
    service's own folders: a store's folder may hold other people's files). Returns what changed."""
    items = list(paths)
    for folder in with_files_of:
        if folder.is_dir() and not folder.is_symlink():
            why = next((w for p, w in items if p == folder), "")
            items += [(child, why) for child in sorted(folder.iterdir()) if child.is_file()]
    changes = [tighten(path, why=why) for path, why in items]
    return [change for change in changes if change]


def sqlite_files(database: Path) -> list[Path]:
    """The database file and the files SQLite keeps beside it."""
    return [database, *(database.with_name(database.name + suffix) for suffix in SQLITE_SIDECARS)]
