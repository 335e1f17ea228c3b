"""The JupyterLab experience of the governed kernel, in Debian's Chromium, with several identities.

One JupyterLab (module-scoped) with named users from the test policy: alice (analyst), bob and carol
(approvers), dave (auditor). Each person is a separate browser context, logged in by their token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from governance_service import TOKENS, letters_only_id, write_test_policy  # type: ignore[import-not-found]

from governed_kernel import KERNEL_NAME

pytestmark = pytest.mark.browser

UI_TIMEOUT_MS = 60_000
PUSH_TIMEOUT_MS = 2_000
PANEL = "#governed-kernel-governance-panel"
PANEL_TAB = '.jp-SideBar.jp-mod-right [data-id="governed-kernel-governance-panel"]'
STATUS_ITEM = "#governed-kernel-status"


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(module_lab: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    policy = write_test_policy(tmp_path_factory.mktemp("policy") / "policy.yaml")
    return module_lab(
        {
            "ServerApp": {
                "identity_provider_class": "governed_server.identity_provider.NamedTokenIdentityProvider"
            },
            "NamedTokenIdentityProvider": {
                "users": {
                    token: {"username": name, "display_name": name.title()} for name, token in TOKENS.items()
                }
            },
            "GovernedServerApp": {"policy_path": str(policy)},
            "LabApp": {"expose_app_in_browser": True},
        }
    )


@pytest.fixture
def open_as(browser: Any, lab: Any) -> Iterator[Callable[..., Any]]:
    """``open_as(user, path)``: a page in a new browser context logged in as ``user``."""
    contexts: list[Any] = []

    def open_page(user: str, path: str = "") -> Any:
        # A fresh workspace per page: the server keeps layouts per workspace name, not per user, and a
        # restored layout would reopen (and restart kernels for) earlier tests' notebooks.
        path = path or f"lab/workspaces/{user}-{uuid.uuid4().hex[:8]}"
        context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{lab.url}/{path}?token={TOKENS[user]}", timeout=UI_TIMEOUT_MS)
        page.locator(PANEL_TAB).wait_for(timeout=UI_TIMEOUT_MS)
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.restored", timeout=UI_TIMEOUT_MS)
        page.evaluate("() => window.jupyterapp.restored")
        # Toasts (JupyterLab's news question, request notifications) would cover the panel's buttons.
        page.add_style_tag(content=".jp-toastContainer { display: none !important; }")
        return page

    yield open_page
    for context in contexts:
        context.close()
    # Kernels outlive the pages: shut this test's kernels down so the next test has the CPU.
    for kernel in lab.get_json("api/kernels"):
        request = urllib.request.Request(
            f"{lab.url}/api/kernels/{kernel['id']}",
            method="DELETE",
            headers={"Authorization": f"token {lab.token}"},
        )
        with contextlib.suppress(urllib.error.URLError):
            urllib.request.urlopen(request, timeout=30).close()


# -- helpers --------------------------------------------------------------------------------------


def write_notebook(lab: Any, name: str, *sources: str) -> str:
    cells: list[dict[str, Any]] = [
        {
            "cell_type": "code",
            "id": f"cell-{i}",
            "metadata": {},
            "source": src,
            "outputs": [],
            "execution_count": None,
        }
        for i, src in enumerate(sources)
    ]
    notebook = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": KERNEL_NAME, "display_name": "Python 3 (governed)", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (lab.root_dir / name).write_text(json.dumps(notebook))
    return name


def open_notebook(page: Any, name: str) -> None:
    """Open ``name`` and wait until its governed kernel is idle."""
    page.evaluate("(path) => window.jupyterapp.commands.execute('docmanager:open', {path})", name)
    page.wait_for_function(
        """(path) => {
            const w = window.jupyterapp.shell.currentWidget;
            const s = w && w.sessionContext;
            return !!s && w.context.path === path && !!s.session && !!s.session.kernel
                && s.kernelDisplayStatus === 'idle';
        }""",
        arg=name,
        timeout=UI_TIMEOUT_MS,
    )
    kernel = page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.name")
    assert kernel == KERNEL_NAME


def run_cell(page: Any, index: int) -> None:
    """Start running cell ``index`` of the current notebook (does not wait: it may wait for approval)."""
    page.evaluate(
        """(index) => {
            const nb = window.jupyterapp.shell.currentWidget;
            nb.content.activeCellIndex = index;
            void window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        index,
    )


