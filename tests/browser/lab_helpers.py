"""Driving a notebook in JupyterLab from a Playwright page (``LabApp.expose_app_in_browser``)."""

from __future__ import annotations

from typing import Any


def wait_for_notebook(page: Any, path: str, timeout_ms: float) -> dict[str, str]:
    """Wait until ``path`` is the current notebook with an idle kernel; its kernel's id and name."""
    page.wait_for_function(
        """(path) => {
            const w = window.jupyterapp.shell.currentWidget;
            const s = w && w.sessionContext;
            return !!s && w.context.path === path && !!s.session && !!s.session.kernel
                && s.kernelDisplayStatus === 'idle';
        }""",
        arg=path,
        timeout=timeout_ms,
    )
    kernel: dict[str, str] = page.evaluate(
        "() => { const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;"
        " return {id: k.id, name: k.name}; }"
    )
    return kernel


def run_cell(page: Any, index: int) -> Any:
    """Start running cell ``index`` of the current notebook (does not wait: it may wait for approval);
    the cell's locator."""
    page.evaluate(
        """(index) => {
            const nb = window.jupyterapp.shell.currentWidget;
            nb.content.activeCellIndex = index;
            void window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        index,
    )
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").nth(index)
