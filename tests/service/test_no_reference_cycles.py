"""The extension's wrappers on jupyter_server's managers make no reference cycle.

A manager kept alive by a cycle outlives its server until the cyclic garbage collector runs, at a
random later moment (during another test, another request), where its ``__del__`` tears down zmq:
that once hung a whole test run. Freed by reference counting alone, or the test fails."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyter_server.services.sessions.sessionmanager import SessionManager

from governed_kernel.masking import Masker
from governed_server import ids
from governed_server.single_user.hardening import Hardening, refuse_gateway_kernels, restrict_kernels
from governed_server.single_user.inbound_gate import InboundRegistry
from governed_server.single_user.ownership import KernelOwners


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_wrapped_managers_are_freed_without_the_cyclic_collector(no_cyclic_gc: None) -> None:
    specs = KernelSpecManager()
    kernels = AsyncMappingKernelManager(kernel_spec_manager=specs)
    sessions = SessionManager(kernel_manager=kernels)
    ids.install(kernels, Masker())
    KernelOwners().install(kernels, sessions)
    InboundRegistry().install(kernels)
    restrict_kernels(specs, Hardening(), allow_ungoverned=False)
    refuse_gateway_kernels(kernels)
    refs: list[weakref.ref[Any]] = [weakref.ref(kernels), weakref.ref(sessions), weakref.ref(specs)]
    del kernels, sessions, specs
    assert [ref() is None for ref in refs] == [True, True, True]
