"""Who is asking: people (from jupyter_server's identity) and kernels (from their credential).

Roles come from the policy (``roles.analysts|approvers|auditors``: users and groups). Group
membership comes from the identity provider when it knows groups (JupyterHub does), else from the
``GovernedServerApp.groups`` mapping, so a standalone server can still name groups in its policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from governed_kernel.policy.model import Members, Roles

Role = Literal["analyst", "approver", "auditor"]
ROLES: tuple[Role, ...] = ("analyst", "approver", "auditor")


@dataclass(frozen=True)
class Person:
    """An authenticated user of the API."""

    username: str
    display_name: str
    groups: frozenset[str]


@dataclass(frozen=True)
class KernelPrincipal:
    """A kernel, authenticated by the credential the server minted for it alone."""

    kernel_id: str
    username: str
    """The user the server started the kernel for: the requester of its approvals, the actor of its cells."""


class RoleResolver:
    """Answers "does this person hold this role?" from the policy and the configured groups."""

    def __init__(self, roles: Roles, groups: Mapping[str, Iterable[str]] | None = None) -> None:
        self._members: dict[Role, Members] = {
            "analyst": roles.analysts,
            "approver": roles.approvers,
            "auditor": roles.auditors,
        }
        self._configured_groups: dict[str, frozenset[str]] = {}
        for group, users in (groups or {}).items():
            for user in users:
                self._configured_groups[user] = self._configured_groups.get(user, frozenset()) | {group}

    def person(self, user: Any) -> Person:
        """A :class:`Person` from a jupyter_server ``User`` (or anything with a ``username``)."""
        username = str(getattr(user, "username", user))
        own_groups = frozenset(str(g) for g in (getattr(user, "groups", None) or ()))
        return Person(
            username=username,
            display_name=str(getattr(user, "display_name", "") or username),
            groups=own_groups | self._configured_groups.get(username, frozenset()),
        )

    def has_role(self, person: Person, role: Role) -> bool:
        members = self._members[role]
        return person.username in members.users or bool(person.groups & set(members.groups))

    def roles_of(self, person: Person) -> list[Role]:
        return [role for role in ROLES if self.has_role(person, role)]
