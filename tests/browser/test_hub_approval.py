"""Through a real JupyterHub: the analyst's gated cell waits in their Lab until an approver, logged in
to the Hub in another browser, approves it in the Governance panel of their own Lab; then it runs.

The panel's calls go to the approver's own single-user server, which relays them to the governance
service (its own OS user) with the approver's token (docs/deploy-jupyterhub.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hubstack import PEOPLE, HubStack  # type: ignore[import-not-found]
from lab_helpers import run_cell  # type: ignore[import-not-found]

pytestmark = [pytest.mark.browser, pytest.mark.hub]

UI_TIMEOUT_MS = 90_000
POLL_TIMEOUT_MS = 40_000
"""The panel polls every 15 s when no pushed event arrives (the relay does not push yet)."""
PANEL = "#governed-kernel-governance-panel"
NOTEBOOK = "hub-approval.ipynb"
GATED = "import subprocess\nsubprocess.run(['true'])\nprint('approved-in-the-hub')"


def log_in(browser: Any, hub: HubStack, who: str, path: str) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    name = PEOPLE[who]
    page.goto(f"{hub.url}/hub/login?next=/user/{name}/{path}", timeout=UI_TIMEOUT_MS)
    page.fill("#username_input", name)
    page.fill("#password_input", hub.password)
    page.click("#login_submit")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.restored", timeout=UI_TIMEOUT_MS)
    page.evaluate("() => window.jupyterapp.restored")
    page.add_style_tag(content=".jp-toastContainer { display: none !important; }")
    return page


def write_notebook(hub: HubStack) -> None:
    cell: dict[str, Any] = {"cell_type": "code", "id": "gated", "metadata": {}, "source": GATED,
            "outputs": [],
            "execution_count": None}  # fmt: skip
    notebook = {
        "cells": [cell],
        "metadata": {"kernelspec": {"name": "governed-python", "display_name": "Python 3 (governed)"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    with hub.server("analyst") as server:
        response = server.put(f"api/contents/{NOTEBOOK}", json={"type": "notebook", "content": notebook})
        assert response.status_code in (200, 201), response.text


def test_an_approver_approves_in_their_own_lab_through_the_hub(
    hub: HubStack, browser: Any, artifacts_dir: Path
) -> None:
    write_notebook(hub)
    analyst = log_in(browser, hub, "analyst", f"lab/tree/{NOTEBOOK}")
    analyst.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=UI_TIMEOUT_MS)
    analyst.locator('#governed-kernel-status:has-text("Governed")').wait_for(timeout=UI_TIMEOUT_MS)
    run_cell(analyst, 0)
    status = analyst.locator('.jp-GovernedStatus[data-state="waiting"]')
    status.wait_for(timeout=UI_TIMEOUT_MS)
    request_id = status.get_attribute("data-request-id")
    assert request_id
    assert "approved-in-the-hub" not in analyst.locator(".jp-OutputArea").first.inner_text()

    approver = log_in(browser, hub, "approver", "lab")
    approver.wait_for_function(
        "() => { void window.jupyterapp.commands.execute('governance:open-panel');"
        " const n = document.getElementById('governed-kernel-governance-panel');"
        " return !!n && n.offsetParent !== null; }",
        timeout=UI_TIMEOUT_MS,
        polling=500,
    )
    panel = approver.locator(PANEL)
    approver.locator(f'{PANEL}[data-state="ready"]').wait_for(timeout=UI_TIMEOUT_MS)
    panel.locator('[role="tab"][data-tab="queue"]').click()
    card = panel.locator(f'.jp-GovernanceRequest[data-request-id="{request_id}"]')
    card.wait_for(timeout=POLL_TIMEOUT_MS)
    assert PEOPLE["analyst"] in card.inner_text()
    card.locator('[data-field="reason"]').fill("checked in the hub test")
    card.locator('[data-action="approve"]').click()
    approver.screenshot(path=str(artifacts_dir / "hub-approver-panel.png"))

    analyst.locator('.jp-GovernedStatus[data-state="approved"]').wait_for(timeout=UI_TIMEOUT_MS)
    analyst.locator('.jp-OutputArea:has-text("approved-in-the-hub")').wait_for(timeout=UI_TIMEOUT_MS)
    analyst.screenshot(path=str(artifacts_dir / "hub-analyst-approved.png"))
    with hub.service("auditor") as auditor:
        records = auditor.get("audit", params={"event_type": "approval.decided", "limit": 1000}).json()[
            "records"
        ]
    decided = [r for r in records if r["data"]["approval_id"] == request_id]
    assert decided, json.dumps(records[-1:])[:1500]
    assert decided and decided[0]["user"] == PEOPLE["approver"], json.dumps(decided)[:500]
