"""Client mode loses nothing and keeps going: a lease that lapsed in an outage is reinstated (the
kernel goes on, no restart), a revoked one is not, and what the server's guards recorded while the
service was away is kept on disk across a restart of the server and stored exactly once."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from hubstack import PEOPLE, HubStack  # type: ignore[import-not-found]
from sqlalchemy import create_engine, text
from ws_client import outputs  # type: ignore[import-not-found]

pytestmark = pytest.mark.hub
PAN = "4111111111111111"


def store_sql(hub: HubStack, statement: str, **values: Any) -> None:
    """What only the service's database owner can do (the test plays the passage of time)."""
    engine = create_engine(hub.db_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement), values)
    finally:
        engine.dispose()


def records_of(hub: HubStack, **params: Any) -> list[dict[str, Any]]:
    with hub.service("auditor") as auditor:
        answer = auditor.get("audit", params={"limit": 1000, **params})
    assert answer.status_code == 200, answer.text
    records: list[dict[str, Any]] = answer.json()["records"]
    return records


async def test_a_lease_that_lapsed_during_an_outage_is_reinstated_and_the_kernel_goes_on(
    hub: HubStack, hub_kernel: Any
) -> None:
    kernel = await hub_kernel("analyst")
    assert "one" in outputs(await kernel.finished(kernel.execute("print('one')")))
    # As after an outage longer than a lease: both credentials of the kernel are past their end.
    store_sql(
        hub,
        "UPDATE kernel_credentials SET expires_at = now() - interval '1 minute' WHERE kernel_id = :k",
        k=kernel.kernel_id,
    )
    shown = outputs(await kernel.finished(kernel.execute("print('two')"), timeout=60))
    assert "two" in shown, shown
    kinds = [r["event_type"] for r in records_of(hub, kernel_id=kernel.kernel_id)]
    assert "credential.reinstated" in kinds
    assert kinds.count("cell.start") >= 2, "the kernel's own records go on with the same credential"


async def test_revoked_credentials_are_not_reinstated(hub: HubStack, hub_kernel: Any) -> None:
    kernel = await hub_kernel("analyst")
    assert "one" in outputs(await kernel.finished(kernel.execute("print('one')")))
    store_sql(
        hub, "UPDATE kernel_credentials SET revoked_at = now() WHERE kernel_id = :k", k=kernel.kernel_id
    )
    shown = outputs(await kernel.finished(kernel.execute("print('never shown')"), timeout=120))
    assert "never shown" not in shown.replace("print('never shown')", "")
    assert "restart the kernel" in shown, shown
    assert "credential.reinstated" not in [
        r["event_type"] for r in records_of(hub, kernel_id=kernel.kernel_id)
    ]


def test_guard_records_made_while_the_service_is_away_survive_a_server_restart(
    hub: HubStack, service_pid: Any
) -> None:
    home = Path(f"/home/{PEOPLE['analyst']}")
    card_file = home / "card-export.txt"
    card_file.write_text(f"customer,card\nana,{PAN}\n")
    os.chown(card_file, home.stat().st_uid, home.stat().st_gid)
    spool = home / ".local/share/jupyter/governed_server/spool/default.jsonl"
    pid = service_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        with hub.server("analyst") as server:
            served = server.get("api/contents/card-export.txt", params={"content": "1"})
        assert served.status_code == 200, served.text
        assert PAN not in served.text  # masked by the outbound guard, service or not
        time.sleep(2)
        assert spool.is_file() and "card-export.txt" in spool.read_text(), "not kept on disk"
        assert stat.S_IMODE(spool.stat().st_mode) == 0o600
        assert stat.S_IMODE(spool.parent.stat().st_mode) == 0o700
        hub.stop_server("analyst")  # the server goes while the service is still away
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "card-export.txt" in spool.read_text(), "the restart lost what waited"
    hub.start_server("analyst")
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        found = [
            r
            for r in records_of(hub, user=PEOPLE["analyst"])
            if r["event_type"] == "guard.masked" and r["data"]["details"].get("path") == "card-export.txt"
        ]
        time.sleep(1)
    time.sleep(3)  # a second delivery, if there were one, would have landed by now
    found = [
        r
        for r in records_of(hub, user=PEOPLE["analyst"])
        if r["event_type"] == "guard.masked" and r["data"]["details"].get("path") == "card-export.txt"
    ]
    assert len(found) == 1, found
    assert found[0]["event_id"]
    with hub.service("auditor") as auditor:
        assert auditor.get("audit/verify").json()["ok"] is True
