"""The error a policy that cannot be used raises: it points to ``file:line:column``.

The kernel turns a :class:`PolicyError` into "no cell runs" (fail closed) and shows its message,
so the message must say where, what is wrong and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A position in a policy file; ``line`` and ``column`` count from 1 (0 when unknown)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy: where, at which key path, and a message with what is allowed."""

    location: Location
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.location}: {where}{self.message}"


class PolicyError(Exception):
    """A policy that cannot be loaded. ``location`` is the first problem's; ``problems`` lists all."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("PolicyError needs at least one problem")
        self.problems = sorted(problems, key=lambda p: (p.location.line, p.location.column, p.path))
        self.location = self.problems[0].location
        lines = [str(problem) for problem in self.problems]
        if len(lines) > 1:
            lines.insert(0, f"{len(lines)} problems in policy {self.location.file}:")
        super().__init__("\n".join(lines))
