"""The JupyterLab experience of the governed kernel, in Debian's Chromium, with several identities.

One JupyterLab (module-scoped) with named users from the test policy: alice (analyst), bob and carol
(approvers), dave (auditor). Each person is a separate browser context, logged in by their token.
Display names come in both forms the UI must handle: plain ("Alice", "Carol") and naming the role
("Bob (approver)", "Dave (auditor)", as the demo's used to).
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
from lab_helpers import run_cell, wait_for_notebook  # type: ignore[import-not-found]

from governed_kernel import KERNEL_NAME

pytestmark = pytest.mark.browser

UI_TIMEOUT_MS = 60_000
PUSH_TIMEOUT_MS = 2_000
PANEL = "#governed-kernel-governance-panel"
PANEL_TAB = '.jp-SideBar.jp-mod-right [data-id="governed-kernel-governance-panel"]'
STATUS_ITEM = "#governed-kernel-status"
DISPLAY_NAMES = {"alice": "Alice", "bob": "Bob (approver)", "carol": "Carol", "dave": "Dave (auditor)"}


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
                    token: {"username": name, "display_name": DISPLAY_NAMES[name]}
                    for name, token in TOKENS.items()
                }
            },
            "GovernedServerApp": {"policy_path": str(policy)},
            "LabApp": {"expose_app_in_browser": True},
        }
    )


@pytest.fixture
def open_as(browser: Any, lab: Any) -> Iterator[Callable[..., Any]]:
    """``open_as(user, path)``: a page in a new browser context logged in as ``user``; ``init_script``
    runs in the page before JupyterLab's own scripts."""
    contexts: list[Any] = []

    def open_page(user: str, path: str = "", init_script: str | None = None) -> Any:
        # A fresh workspace per page: the server keeps layouts per workspace name, not per user, and a
        # restored layout would reopen (and restart kernels for) earlier tests' notebooks.
        path = path or f"lab/workspaces/{user}-{uuid.uuid4().hex[:8]}"
        context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        if init_script:
            page.add_init_script(init_script)
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
    # Kernels outlive the pages: shut this test's kernels down so the next test has the CPU. Each
    # person sees and stops only the kernels they started.
    for token in TOKENS.values():
        headers = {"Authorization": f"token {token}"}
        with urllib.request.urlopen(urllib.request.Request(f"{lab.url}/api/kernels", headers=headers)) as got:
            kernels = json.load(got)
        for kernel in kernels:
            request = urllib.request.Request(
                f"{lab.url}/api/kernels/{kernel['id']}", method="DELETE", headers=headers
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
    assert wait_for_notebook(page, name, UI_TIMEOUT_MS)["name"] == KERNEL_NAME


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
    # The panel shows its role-dependent controls once it knows the user's roles.
    page.locator(f'{PANEL}[data-state="ready"]').wait_for(timeout=UI_TIMEOUT_MS)
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


def request_as_kernel(
    lab: Any, user: str, code: str, rules: list[dict[str, Any]], notebook: str = "own.ipynb"
) -> str:
    """Open a pending approval request for ``user`` through the kernel API, with a kernel credential
    minted for the occasion (as the server does for each kernel it starts); returns its id."""
    from governed_server.service.credentials import CredentialIssuer
    from governed_server.service.store import open_store

    store = open_store(db_url(lab))
    try:
        token = CredentialIssuer(store).mint(f"ui-test-{letters_only_id()}", user)
    finally:
        store.close()
    me = api(lab, user, "GET", "me")[1]
    request = urllib.request.Request(
        f"{lab.url}/governance/api/kernel/approvals",
        method="POST",
        data=json.dumps(
            {
                "cell_hash": hashlib.sha256(code.encode()).hexdigest(),
                "code": code,
                "policy_version": me["policy"]["version"],
                "rules": rules,
                "notebook_path": notebook,
                "cell_id": "own-1",
            }
        ).encode(),
        headers={"Authorization": f"GovernedKernel {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["id"])


def alice_runs_a_gated_cell(open_as: Callable[..., Any], name: str) -> tuple[Any, Any, Any, str]:
    """Bob opens his queue, Alice runs the first cell of ``name``, which waits for approval: Bob's
    page, his queue, Alice's page and her request's id."""
    bob = open_as("bob")
    queue = open_panel(bob, "queue").locator('[data-tabpanel="queue"]')
    alice = open_as("alice")
    open_notebook(alice, name)
    run_cell(alice, 0)
    return bob, queue, alice, request_id_of(alice, 0)


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
    # The source, syntax highlighted (token spans in the numbered lines), with the span of the rule that
    # the kernel's classifier matched marked: the shell escape on line 1.
    code = pending.locator('[data-field="code"]')
    code.locator(".jp-GovernanceRequest-line span[class]").first.wait_for(timeout=UI_TIMEOUT_MS)
    assert code.text_content() == "!echo governed-approve-$((40+2))"
    mark = code.locator('mark.jp-GovernanceRequest-span[data-rules~="shell-commands"]')
    assert mark.text_content() == "!echo governed-approve-$((40+2))"
    assert "line 1, column 1" in pending.locator('li[data-rule="shell-commands"]').inner_text()

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
    bob, queue, alice, request_id = alice_runs_a_gated_cell(open_as, name)
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

    from governed_server.service.store import open_store
    from governed_server.service.store.schema import approval_requests

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
    # A pending request by bob (an approver), opened through bob's kernel credential.
    code = "import subprocess\nsubprocess.run(['true'])\n"
    request_id = request_as_kernel(
        lab,
        "bob",
        code,
        [{"id": "processes-and-native-code", "action": "approve", "reason": "test", "pci": []}],
    )

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


# -- what each role sees --------------------------------------------------------------------------

# Records, from the first script of the page on, whether the panel ever showed a control that depends
# on a role: it must not show one before it knows the roles and take it away after.
ROLE_CONTROLS_WATCH = """
(() => {
  const seen = { audit: false, queue: false, history: false };
  window.__governanceSeen = seen;
  const check = () => {
    const panel = document.getElementById('governed-kernel-governance-panel');
    if (!panel) return;
    seen.audit = seen.audit || !!panel.querySelector('[data-action="open-audit"]');
    for (const tab of ['queue', 'history']) {
      const node = panel.querySelector(`[role="tab"][data-tab="${tab}"]`);
      seen[tab] = seen[tab] || (!!node && !node.hidden && !node.closest('[hidden]'));
    }
  };
  new MutationObserver(check).observe(document, { subtree: true, childList: true, attributes: true });
})();
"""

GOVERNANCE_COMMANDS = ("governance:open-audit", "governance:open-approvals", "governance:open-my-requests")


def visible_tabs(panel: Any) -> list[str]:
    return [
        str(t) for t in panel.locator('[role="tab"]:visible').evaluate_all("ts => ts.map(t => t.dataset.tab)")
    ]


def selected_tab(panel: Any) -> str:
    return str(panel.locator('[role="tab"][aria-selected="true"]').get_attribute("data-tab"))


def command_states(page: Any) -> dict[str, tuple[bool, bool]]:
    """Each governance command's (isEnabled, isVisible)."""
    states = page.evaluate(
        """(ids) => Object.fromEntries(ids.map(id => [id, [
            window.jupyterapp.commands.isEnabled(id), window.jupyterapp.commands.isVisible(id)]]))""",
        list(GOVERNANCE_COMMANDS),
    )
    return {key: (bool(value[0]), bool(value[1])) for key, value in states.items()}


def palette_labels(page: Any) -> list[str]:
    """The labels the command palette offers for "Governance"."""
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:activate-command-palette')")
    search = page.locator(".lm-CommandPalette-input:visible")
    search.fill("Governance")
    items = page.locator(".lm-CommandPalette-item:visible")
    items.filter(has_text="Show My Approval Requests").first.wait_for(timeout=UI_TIMEOUT_MS)
    labels = [str(t) for t in items.locator(".lm-CommandPalette-itemLabel").all_inner_texts()]
    search.press("Escape")
    return labels


def identity_of(panel: Any) -> tuple[str, str, list[str]]:
    """The identity line's text, the name shown and the role badges."""
    identity = panel.locator('[data-field="identity"]')
    roles = identity.locator("[data-role]").evaluate_all("rs => rs.map(r => r.dataset.role)")
    return identity.inner_text(), identity.locator('[data-field="user"]').inner_text(), roles


def test_each_role_sees_only_what_it_can_use(
    lab: Any, open_as: Callable[..., Any], artifacts_dir: Path
) -> None:
    # An analyst: My requests and Service, opened on My requests; no audit log anywhere, not even briefly.
    alice = open_as("alice", init_script=ROLE_CONTROLS_WATCH)
    panel = open_panel(alice)
    assert visible_tabs(panel) == ["mine", "service"]
    assert selected_tab(panel) == "mine"
    assert panel.locator('[data-action="open-audit"]').count() == 0
    assert alice.evaluate("() => window.__governanceSeen") == {
        "audit": False,
        "queue": False,
        "history": False,
    }
    states = command_states(alice)
    assert states["governance:open-audit"] == (False, False), states
    assert states["governance:open-approvals"] == (False, False), states
    assert states["governance:open-my-requests"] == (True, True), states
    labels = palette_labels(alice)
    assert "Open Audit Log" not in labels and "Show Approval Queue" not in labels, labels
    # Run anyway (a script, a stale shortcut): the audit view does not open for an analyst.
    alice.evaluate("() => window.jupyterapp.commands.execute('governance:open-audit')")
    assert alice.locator("#governed-kernel-audit-view").count() == 0
    # The name once, then the role as a badge.
    text, name, roles = identity_of(panel)
    assert name == "Alice" and roles == ["analyst"], (text, name, roles)
    assert text.count("Alice") == 1 and text.count("analyst") == 1, text
    alice.screenshot(path=str(artifacts_dir / "ui-analyst-panel.png"))

    # An approver ("Bob (approver)"): every tab, opened on Queue, but no audit log (not an auditor).
    bob = open_as("bob", init_script=ROLE_CONTROLS_WATCH)
    panel = open_panel(bob)
    assert visible_tabs(panel) == ["queue", "history", "mine", "service"]
    assert selected_tab(panel) == "queue"
    assert panel.locator('[data-tabpanel="queue"]').is_visible()
    assert panel.locator('[data-action="open-audit"]').count() == 0
    assert bob.evaluate("() => window.__governanceSeen.audit") is False
    states = command_states(bob)
    assert states["governance:open-approvals"] == (True, True), states
    assert states["governance:open-audit"] == (False, False), states
    text, name, roles = identity_of(panel)
    assert name == "Bob" and roles == ["approver"], (text, name, roles)
    assert text.count("Bob") == 1 and text.count("approver") == 1, text

    # An auditor ("Dave (auditor)"): the queue (read only), opened on Queue, and the audit log.
    dave = open_as("dave")
    panel = open_panel(dave)
    assert visible_tabs(panel) == ["queue", "history", "mine", "service"]
    assert selected_tab(panel) == "queue"
    assert panel.locator('[data-action="open-audit"]').is_visible()
    states = command_states(dave)
    assert states["governance:open-audit"] == (True, True), states
    assert states["governance:open-approvals"] == (True, True), states
    labels = palette_labels(dave)
    assert "Open Audit Log" in labels and "Show Approval Queue" in labels, labels
    text, name, roles = identity_of(panel)
    assert name == "Dave" and roles == ["auditor"], (text, name, roles)
    assert text.count("Dave") == 1 and text.count("auditor") == 1, text
    dave.screenshot(path=str(artifacts_dir / "ui-auditor-panel.png"))


def test_request_card_shows_the_whole_source_with_the_rule_spans_marked(
    lab: Any, open_as: Callable[..., Any], artifacts_dir: Path
) -> None:
    lines = [
        "import subprocess",
        "# a reviewer reads every line",
        "!ls -la /tmp",
        "note = '" + "a long line that has to wrap " * 20 + "'",
        *[f"value_{n} = {n} * 2  # filler line {n}" for n in range(5, 30)],
        "result = subprocess.run(['true'])",
    ]
    assert len(lines) == 30
    source = "\n".join(lines)
    name = write_notebook(lab, "spans.ipynb", source)
    bob, queue, _alice, request_id = alice_runs_a_gated_cell(open_as, name)

    # The kernel's classifier found the shell escape on line 3 and the process on line 30; the server
    # sends their spans as numbers (lines and columns from 1, the end column exclusive).
    view = api(lab, "bob", "GET", f"approvals/{request_id}")[1]
    spans = {rule["id"]: rule.get("span") for rule in view["rules"]}
    assert spans == {
        "shell-commands": {"line": 3, "column": 1, "end_line": 3, "end_column": 13},
        "processes-and-native-code": {"line": 30, "column": 10, "end_line": 30, "end_column": 24},
    }, view["rules"]

    pending = card(queue, request_id)
    pending.wait_for(timeout=PUSH_TIMEOUT_MS)
    code = pending.locator('[data-field="code"]')
    code.locator(".jp-GovernanceRequest-line span[class]").first.wait_for(timeout=UI_TIMEOUT_MS)
    # Every line, whole and in order, each in its numbered line; nothing replaced by an ellipsis.
    shown = code.evaluate(
        "pre => Array.from(pre.querySelectorAll('.jp-GovernanceRequest-line'))"
        ".map(line => [line.dataset.line, line.textContent])"
    )
    assert shown == [[str(n), text] for n, text in enumerate(lines, 1)]
    assert code.text_content() == source
    # Nothing is cut at the side (long lines wrap inside the card); a long cell scrolls in the card.
    box = code.evaluate(
        """pre => {
            const style = getComputedStyle(pre);
            const rect = pre.getBoundingClientRect();
            const long = pre.querySelector('[data-line="4"]').getBoundingClientRect();
            const short = pre.querySelector('[data-line="1"]').getBoundingClientRect();
            return {
                scrollWidth: pre.scrollWidth, clientWidth: pre.clientWidth,
                scrollHeight: pre.scrollHeight, clientHeight: pre.clientHeight,
                overflowY: style.overflowY, textOverflow: style.textOverflow,
                longRight: long.right, right: rect.right, longHeight: long.height, lineHeight: short.height,
            };
        }"""
    )
    assert box["scrollWidth"] <= box["clientWidth"], box
    assert box["longRight"] <= box["right"] and box["longHeight"] > 3 * box["lineHeight"], box
    assert box["textOverflow"] != "ellipsis", box
    assert box["overflowY"] in ("auto", "scroll") and box["scrollHeight"] > box["clientHeight"], box
    assert box["clientHeight"] >= 15 * box["lineHeight"], box

    # Each rule's span is marked on its line: the marked text is what the span covers.
    def marked(rule: str) -> Any:
        return code.locator(f'mark.jp-GovernanceRequest-span[data-rules~="{rule}"]')

    line_of = "mark => mark.closest('.jp-GovernanceRequest-line').dataset.line"
    shell, process = marked("shell-commands"), marked("processes-and-native-code")
    assert shell.count() == 1 and process.count() == 1
    assert shell.text_content() == "!ls -la /tmp" and shell.evaluate(line_of) == "3"
    assert process.text_content() == "subprocess.run" and process.evaluate(line_of) == "30"
    flagged = code.locator(".jp-GovernanceRequest-line.jp-mod-flagged")
    assert flagged.evaluate_all("ls => ls.map(l => l.dataset.line)") == ["3", "30"]
    # Accessible: the mark names its rule and is described by the rule's entry in the list.
    assert "shell-commands" in str(shell.get_attribute("title"))
    described = bob.locator(f"#{shell.get_attribute('aria-describedby')}")
    assert described.get_attribute("data-rule") == "shell-commands"
    # The rule list says where.
    assert "line 3, column 1" in pending.locator('li[data-rule="shell-commands"]').inner_text()
    assert "line 30, column 10" in pending.locator('li[data-rule="processes-and-native-code"]').inner_text()
    process.scroll_into_view_if_needed()
    bob.screenshot(path=str(artifacts_dir / "ui-request-source-spans.png"))

    # A span that is no span (missing, or past the last line) is neither marked nor named.
    odd_id = request_as_kernel(
        lab,
        "alice",
        "import os\nos.system('true')",
        [
            {"id": "shell-commands", "action": "approve", "reason": "no span", "pci": []},
            {
                "id": "processes-and-native-code",
                "action": "approve",
                "reason": "past the end",
                "pci": [],
                "span": {"line": 99, "column": 1, "end_line": 99, "end_column": 5},
            },
        ],
        notebook="odd.ipynb",
    )
    odd = card(queue, odd_id)
    odd.wait_for(timeout=UI_TIMEOUT_MS)
    assert odd.locator("mark").count() == 0
    assert odd.locator(".jp-mod-flagged").count() == 0
    rules_text = odd.locator(".jp-GovernanceRequest-rules").inner_text()
    assert "line" not in rules_text and "*" not in rules_text, rules_text
    for done in (request_id, odd_id):
        status, body = api(lab, "alice", "POST", f"approvals/{done}/cancel", {})
        assert status == 200, body
