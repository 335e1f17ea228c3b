"""Fixtures shared by the whole suite.

Every test that takes ``db_url`` runs on SQLite and on a private PostgreSQL cluster, started once per
session and only when a PostgreSQL test runs. Missing PostgreSQL binaries make those tests FAIL (not
skip): a store that was never tested on PostgreSQL must not pass.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from governance_service import GovernanceService, write_test_policy  # type: ignore[import-not-found]
from hubstack import HUB_WITNESS_GRACE_S, HubStack, HubUnavailable  # type: ignore[import-not-found]
from pgcluster import PgCluster, PgUnavailable  # type: ignore[import-not-found]

pytest_plugins = ["pytest_jupyter.jupyter_server"]

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave files for people to look at (screenshots); kept by CI, ignored by git."""
    path = REPO_ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A running private PostgreSQL cluster (fails with an install hint when PG is missing)."""
    try:
        cluster = PgCluster().start()
    except PgUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on ``backend``: an SQLite file or a new PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'governance.sqlite'}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database()
    try:
        yield url
    finally:
        cluster.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture(scope="session")
def governance_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovernanceService]:
    """One ``jupyter governance serve`` for the session (SQLite), with named test users."""
    root = tmp_path_factory.mktemp("governance-service")
    service = GovernanceService(root=root, policy_path=write_test_policy(root / "policy.yaml")).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def hub() -> Iterator[HubStack]:
    """The Hub, its governance service (own OS user) on a password-protected PostgreSQL, and the
    analyst's and the first approver's servers started. Fails (never skips) when it cannot run."""
    try:
        cluster = PgCluster(password=secrets.token_hex(12)).start()
    except PgUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    # A short witness grace (30 s by default), so a test can wait for an alert that would be due.
    grace = f"--GovernedServerApp.witness_grace_seconds={HUB_WITNESS_GRACE_S}"
    stack = HubStack(db_url=cluster.create_database("governance"), service_args=[grace])
    try:
        stack.start()
        stack.start_server("analyst")
        stack.start_server("approver")
    except HubUnavailable as error:
        stack.stop()
        cluster.stop()
        pytest.fail(str(error), pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()
        cluster.stop()
