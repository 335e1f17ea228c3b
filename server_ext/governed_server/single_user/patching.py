"""Wrapping a method of one object (the server's kernel and session managers) without a cycle.

The governance extension wraps some methods of jupyter_server's managers on the instance. A
wrapper that kept the original *bound* method, stored on that same instance, would make a
reference cycle: the manager then outlives its server until the cyclic garbage collector runs, at
some random later moment, where its ``__del__`` (zmq's context teardown) can block. So the
original is called through a weak reference.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any


def original(obj: Any, name: str) -> Callable[..., Any]:
    """What ``obj.<name>`` calls now, as a callable that holds no strong reference to ``obj``."""
    own = obj.__dict__.get(name)
    if own is not None:  # already wrapped on the instance (by a cycle-free wrapper)
        return own  # type: ignore[no-any-return]
    function = getattr(type(obj), name)
    target, label = weakref.ref(obj), f"{type(obj).__name__}.{name}"

    def call(*args: Any, **kwargs: Any) -> Any:
        bound = target()
        if bound is None:
            raise ReferenceError(f"{label}: the object is gone")
        return function(bound, *args, **kwargs)

    return call
