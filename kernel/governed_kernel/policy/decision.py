"""What classification returns: the action for a cell, and each matched rule with where and why.

A decision is recorded with every cell (with the policy version), shown to the analyst and to the
approver, so it is plain data with a stable JSON form.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from governed_kernel.policy.model import Action, Mode, strictness


@dataclass(frozen=True)
class Span:
    """Where in the cell: lines count from 1, columns from 1 (as editors show them)."""

    line: int
    column: int
    end_line: int
    end_column: int

    def to_dict(self) -> dict[str, int]:
        return {
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
        }

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"

    def fitted(self, lines: list[str]) -> Span:
        """This span inside the cell as typed. Rules read the Python that IPython makes of a cell
        (``!ls`` becomes ``get_ipython().system('ls')``), whose lines are longer than the typed ones:
        an approver's highlight must stay on what the analyst wrote."""
        count = max(len(lines), 1)

        def width(line: int) -> int:
            return len(lines[line - 1]) + 1 if lines else 1

        line = min(max(self.line, 1), count)
        end_line = min(max(self.end_line, line), count)
        column = min(max(_characters(lines, line, self.column), 1), width(line))
        end_column = min(max(_characters(lines, end_line, self.end_column), 1), width(end_line))
        if lines:
            typed = lines[line - 1]
            column = max(column, len(typed) - len(typed.lstrip()) + 1)  # not on the indentation
        if lines and lines[line - 1][column - 1 : column] in ("!", "%"):
            end_line, end_column = line, width(line)  # an escape or magic: IPython rewrote the line whole
        if end_line == line:
            end_column = max(end_column, column)
        return Span(line, column, end_line, end_column)


@dataclass(frozen=True)
class Finding:
    """One rule matched at one place. ``reason`` is one line for humans; ``subject`` what matched."""

    rule_id: str
    action: Action
    criterion: str
    subject: str
    reason: str
    span: Span
    pci: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.rule_id,
            "action": self.action,
            "criterion": self.criterion,
            "subject": self.subject,
            "reason": self.reason,
            "span": self.span.to_dict(),
            "pci": list(self.pci),
        }


def _characters(lines: list[str], line: int, column: int) -> int:
    """A column that Python's AST counts in UTF-8 bytes, counted in characters (as editors do)."""
    if not lines or line > len(lines) or lines[line - 1].isascii():
        return column
    return len(lines[line - 1].encode()[: max(column - 1, 0)].decode(errors="ignore")) + 1


def fit_spans(findings: Iterable[Finding], cell: str) -> tuple[Finding, ...]:
    """``findings`` with their spans inside ``cell`` as typed (see :meth:`Span.fitted`)."""
    lines = cell.splitlines()
    return tuple(
        finding if (fitted := finding.span.fitted(lines)) == finding.span else replace(finding, span=fitted)
        for finding in findings
    )


@dataclass(frozen=True)
class Decision:
    """The strictest action over all findings (``allow`` when none); ``notes`` explain special cases."""

    action: Action
    findings: tuple[Finding, ...]
    policy_version: str
    mode: Mode
    notes: tuple[str, ...] = field(default=())

    @property
    def gated(self) -> bool:
        """True when the cell must not run as is: enforce mode and not ``allow``."""
        return self.mode == "enforce" and self.action != "allow"

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(finding.rule_id for finding in self.findings))

    def summary(self) -> str:
        """One line: the decision and the rules behind it."""
        if not self.findings:
            return f"{self.action}: no rule matched"
        return f"{self.action}: " + "; ".join(
            f"{f.rule_id} at {f.span} ({f.reason})" for f in self.findings if f.action == self.action
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.action,
            "mode": self.mode,
            "policy_version": self.policy_version,
            "rules": [finding.to_dict() for finding in self.findings],
            "notes": list(self.notes),
        }


def strictest(findings: tuple[Finding, ...]) -> Action:
    action: Action = "allow"
    for finding in findings:
        if strictness(finding.action) > strictness(action):
            action = finding.action
    return action