def cell(page: Any, index: int) -> Any:
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").nth(index)


def open_panel(page: Any, tab: str | None = None) -> Any:
    panel = page.locator(PANEL)
    page.wait_for_function(
        """() => {
            void window.jupyterapp.commands.execute('governance:open-panel');
            const node = document.getElementById('governed-kernel-governance-panel');
            return !!node && node.offsetParent !== null;
        }""",
        timeout=UI_TIMEOUT_MS,
        polling=500,
    )
    panel.locator('[data-field="identity"]').filter(has_text="policy").wait_for(timeout=UI_TIMEOUT_MS)
    if tab:
        panel.locator(f'[role="tab"][data-tab="{tab}"]').click()
    return panel


def request_id_of(page: Any, index: int) -> str:
    status = cell(page, index).locator(".jp-GovernedStatus")
    status.first.wait_for(timeout=UI_TIMEOUT_MS)
    value = status.first.get_attribute("data-request-id")
    assert value
    return str(value)


def api(lab: Any, user: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{lab.url}/governance/api/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {TOKENS[user]}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def db_url(lab: Any) -> str:
    return f"sqlite:///{lab.root_dir.parent / 'home' / 'data' / 'governance' / 'governance.sqlite'}"


def card(panel: Any, request_id: str) -> Any:
    return panel.locator(f'.jp-GovernanceRequest[data-request-id="{request_id}"]')


def mark_no_reload(page: Any) -> None:
    page.evaluate("() => { window.__governedNoReload = true; }")


def assert_no_reload(page: Any) -> None:
    assert page.evaluate("() => window.__governedNoReload === true"), "the page was reloaded"


# -- tests ----------------------------------------------------------------------------------------


def test_approve_path_pushes_to_the_approver_and_runs_the_cell(
    lab: Any, open_as: Callable[..., Any], artifacts_dir: Path
) -> None:
    name = write_notebook(lab, "approve.ipynb", "!echo governed-approve-$((40+2))")
    bob = open_as("bob")
    queue = open_panel(bob, "queue").locator('[data-tabpanel="queue"]')
    queue.filter(has_text="No request is waiting").wait_for(timeout=UI_TIMEOUT_MS)
    mark_no_reload(bob)

    alice = open_as("alice")
    open_notebook(alice, name)
    status_item = alice.locator(STATUS_ITEM)
    status_item.filter(has_text="Governed").wait_for(timeout=UI_TIMEOUT_MS)
    run_cell(alice, 0)
    waiting = cell(alice, 0).locator('.jp-GovernedStatus[data-state="waiting"]')
    waiting.wait_for(timeout=UI_TIMEOUT_MS)
    request_id = request_id_of(alice, 0)

    # Pushed to the approver's open panel within 2 s, no reload.
    pending = card(queue, request_id)
    pending.wait_for(timeout=PUSH_TIMEOUT_MS)
    assert_no_reload(bob)
    assert pending.locator('[data-field="requester"]').inner_text() == "alice"
    assert "approve.ipynb" in pending.locator('[data-field="notebook"]').inner_text()
    assert pending.locator('[data-rule="shell-commands"]').inner_text().count("PCI DSS 7.2.1") == 1
    assert "0 of 1" in pending.locator('[data-field="approvals"]').inner_text()
    assert pending.locator('[data-field="policy_version"]').inner_text()
    assert pending.locator('[data-field="expires"]').inner_text().startswith("in ")
    # Syntax-highlighted source: tokens in spans.
    pending.locator('[data-field="code"] span').first.wait_for(timeout=UI_TIMEOUT_MS)
    assert "echo governed-approve" in pending.locator('[data-field="code"]').inner_text()

    # The analyst's status bar counts the pending request; clicking opens "My requests".
    status_item.filter(has_text="1 pending").wait_for(timeout=PUSH_TIMEOUT_MS * 3)
    status_item.click()
    mine = alice.locator(PANEL).locator('[data-tabpanel="mine"]')
    mine.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    card(mine, request_id).wait_for(timeout=UI_TIMEOUT_MS)
    assert card(mine, request_id).locator('[data-action="approve"]').count() == 0
    alice.screenshot(path=str(artifacts_dir / "ui-analyst-waiting-cell.png"))
    bob.screenshot(path=str(artifacts_dir / "ui-approver-panel-pending.png"))

    # A decision needs a reason: an empty one is refused in the form (nothing sent).
    pending.locator('[data-action="approve"]').click()
    assert "reason is required" in pending.locator('[role="alert"]').inner_text()
    assert pending.locator('[data-field="reason"]').get_attribute("aria-invalid") == "true"
    # Keyboard: type the reason, Ctrl+Enter approves.
    reason = pending.locator('[data-field="reason"]')
    reason.fill("ticket OPS-1: listing is harmless")
    reason.press("Control+Enter")

    approved = cell(alice, 0).locator('.jp-GovernedStatus[data-state="approved"]')
    approved.wait_for(timeout=UI_TIMEOUT_MS)
    assert "Approved by bob: ticket OPS-1: listing is harmless" in approved.inner_text()
    cell(alice, 0).locator(".jp-OutputArea-output", has_text="governed-approve-42").wait_for(
        timeout=UI_TIMEOUT_MS
    )
    card(mine, request_id).locator('[data-field="status"]', has_text="Approved").wait_for(
        timeout=UI_TIMEOUT_MS
    )

    # The request left the queue for the History tab: who, when, why, how long it waited.
    pending.wait_for(state="detached", timeout=PUSH_TIMEOUT_MS * 3)
    history = open_panel(bob, "history").locator('[data-tabpanel="history"]')
    done = card(history, request_id)
    done.wait_for(timeout=UI_TIMEOUT_MS)
    assert done.locator('[data-field="status"]').inner_text() == "Approved"
    assert done.locator('[data-field="waiting"]').inner_text().endswith("s")
    done.locator("summary").click()
    decision = done.locator('[data-approver="bob"]').inner_text()
    assert "Approved by bob" in decision and "ticket OPS-1" in decision
    bob.screenshot(path=str(artifacts_dir / "ui-approver-panel-history.png"))


def test_deny_path_stops_the_cell_with_the_reason(lab: Any, open_as: Callable[..., Any]) -> None:
    name = write_notebook(lab, "deny.ipynb", "!echo should-not-run")
    bob = open_as("bob")
    queue = open_panel(bob, "queue").locator('[data-tabpanel="queue"]')
    alice = open_as("alice")
    open_notebook(alice, name)
    run_cell(alice, 0)
    request_id = request_id_of(alice, 0)
    pending = card(queue, request_id)
    pending.wait_for(timeout=PUSH_TIMEOUT_MS)
    pending.locator('[data-field="reason"]').fill("no business need")
    pending.locator('[data-action="deny"]').click()

    denied = cell(alice, 0).locator('.jp-GovernedStatus[data-state="denied"]')
    denied.wait_for(timeout=UI_TIMEOUT_MS)
    assert "Denied by bob: no business need" in denied.inner_text()
    cell(alice, 0).locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").wait_for(
        timeout=UI_TIMEOUT_MS
    )
    assert "should-not-run\n" not in cell(alice, 0).locator(".jp-OutputArea").inner_text()
    history = open_panel(bob, "history").locator('[data-tabpanel="history"]')
    assert card(history, request_id).locator('[data-field="status"]').inner_text() == "Denied"
    # Deciding again is refused by the API (409: no longer pending).
    status, body = api(lab, "carol", "POST", f"approvals/{request_id}/decision",
                       {"decision": "approve", "reason": "late"})  # fmt: skip
    assert status == 409, body


