"""Store calls run in worker threads, never on the server's event loop.

The event loop serves every user's websockets, kernels and API calls: a store call that waits (a
lock held by another process, a slow disk, a PostgreSQL server far away) would stall all of them.
A pool of its own keeps store waits from using up the loop's default executor too.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
calling_loop: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "governed_calling_loop", default=None
)
"""In a store thread: the event loop that offloaded the call (see :func:`on_loop`)."""
STORE_THREADS = 32
"""Enough that a read is not queued behind appends: an append waiting for the group commit of
:mod:`~governed_server.service.append_combiner` holds its thread (not a connection) until the
group's writer is done, and the more appends wait together, the more one transaction takes."""
_executor = ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="governed-store")


async def offload(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in a store thread (with the caller's context variables)."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    context.run(calling_loop.set, loop)
    call = functools.partial(context.run, function, *args, **kwargs)
    return await loop.run_in_executor(_executor, call)


def on_loop(callback: Callable[[], Any]) -> None:
    """Run ``callback`` on the event loop: now when this is the loop's thread, else soon (from a store
    thread). For what touches websockets and asyncio objects: events, waking waiters."""
    loop = calling_loop.get()
    if loop is None:
        callback()
    else:
        loop.call_soon_threadsafe(callback)
