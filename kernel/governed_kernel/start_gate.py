"""The start record's gate: a cell's code runs only once the service has its start record.

The record is written to the audit stream before IPython prepares the cell, and its answer is read
at the last moment before the cell's own code runs: when IPython applies its AST transformations
(``shell.transform_ast``), after the cell was transformed (magics, ``!`` escapes), stored in history,
compiled and parsed. The round trip to
the service overlaps that preparation instead of adding to it.

When the answer says the record was not stored (service down, refused, interrupted), the
transformation raises :class:`AuditUnavailable`, an ``InputRejected``: IPython's designed way to
refuse a cell, so none of its code runs and the reply is an error (``ename`` ``AuditUnavailable``).
If IPython never reaches that point (an empty cell, a syntax error), the governor reads the answer
after the cell. Any unexpected failure in the gate also refuses the cell (fail closed).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from IPython.core.error import InputRejected

from governed_kernel.audit_stream import PendingBatch
from governed_kernel.client_errors import ApprovalRefused, GovernanceUnavailable

UNDELIVERED = "the audit record could not be delivered, so the cell was not run"


class AuditUnavailable(InputRejected):
    """The cell's start record was not delivered: the cell did not run."""

    def _render_traceback_(self) -> list[str]:
        lines = str(self).splitlines() or [""]
        return [f"\x1b[0;31mAuditUnavailable\x1b[0m: {lines[0]}", *lines[1:]]


class PendingStart:
    """One cell's start record on its way; :meth:`finish` waits for the service's answer (once)."""

    def __init__(self, finish_audit: Callable[[PendingBatch], Any], batch: PendingBatch,
                 on_done: Callable[[bool], None]) -> None:  # fmt: skip
        self._finish_audit = finish_audit
        self._batch = batch
        self._on_done = on_done
        self.done = False
        self.failure: str | None = None

    def finish(self) -> None:
        """Block until the answer; raise AuditUnavailable if the record was not stored."""
        if not self.done:
            self.done = True
            try:
                self._finish_audit(self._batch)
            except (GovernanceUnavailable, ApprovalRefused) as error:
                self.failure = f"{UNDELIVERED}: {error}"
            except KeyboardInterrupt:
                self.failure = "interrupted while the audit record was being delivered; the cell was not run"
            except BaseException as error:  # fail closed on anything unexpected
                self.failure = f"the audit record's delivery failed ({error!r}), so the cell was not run"
            finally:
                self._on_done(self.failure is None)
        if self.failure is not None:
            raise AuditUnavailable(self.failure)


class StartGate:
    """Wraps the shell's ``transform_ast`` (an instance attribute over IPython's method); holds the
    running cell's pending start.

    Wrapping the method, rather than joining ``shell.ast_transformers``, keeps the gate out of
    IPython's transformer loop: there a transformer that raises is dropped while the list is being
    iterated, which would skip the next one. ``%time`` and ``%timeit`` also call ``transform_ast``;
    by then the cell's start is answered and the gate does nothing.
    """

    def __init__(self, suspended_guard: Callable[[], Any]) -> None:
        self.pending: PendingStart | None = None
        self._suspended_guard = suspended_guard

    def pass_through(self, original: Callable[[ast.AST], ast.AST]) -> Callable[[ast.AST], ast.AST]:
        def transform_ast(node: ast.AST) -> ast.AST:
            pending, self.pending = self.pending, None
            if pending is not None:
                with self._suspended_guard():  # the kernel's own socket work, not the cell's
                    pending.finish()  # raises AuditUnavailable: the cell is refused
            return original(node)

        transform_ast.governed_gate = self  # type: ignore[attr-defined]
        return transform_ast

    def install(self, shell: Any) -> None:
        """(Re)install on ``shell``; checked before every cell."""
        current = shell.transform_ast
        if getattr(current, "governed_gate", None) is not self:
            shell.transform_ast = self.pass_through(current)
