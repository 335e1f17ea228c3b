"""Files that hold card numbers, opened in JupyterLab (Debian's Chromium): shown masked, read-only,
saving refused with a clear message, *Save As* to a new name working, the file on disk unchanged.

The files are written into the server's root before Lab opens them, as an allowed cell could have
written them. JupyterLab is started as ``jupyter lab`` runs after ``pip install .``, with
``expose_app_in_browser`` so the test can read the documents' models.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

UI_TIMEOUT_MS = 90_000
VISA, MC, AMEX = "4111111111111111", "5555555555554444", "378282246310005"
PANS = (VISA, MC, AMEX)
TEXT = f"customers\nana {VISA}\nbob {MC[:4]} {MC[4:8]} {MC[8:12]} {MC[12:]}\ncarl {AMEX}\n"


def notebook() -> str:
    cells = [
        {"cell_type": "markdown", "id": "note", "metadata": {}, "source": [f"Refund to {AMEX}"]},
        {"cell_type": "code", "id": "lookup", "metadata": {}, "execution_count": 1,
         "source": [f"card = '{VISA}'\n", "card"],
         "outputs": [{"output_type": "execute_result", "execution_count": 1, "metadata": {},
                      "data": {"text/plain": [f"'{VISA}'"]}},
                     {"output_type": "stream", "name": "stdout", "text": [f"charged {MC}\n"]}]},
    ]  # fmt: skip
    nb = {"nbformat": 4, "nbformat_minor": 5, "cells": cells,
          "metadata": {"kernelspec": {"name": "governed-python", "display_name": "Python 3 (governed)",
                                      "language": "python"}}}  # fmt: skip
    return json.dumps(nb, indent=1) + "\n"


def open_document(page: Any, lab: Any, path: str) -> None:
    page.goto(lab.lab_url(f"lab/tree/{path}"), timeout=UI_TIMEOUT_MS)
    page.wait_for_function(
        """(path) => {
            const app = window.jupyterapp;
            const w = app && app.shell.currentWidget;
            return !!w && !!w.context && w.context.path === path && w.context.isReady;
        }""",
        arg=path,
        timeout=UI_TIMEOUT_MS,
    )


def document_text(page: Any) -> str:
    """What the open document holds in the browser (the model, not only what is on screen)."""
    return str(page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.toString()"))


def try_to_save(page: Any) -> str:
    """Save as the File menu does; the dialog's text (dismissed)."""
    page.evaluate("() => void window.jupyterapp.commands.execute('docmanager:save')")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=UI_TIMEOUT_MS)
    text = str(dialog.inner_text())
    dialog.locator(".jp-Dialog-button").last.click()
    dialog.wait_for(state="detached", timeout=UI_TIMEOUT_MS)
    return text


def put(lab: Any, path: str, model: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{lab.url}/api/contents/{path}", data=json.dumps(model).encode(), method="PUT",
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_text_file_with_card_numbers_opens_masked_and_read_only(
    start_lab: Any, page: Any, artifacts_dir: Path
) -> None:
    lab = start_lab({"LabApp": {"expose_app_in_browser": True}})
    path = lab.root_dir / "customers.txt"
    path.write_text(TEXT)
    open_document(page, lab, "customers.txt")
    editor = page.locator(".jp-FileEditor .cm-content").first
    editor.wait_for(timeout=UI_TIMEOUT_MS)
    shown = editor.inner_text()
    assert "ana ************1111" in shown and "bob **** **** **** 4444" in shown, shown
    held = document_text(page) + page.locator("body").inner_text()
    assert not any(pan in held for pan in PANS)
    assert (
        page.evaluate("() => window.jupyterapp.shell.currentWidget.context.contentsModel.writable") is False
    )
    # Typing makes it dirty; saving is refused by Lab with what to do, and the server would refuse it too.
    editor.click()
    page.keyboard.type("edited ")
    message = try_to_save(page)
    assert "read-only" in message, message
    page.screenshot(path=str(artifacts_dir / "outbound-text-read-only.png"))
    status, body = put(lab, "customers.txt", {"type": "file", "format": "text", "content": shown})
    assert status == 409 and "Save As" in body["message"], body
    assert path.read_text() == TEXT


def test_a_notebook_with_card_numbers_opens_masked_read_only_and_saves_as_a_masked_copy(
    start_lab: Any, page: Any, artifacts_dir: Path
) -> None:
    lab = start_lab({"LabApp": {"expose_app_in_browser": True}})
    path = lab.root_dir / "refunds.ipynb"
    path.write_text(notebook())
    open_document(page, lab, "refunds.ipynb")
    panel = page.locator(".jp-NotebookPanel:visible")
    panel.locator(".jp-OutputArea-output", has_text="charged").first.wait_for(timeout=UI_TIMEOUT_MS)
    shown = panel.inner_text()
    assert "************1111" in shown and "charged ************4444" in shown, shown
    held = document_text(page) + page.locator("body").inner_text()
    assert not any(pan in held for pan in PANS), "a card number reached the browser"
    # JupyterLab marks it read-only (toolbar) and will not save it; the file stays as it was.
    panel.locator('[data-jp-item-name="read-only-indicator"]').wait_for(timeout=UI_TIMEOUT_MS)
    message = try_to_save(page)
    assert "read-only" in message, message
    page.screenshot(path=str(artifacts_dir / "outbound-notebook-read-only.png"))
    assert path.read_text() == notebook()
    # Save As: a masked copy under a new name, writable, and the original untouched.
    page.evaluate("() => void window.jupyterapp.commands.execute('docmanager:save-as')")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=UI_TIMEOUT_MS)
    name = dialog.locator("input").first
    name.fill("refunds-masked.ipynb")
    dialog.locator(".jp-mod-accept").click()
    # Lab opens the copy and closes the read-only original, asking about its unsaved state: discard.
    closing = page.locator(".jp-Dialog", has_text="before closing")
    closing.wait_for(timeout=UI_TIMEOUT_MS)
    closing.locator(".jp-Dialog-button", has_text="Discard").click()
    copy = lab.root_dir / "refunds-masked.ipynb"
    opened = """(path) => Array.from(window.jupyterapp.shell.widgets('main')).map((w) => w.context)
        .filter((c) => c && c.path === path && c.isReady).map((c) => c.contentsModel.writable)"""
    page.wait_for_function(f"() => ({opened})('refunds-masked.ipynb').length === 1", timeout=UI_TIMEOUT_MS)
    assert page.evaluate(f"() => ({opened})('refunds-masked.ipynb')") == [True]
    assert page.evaluate(f"() => ({opened})('refunds.ipynb')") == []  # the original was closed
    saved = copy.read_text()
    assert "************1111" in saved and not any(pan in saved for pan in PANS)
    assert path.read_text() == notebook()
    page.screenshot(path=str(artifacts_dir / "outbound-notebook-saved-as.png"))
