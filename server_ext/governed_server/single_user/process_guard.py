"""The server process is not dumpable: another process of the same OS user cannot read its memory.

A dumpable process's ``/proc/<pid>/environ``, ``mem``, ``fd/*`` and ``root`` are open to every
process of its user (and ``ptrace`` attaches to it): an unjailed kernel, or anything else the
analyst runs, could read the server's tokens, database URL and open files there. ``prctl(
PR_SET_DUMPABLE, 0)`` makes those files root's and refuses ``ptrace`` to the same user (it also
turns off core dumps of the server, which would hold the same secrets). Children start dumpable
again at ``execve``; a jailed kernel cannot see the server's ``/proc`` entry at all.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def make_undumpable() -> str | None:
    """Mark this process not dumpable (Linux); returns why it could not, or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            return f"prctl(PR_SET_DUMPABLE, 0) failed (errno {ctypes.get_errno()}): the server stays dumpable"
    except OSError as error:
        return f"cannot call prctl ({error}): the server process stays dumpable"
    return None


def is_dumpable() -> bool | None:
    """Whether this process is dumpable (None where that cannot be asked)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
    except OSError:
        return None
