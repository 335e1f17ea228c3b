"""JupyterLab served by the installed package, in Debian's Chromium: launcher card and Governance panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from governed_kernel import KERNEL_NAME, __version__

pytestmark = pytest.mark.browser

PANEL = "#governed-kernel-governance-panel"
PANEL_TAB = '.jp-SideBar.jp-mod-right [data-id="governed-kernel-governance-panel"]'
UI_TIMEOUT_MS = 60_000


def open_governance_panel(page: Any) -> Any:
    page.locator(PANEL_TAB).click(timeout=UI_TIMEOUT_MS)
    panel = page.locator(PANEL)
    panel.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    # The service's health is on the panel's "Service" tab (the others hold approval requests).
    panel.locator('[role="tab"][data-tab="service"]').click(timeout=UI_TIMEOUT_MS)
    return panel


def test_launcher_offers_the_governed_kernel_and_the_panel_shows_health(
    start_lab: Any, page: Any, artifacts_dir: Path
) -> None:
    lab = start_lab()
    assert lab.get_json("api/kernelspecs")["default"] == KERNEL_NAME

    page.goto(lab.lab_url(), timeout=UI_TIMEOUT_MS)
    card = page.locator(".jp-LauncherCard", has_text="Python 3 (governed)").first
    card.wait_for(state="visible", timeout=UI_TIMEOUT_MS)

    panel = open_governance_panel(page)
    version = panel.locator('[data-field="version"]')
    version.wait_for(timeout=UI_TIMEOUT_MS)
    assert version.inner_text() == __version__
    assert panel.locator('[data-field="kernel_name"]').inner_text() == KERNEL_NAME
    assert panel.locator('[data-field="status"]').inner_text() == "ok"
    assert panel.locator('[data-field="policy_path"]').inner_text().endswith("pci-dss.yaml")
    page.screenshot(path=str(artifacts_dir / "lab-launcher-governance-panel.png"))


def test_panel_explains_when_the_server_extension_is_missing(
    start_lab: Any, page: Any, artifacts_dir: Path
) -> None:
    lab = start_lab({"ServerApp": {"jpserver_extensions": {"governed_server": False}}})
    page.goto(lab.lab_url(), timeout=UI_TIMEOUT_MS)
    panel = open_governance_panel(page)
    error = panel.locator('[role="alert"]')
    error.wait_for(timeout=UI_TIMEOUT_MS)
    text = error.inner_text()
    assert "server extension is not running" in text
    assert "jupyter server extension enable governed_server" in text
    page.screenshot(path=str(artifacts_dir / "lab-governance-panel-extension-missing.png"))
