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
HUB_SCOPES: dict[Role, str] = {
    "approver": "custom:governance:approve",
    "auditor": "custom:governance:audit",
}
"""Under JupyterHub, the scope a token must carry, besides the policy's role, to act in that role."""


@dataclass(frozen=True)
class Person:
    """An authenticated user of the API."""

    username: str
    display_name: str
    groups: frozenset[str]
    scopes: frozenset[str] | None = None
    """The Hub scopes of the token behind this request (a team deployment); None outside a Hub."""
    token_id: str = ""
    """The Hub's id of that token (not the token): which credential made a decision."""

    def authority(self) -> dict[str, Any]:
        """What a decision's record keeps of the credential behind it."""
        found: dict[str, Any] = {"groups": sorted(self.groups)}
        if self.scopes is not None:
            found["hub_scopes"] = sorted(s for s in self.scopes if s.startswith("custom:governance:"))
            found["hub_token_id"] = self.token_id
        return found


@dataclass(frozen=True)
class KernelPrincipal:
    """A kernel, authenticated by the credential the server minted for it alone."""

    kernel_id: str
    username: str
    """The user the server started the kernel for: the requester of its approvals, the actor of its cells."""
    kind: str = "kernel"
    """``kernel``: held by the kernel (user code can read it). ``server``: held by the single-user
    server that registered the kernel with a shared service, never given to the kernel; it may also
    send the server's own records of the requests it forwards (``request.*``)."""


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
        hub_model = getattr(user, "hub_user", None)  # jupyterhub's JupyterHubUser: the Hub's user model
        hub = hub_model if isinstance(hub_model, dict) else {}
        groups = getattr(user, "groups", None) or hub.get("groups") or ()
        scopes = hub.get("scopes")
        return Person(
            username=username,
            display_name=str(getattr(user, "display_name", "") or username),
            groups=frozenset(str(g) for g in groups) | self._configured_groups.get(username, frozenset()),
            scopes=frozenset(str(s) for s in scopes) if isinstance(scopes, list) else None,
            token_id=str(hub.get("token_id") or ""),
        )

    def in_policy(self, person: Person, role: Role) -> bool:
        """Whether the policy names the person (or one of their groups) for ``role``."""
        members = self._members[role]
        return person.username in members.users or bool(person.groups & set(members.groups))

    def has_role(self, person: Person, role: Role) -> bool:
        """The policy names them and, under JupyterHub, their token carries the role's Hub scope:
        both are needed (a Hub admin who mints a token with the scope is still not in the policy;
        a policy approver whose token lacks the scope acts as an analyst)."""
        if not self.in_policy(person, role):
            return False
        scope = HUB_SCOPES.get(role)
        return person.scopes is None or scope is None or scope in person.scopes

    def missing_scopes(self, person: Person) -> list[str]:
        """Roles the policy gives the person that their Hub token does not carry the scope for."""
        if person.scopes is None:
            return []
        return [
            scope
            for role, scope in HUB_SCOPES.items()
            if self.in_policy(person, role) and scope not in person.scopes
        ]

    def roles_of(self, person: Person) -> list[Role]:
        return [role for role in ROLES if self.has_role(person, role)]
