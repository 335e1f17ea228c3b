"""The two-person demo as the README prints it, in Debian's Chromium: both links, each person's
first view, the DataFrame masked, no shared kernel, and the approval from one to the other.

The demo runs as ``make lab`` starts it (``jupyter governance demo`` from the repository root), with
one extra JupyterLab option so the test can drive the notebook: ``expose_app_in_browser``.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from demo_process import Demo, running_demo  # type: ignore[import-not-found]
from lab_helpers import run_cell, wait_for_notebook  # type: ignore[import-not-found]

pytestmark = pytest.mark.browser

UI_TIMEOUT_MS = 90_000
PANEL = "#governed-kernel-governance-panel"
TEST_PANS = ("4242424242424242", "5555555555554444", "378282246310005")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Iterator[Demo]:
    with running_demo(
        tmp_path_factory.mktemp("browser-demo"), repo_root, "--LabApp.expose_app_in_browser=True"
    ) as running:
        yield running


def open_link(browser: Any, url: str) -> Any:
    """A person opening their printed link in a private window of their own."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(url, timeout=UI_TIMEOUT_MS)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.restored", timeout=UI_TIMEOUT_MS)
    page.evaluate("() => window.jupyterapp.restored")
    return page


def cell_index(demo: Demo, cell_id: str) -> int:
    cells = json.loads((demo.demo_dir / "notebooks" / "demo.ipynb").read_text())["cells"]
    return next(i for i, cell in enumerate(cells) if cell.get("id") == cell_id)


def run_and_wait(page: Any, index: int) -> None:
    """Run cell ``index`` (a markdown cell renders) and wait until it has run and the kernel is idle."""
    run_cell(page, index)
    page.wait_for_function(
        """(index) => {
            const nb = window.jupyterapp.shell.currentWidget;
            const model = nb.content.widgets[index].model;
            return (model.type !== 'code' || model.executionCount !== null)
                && nb.sessionContext.kernelDisplayStatus === 'idle';
        }""",
        arg=index,
        timeout=UI_TIMEOUT_MS,
    )


def sessions_of(demo: Demo, name: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"{demo.base_url}/api/sessions", headers={"Authorization": f"token {demo.token(name)}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return list(json.load(response))


def test_the_demo_as_printed(browser: Any, demo: Demo, artifacts_dir: Path) -> None:
    urls = demo.urls()

    # Ana's link opens the demo notebook on the governed kernel; the DataFrame shows last four digits.
    ana = open_link(browser, urls["Ana"])
    ana_kernel = wait_for_notebook(ana, "demo.ipynb", UI_TIMEOUT_MS)["id"]
    for index in range(cell_index(demo, "masked-frame") + 1):
        run_and_wait(ana, index)
    frame = ana.locator(".jp-NotebookPanel:visible .jp-Cell").nth(cell_index(demo, "masked-frame"))
    table = frame.locator(".jp-OutputArea-output table")
    table.wait_for(timeout=UI_TIMEOUT_MS)
    shown = table.inner_text()
    assert "************4242" in shown and "4444" in shown, shown
    assert "ModuleNotFoundError" not in frame.inner_text()
    outputs = ana.locator(".jp-NotebookPanel:visible .jp-OutputArea").all_inner_texts()
    assert outputs and not any(pan in text for pan in TEST_PANS for text in outputs), outputs
    ana.screenshot(path=str(artifacts_dir / "demo-analyst-first-view.png"))

    # Bob's link opens his view: the Governance panel on the queue, no notebook, no kernel of Ana's.
    bob = open_link(browser, urls["Bob"])
    panel = bob.locator(PANEL)
    panel.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    bob.locator(f'{PANEL} [role="tab"][data-tab="queue"][aria-selected="true"]').wait_for(
        timeout=UI_TIMEOUT_MS
    )
    assert bob.locator(".jp-NotebookPanel").count() == 0
    assert sessions_of(demo, "Bob") == []
    bob.screenshot(path=str(artifacts_dir / "demo-approver-first-view.png"))

    # Bob opens the same notebook: a kernel of his own, and Ana's session is untouched.
    bob.evaluate("() => window.jupyterapp.commands.execute('docmanager:open', {path: 'demo.ipynb'})")
    bob_kernel = wait_for_notebook(bob, "demo.ipynb", UI_TIMEOUT_MS)["id"]
    assert bob_kernel != ana_kernel
    assert [s["kernel"]["id"] for s in sessions_of(demo, "Ana")] == [ana_kernel]
    assert [s["kernel"]["id"] for s in sessions_of(demo, "Bob")] == [bob_kernel]

    # Ana's approval cell waits; the request reaches Bob's queue; his approval lets it run.
    approval = run_cell(ana, cell_index(demo, "approval-cell"))
    approval.locator('.jp-GovernedStatus[data-state="waiting"]').wait_for(timeout=UI_TIMEOUT_MS)
    request_id = approval.locator(".jp-GovernedStatus").first.get_attribute("data-request-id")
    request = panel.locator(f'.jp-GovernanceRequest[data-request-id="{request_id}"]')
    request.wait_for(timeout=UI_TIMEOUT_MS)
    assert request.locator('[data-field="requester"]').inner_text() == "ana"
    request.locator('[data-field="reason"]').fill("demo: listing the folder is harmless")
    request.locator('[data-action="approve"]').click()
    approved = approval.locator('.jp-GovernedStatus[data-state="approved"]')
    approved.wait_for(timeout=UI_TIMEOUT_MS)
    assert "Approved by bob" in approved.inner_text()
    approval.locator(".jp-OutputArea-output", has_text="demo.ipynb").first.wait_for(timeout=UI_TIMEOUT_MS)
    ana.screenshot(path=str(artifacts_dir / "demo-analyst-approved.png"))
    # Nothing that looks like an error in what the demo printed while two people used it.
    logged = demo.output
    assert not any(mark in logged for mark in ("[W ", "[E ", "Traceback")), logged