def test_expiry_and_cancel_paths(lab: Any, open_as: Callable[..., Any]) -> None:
    from sqlalchemy import update

    from governed_server.store import open_store
    from governed_server.store.schema import approval_requests

    name = write_notebook(lab, "expire.ipynb", "!echo expire-me", "!echo cancel-me")
    bob = open_as("bob")
    queue = open_panel(bob, "queue").locator('[data-tabpanel="queue"]')
    alice = open_as("alice")
    open_notebook(alice, name)

    # Expiry: move the request's deadline to the past; the server's expiry check (every 5 s) ends it.
    run_cell(alice, 0)
    request_id = request_id_of(alice, 0)
    card(queue, request_id).wait_for(timeout=PUSH_TIMEOUT_MS)
    store = open_store(db_url(lab))
    try:
        with store.begin() as connection:
            connection.execute(
                update(approval_requests)
                .where(approval_requests.c.id == request_id)
                .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
            )
    finally:
        store.close()
    ended = cell(alice, 0).locator('.jp-GovernedStatus[data-state="ended"]')
    ended.wait_for(timeout=20_000)
    assert "expired" in ended.inner_text()
    card(queue, request_id).wait_for(state="detached", timeout=PUSH_TIMEOUT_MS * 3)
    history = open_panel(bob, "history").locator('[data-tabpanel="history"]')
    assert card(history, request_id).locator('[data-field="status"]').inner_text() == "Expired"

    # Cancel: the analyst withdraws a waiting request from "My requests".
    run_cell(alice, 1)
    cancel_id = request_id_of(alice, 1)
    mine = open_panel(alice, "mine").locator('[data-tabpanel="mine"]')
    mine_card = card(mine, cancel_id)
    mine_card.locator('[data-action="cancel"]').click(timeout=UI_TIMEOUT_MS)
    mine_card.locator('[data-field="status"]', has_text="Cancelled").wait_for(timeout=UI_TIMEOUT_MS)
    cell(alice, 1).locator('.jp-GovernedStatus[data-state="ended"]').wait_for(timeout=UI_TIMEOUT_MS)
    open_panel(bob, "history")
    card(history, cancel_id).locator('[data-field="status"]', has_text="Cancelled").wait_for(
        timeout=PUSH_TIMEOUT_MS * 3
    )


