"""One governed kernel per module, acting for alice, under an observe-mode policy (kernel_helpers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from governance_service import write_test_policy  # type: ignore[import-not-found]
from kernel_helpers import Kernel, kernel_env  # type: ignore[import-not-found]


@pytest.fixture(scope="module")
def ipython_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ipython")


@pytest.fixture(scope="module")
def observe_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = write_test_policy(tmp_path_factory.mktemp("policy") / "observe.yaml", mode="observe")
    return path


@pytest.fixture(scope="module")
def kernel(
    governance_service: Any, ipython_dir: Path, observe_policy: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kernel]:
    base = governance_service.kernel_env("alice", GOVERNED_POLICY=str(observe_policy))
    k = Kernel(kernel_env(base, ipython_dir), tmp_path_factory.mktemp("kernel"))
    try:
        yield k
    finally:
        k.close()
