"""Typed, immutable view of a validated policy.

Classifier, runtime guard, approvals and audit read these dataclasses, never raw YAML, so a policy
that reached them is known to be complete and well-formed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["allow", "approve", "deny"]
Mode = Literal["enforce", "observe"]
Validity = Literal["once", "window"]

ACTIONS: tuple[Action, ...] = ("allow", "approve", "deny")
"""Actions from least to most strict; the decision for a cell is the strictest matched one."""

RUNTIME_KINDS = ("process", "native_code", "network", "file_write", "audit_hook")
SQL_KINDS = ("cardholder_read", "cardholder_dml", "cardholder_ddl", "unresolved")
DYNAMIC_KINDS = ("exec", "eval", "compile", "import", "getattr", "run_cell", "magic")

PLACEHOLDER = "gk_param"
"""Prefix of identifiers that stand for values only known at run time (in SQL built by the cell)."""


def strictness(action: Action) -> int:
    """Order actions so ``max`` picks the strictest."""
    return ACTIONS.index(action)


@dataclass(frozen=True)
class Match:
    """What a rule matches; a rule matches when any one criterion does."""

    references: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    magics: tuple[str, ...] = ()
    dynamic: tuple[str, ...] = ()
    sql: tuple[str, ...] = ()
    remote_schemes: tuple[str, ...] = ()
    runtime: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    pci: tuple[str, ...]
    action: Action
    match: Match


@dataclass(frozen=True)
class Members:
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Roles:
    analysts: Members
    approvers: Members
    auditors: Members


@dataclass(frozen=True)
class Approvals:
    required_approvers: int
    pending_ttl_minutes: int
    validity: Validity
    window_minutes: int | None = None


DEFAULT_CARDHOLDER_TABLES = ("*card*", "*cardholder*", "pan", "pans", "pan_*", "*_pan", "*_pan_*")
DEFAULT_CARDHOLDER_COLUMNS = (
    "pan",
    "*_pan",
    "card_number",
    "cardnumber",
    "cvv",
    "cvv2",
    "cvc",
    "track1",
    "track2",
    "track_data",
    "pin_block",
)


@dataclass(frozen=True)
class DataRules:
    cardholder_tables: tuple[str, ...] = DEFAULT_CARDHOLDER_TABLES
    cardholder_columns: tuple[str, ...] = DEFAULT_CARDHOLDER_COLUMNS
    sql_dialect: str | None = None


@dataclass(frozen=True)
class AuditSettings:
    retention_days: int
    checkpoint_interval_minutes: int


@dataclass(frozen=True)
class RuntimeSettings:
    network_allow_hosts: tuple[str, ...] = ("localhost", "127.0.0.0/8", "::1")
    write_allow_paths: tuple[str, ...] = ("{cwd}", "{tmp}")


DEFAULT_COMM_TARGETS = ("jupyter.widget", "jupyter.widget.control", "jupyter.widget.version")
"""The comms JupyterLab's widget manager opens (ipywidgets)."""


@dataclass(frozen=True)
class RequestSettings:
    """What the server's inbound guard lets through to a kernel besides cells (enforce mode)."""

    comm_targets: tuple[str, ...] = DEFAULT_COMM_TARGETS
    allow_debugger: bool = False
    allow_subshells: bool = False
    require_guard: bool = False
    """Refuse the cells of kernels whose requests reach them around any guard (a client talking to
    the kernel's sockets directly: plain ``jupyter execute``, papermill) instead of only marking them."""


@dataclass(frozen=True)
class SessionSettings:
    share_kernels: bool = False
    """Whether a person may use a kernel another person started. Off: one kernel per person, so every
    cell is attributed to the person who sent it."""


@dataclass(frozen=True)
class Policy:
    """A loaded policy. ``version`` is ``sha256:<hex>`` of the canonical content (see loader)."""

    name: str
    description: str
    mode: Mode
    roles: Roles
    approvals: Approvals
    data: DataRules
    audit: AuditSettings
    runtime: RuntimeSettings
    rules: tuple[Rule, ...]
    version: str
    source: str
    masking: Mapping[str, Any] = field(default_factory=dict)
    """Kept as a plain mapping: ``governed_kernel.masking.MaskingConfig.from_mapping`` reads it."""
    sessions: SessionSettings = field(default_factory=SessionSettings)
    requests: RequestSettings = field(default_factory=RequestSettings)

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def runtime_rules(self) -> dict[str, Rule]:
        """Runtime kind → the strictest rule that enforces it (first in file order on ties)."""
        chosen: dict[str, Rule] = {}
        for rule in self.rules:
            for kind in rule.match.runtime:
                current = chosen.get(kind)
                if current is None or strictness(rule.action) > strictness(current.action):
                    chosen[kind] = rule
        return chosen