def test_no_approve_controls_for_non_approvers_or_own_requests_and_the_api_refuses(
    lab: Any, open_as: Callable[..., Any], artifacts_dir: Path
) -> None:
    from governed_server.credentials import CredentialIssuer
    from governed_server.store import open_store

    # A pending request by bob (an approver), opened through bob's kernel credential.
    store = open_store(db_url(lab))
    try:
        token = CredentialIssuer(store).mint(f"ui-test-{letters_only_id()}", "bob")
    finally:
        store.close()
    me = api(lab, "bob", "GET", "me")[1]
    code = "import subprocess\nsubprocess.run(['true'])\n"
    request = urllib.request.Request(
        f"{lab.url}/governance/api/kernel/approvals",
        method="POST",
        data=json.dumps(
            {
                "cell_hash": hashlib.sha256(code.encode()).hexdigest(),
                "code": code,
                "policy_version": me["policy"]["version"],
                "rules": [
                    {"id": "processes-and-native-code", "action": "approve", "reason": "test", "pci": []}
                ],
                "notebook_path": "own.ipynb",
                "cell_id": "own-1",
            }
        ).encode(),
        headers={"Authorization": f"GovernedKernel {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        request_id = json.load(response)["id"]

    # Bob's own request: listed, but without approve/deny controls; the API refuses him too.
    bob = open_as("bob")
    queue = open_panel(bob, "queue").locator('[data-tabpanel="queue"]')
    own = card(queue, request_id)
    own.wait_for(timeout=UI_TIMEOUT_MS)
    assert own.locator('[data-action="approve"]').count() == 0
    assert own.locator('[data-action="deny"]').count() == 0
    assert "Your own request" in own.inner_text()
    status, body = api(lab, "bob", "POST", f"approvals/{request_id}/decision",
                       {"decision": "approve", "reason": "mine"})  # fmt: skip
    assert status == 403 and "own request" in body["message"], body

    # An analyst has no queue at all; an auditor sees it read only. Both are refused by the API.
    alice = open_as("alice")
    alice_panel = open_panel(alice)
    assert alice_panel.locator('[role="tab"][data-tab="queue"]').is_hidden()
    assert alice_panel.locator('[data-action="approve"]').count() == 0
    dave = open_as("dave")
    dave_queue = open_panel(dave, "queue").locator('[data-tabpanel="queue"]')
    dave_card = card(dave_queue, request_id)
    dave_card.wait_for(timeout=UI_TIMEOUT_MS)
    assert dave_card.locator('[data-action="approve"]').count() == 0
    assert "Read only" in dave_card.inner_text()
    dave.screenshot(path=str(artifacts_dir / "ui-auditor-queue-read-only.png"))
    for user in ("alice", "dave"):
        status, body = api(lab, user, "POST", f"approvals/{request_id}/decision",
                           {"decision": "approve", "reason": "not mine to approve"})  # fmt: skip
        assert status == 403, (user, body)
    # Carol (another approver) may; then it leaves the queue.
    status, body = api(lab, "carol", "POST", f"approvals/{request_id}/decision",
                       {"decision": "deny", "reason": "cleanup"})  # fmt: skip
    assert status == 200, body
    own.wait_for(state="detached", timeout=PUSH_TIMEOUT_MS * 3)


def test_dataframe_with_pans_renders_masked(
    lab: Any, open_as: Callable[..., Any], artifacts_dir: Path
) -> None:
    # The PANs are built at run time, so the full numbers appear nowhere but in the kernel.
    source = (
        "import pandas as pd\n"
        "pd.DataFrame({'card_number': ['4' + '1' * 15, '5555' * 3 + '4444'], 'amount': [12.5, 310.0]})"
    )
    name = write_notebook(lab, "frame.ipynb", source)
    alice = open_as("alice")
    open_notebook(alice, name)
    run_cell(alice, 0)
    table = cell(alice, 0).locator(".jp-OutputArea-output table")
    table.wait_for(timeout=UI_TIMEOUT_MS)
    text = table.inner_text()
    assert "1111" in text and "4444" in text, text
    page_text = alice.locator("body").inner_text()
    assert "4111111111111111" not in page_text
    assert "5555555555554444" not in page_text
    cell(alice, 0).screenshot(path=str(artifacts_dir / "ui-dataframe-masked.png"))


def test_audit_view_lists_records_verifies_and_exports(
    lab: Any, open_as: Callable[..., Any], artifacts_dir: Path
) -> None:
    name = write_notebook(lab, "audited.ipynb", "print('audited-' + 'run')")
    alice = open_as("alice")
    open_notebook(alice, name)
    run_cell(alice, 0)
    cell(alice, 0).locator(".jp-OutputArea-output", has_text="audited-run").wait_for(timeout=UI_TIMEOUT_MS)

    dave = open_as("dave")
    panel = open_panel(dave)
    panel.locator('[data-action="open-audit"]').click()
    view = dave.locator("#governed-kernel-audit-view")
    view.wait_for(timeout=UI_TIMEOUT_MS)
    view.locator('[data-field="status"]', has_text="record(s)").wait_for(timeout=UI_TIMEOUT_MS)
    # Opening the view was itself recorded.
    view.locator('tr[data-event-type="audit.read"]').first.wait_for(timeout=UI_TIMEOUT_MS)

    view.locator('[data-filter="user"]').fill("alice")
    view.locator('[data-filter="event_type"]').fill("cell.end")
    view.locator('[data-action="apply"]').click()
    # The filtered load replaces the rows: no audit.read left, only alice's cell.end records.
    view.locator('tr[data-event-type="audit.read"]').first.wait_for(state="detached", timeout=UI_TIMEOUT_MS)
    row = view.locator('tr[data-event-type="cell.end"]', has_text="audited.ipynb")
    row.first.wait_for(timeout=UI_TIMEOUT_MS)
    assert view.locator('tbody tr:not([data-event-type="cell.end"])').count() == 0
    row.first.focus()
    row.first.press("Enter")
    detail = view.locator('[data-field="detail"]')
    assert "print('audited-' + 'run')" in detail.locator('[data-field="code"]').inner_text()
    assert "audited-run" in detail.locator('[data-field="output"]').inner_text()
    assert detail.locator('[data-field="policy_version"]').inner_text().startswith("sha256:")

    view.locator('[data-action="verify"]').click()
    verdict = view.locator('[data-field="verify"][data-state="ok"]')
    verdict.wait_for(timeout=UI_TIMEOUT_MS)
    assert "Audit chain intact" in verdict.inner_text()
    assert "records valid" in verdict.inner_text()
    dave.screenshot(path=str(artifacts_dir / "ui-audit-view.png"))

    with dave.expect_download(timeout=UI_TIMEOUT_MS) as csv_download:
        view.locator('[data-action="export-csv"]').click()
    csv_text = Path(csv_download.value.path()).read_text()
    assert csv_text.startswith("seq,time,user,")
    assert "cell.end" in csv_text and "audit.read" not in csv_text
    with dave.expect_download(timeout=UI_TIMEOUT_MS) as jsonl_download:
        view.locator('[data-action="export-jsonl"]').click()
    lines = Path(jsonl_download.value.path()).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records and all(r["event_type"] == "cell.end" and r["user"] == "alice" for r in records)

    # Analysts cannot read the log.
    status, _ = api(lab, "alice", "GET", "audit")
    assert status == 403
