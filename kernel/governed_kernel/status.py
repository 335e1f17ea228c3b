"""The live status of a cell waiting for approval, shown in its output area and updated in place."""

from __future__ import annotations

import html
import time
from typing import Any, Protocol

from governed_kernel.policy import Policy

APPROVE_HINT = "jupyter governance approvals approve {id} --reason '…'"
Bundle = dict[str, str]


class Publisher(Protocol):
    """Where the status is shown: ``show`` a new display, ``update`` it in place, or ``once``."""

    def show(self, bundle: Bundle) -> None: ...
    def update(self, bundle: Bundle) -> None: ...
    def once(self, bundle: Bundle) -> None: ...


class IPythonPublisher:
    """Inside the kernel: IPython's display, with a ``display_id`` to update it in place."""

    def __init__(self) -> None:
        self.handle: Any = None

    def show(self, bundle: Bundle) -> None:
        from IPython.display import display

        self.handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]

    def update(self, bundle: Bundle) -> None:
        if self.handle is not None:
            self.handle.update(bundle, raw=True)
        else:
            self.once(bundle)

    def once(self, bundle: Bundle) -> None:
        from IPython.display import display

        display(bundle, raw=True)  # type: ignore[no-untyped-call]


class ApprovalStatus:
    """One display (with a ``display_id``) per waiting cell: waiting → approved / denied / expired.

    The kernel shows it with IPython's display; the server's inbound guard, which holds a cell
    before the kernel sees it, shows the same display through its own :class:`Publisher`."""

    def __init__(self, view: dict[str, Any], policy: Policy, publisher: Publisher | None = None) -> None:
        self.view = view
        self.policy = policy
        self.started = time.monotonic()
        self.publisher: Publisher = publisher or IPythonPublisher()

    # -- what is shown -------------------------------------------------------------------------------

    def _approvers(self) -> str:
        members = self.policy.roles.approvers
        names = [*members.users, *(f"group {g}" for g in members.groups)]
        return ", ".join(names) or "(none named in the policy)"

    def _rules(self) -> str:
        return "; ".join(
            f"{r.get('id')}: {r.get('reason', '')}".rstrip(": ") for r in self.view.get("rules", [])
        )

    def _bundle(self, state: str, headline: str, detail: str = "") -> Bundle:
        request_id = self.view.get("id", "")
        progress = f"{self.view.get('approvals', 0)}/{self.view.get('required_approvals', 1)} approvals"
        lines = [headline, f"request {request_id} · {progress}", f"rules: {self._rules()}"]
        if state == "waiting":
            lines.append(f"approvers: {self._approvers()}")
        if detail:
            lines.append(detail)
        rows = "".join(f"<div>{html.escape(line)}</div>" for line in lines[1:])
        markup = (
            f'<div class="jp-GovernedStatus" data-state="{state}" '
            f'data-request-id="{html.escape(request_id)}" '
            f'style="border-left:4px solid {_COLOURS[state]};padding:4px 8px">'
            f"<strong>{html.escape(headline)}</strong>{rows}</div>"
        )
        return {"text/plain": "\n".join(lines), "text/html": markup}

    def _waiting(self) -> Bundle:
        elapsed = int(time.monotonic() - self.started)
        return self._bundle(
            "waiting", f"Waiting for approval ({elapsed} s)", "Interrupt the kernel to cancel."
        )

    # -- publishing ----------------------------------------------------------------------------------

    def show(self) -> None:
        self.publisher.show(self._waiting())

    def update(self, view: dict[str, Any]) -> None:
        self.view = view
        self._publish(self._waiting())

    def finish(self, view: dict[str, Any]) -> None:
        self.view = view
        status = view.get("status")
        decisions = view.get("decisions", [])
        if status == "approved":
            who = ", ".join(
                f"{d['approver']}: {d['reason']}" for d in decisions if d.get("decision") == "approve"
            )
            self._publish(self._bundle("approved", f"Approved by {who}"))
        elif status == "denied":
            denial: dict[str, Any] = next((d for d in decisions if d.get("decision") == "deny"), {})
            self._publish(
                self._bundle("denied", f"Denied by {denial.get('approver')}: {denial.get('reason')}")
            )
        else:
            self._publish(self._bundle("ended", f"Request {status}"))

    def finish_interrupted(self) -> None:
        self._publish(self._bundle("ended", "Cancelled: the kernel was interrupted while waiting"))

    def finish_timed_out(self, seconds: float) -> None:
        self._publish(self._bundle("ended", f"No decision within {seconds:.0f} s: request cancelled"))

    def show_required(self) -> None:
        bundle = self._bundle("waiting", "Approval required", f"An approver can run: {self.command()}")
        self.publisher.once(bundle)

    def required_message(self) -> str:
        request_id = self.view.get("id")
        return (
            f"this cell needs approval; request {request_id} is waiting for an approver "
            f"({self._rules()}). Approve it in the JupyterLab Approvals panel or with `{self.command()}`, "
            "then run again (or wait: --wait-for-approval / GOVERNED_APPROVAL_TIMEOUT)."
        )

    def command(self) -> str:
        return APPROVE_HINT.format(id=self.view.get("id"))

    def _publish(self, bundle: Bundle) -> None:
        self.publisher.update(bundle)


def refusal(view: dict[str, Any]) -> tuple[str, str]:
    """The error (ename, evalue) of a cell whose request ended without an approval."""
    status = view.get("status")
    request_id = view.get("id")
    decisions = [d for d in view.get("decisions", []) if d.get("decision") == "deny"]
    if status == "denied" and decisions:
        who, why = decisions[-1].get("approver"), decisions[-1].get("reason")
        return "ApprovalDenied", f"denied by {who}: {why} (request {request_id}); the cell was not run"
    if status == "expired":
        return (
            "ApprovalExpired",
            f"request {request_id} expired without a decision; run the cell again to ask again",
        )
    return "ApprovalNotGranted", f"request {request_id} is {status}; the cell was not run"


_COLOURS = {"waiting": "#f0ad4e", "approved": "#5cb85c", "denied": "#d9534f", "ended": "#777777"}
