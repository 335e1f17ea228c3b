"""The live status of a cell waiting for approval, shown in its output area and updated in place."""

from __future__ import annotations

import html
import time
from typing import Any

from governed_kernel.policy import Policy

APPROVE_HINT = "jupyter governance approvals approve {id} --reason '…'"


class ApprovalStatus:
    """One display (with a ``display_id``) per waiting cell: waiting → approved / denied / expired."""

    def __init__(self, view: dict[str, Any], policy: Policy) -> None:
        self.view = view
        self.policy = policy
        self.started = time.monotonic()
        self.handle: Any = None

    # -- what is shown -------------------------------------------------------------------------------

    def _approvers(self) -> str:
        members = self.policy.roles.approvers
        names = [*members.users, *(f"group {g}" for g in members.groups)]
        return ", ".join(names) or "(none named in the policy)"

    def _rules(self) -> str:
        return "; ".join(
            f"{r.get('id')}: {r.get('reason', '')}".rstrip(": ") for r in self.view.get("rules", [])
        )

    def _bundle(self, state: str, headline: str, detail: str = "") -> dict[str, str]:
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

    def _waiting(self) -> dict[str, str]:
        elapsed = int(time.monotonic() - self.started)
        return self._bundle(
            "waiting", f"Waiting for approval ({elapsed} s)", "Interrupt the kernel to cancel."
        )

    # -- publishing ----------------------------------------------------------------------------------

    def show(self) -> None:
        from IPython.display import display

        self.handle = display(self._waiting(), raw=True, display_id=True)  # type: ignore[no-untyped-call]

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
        from IPython.display import display

        bundle = self._bundle("waiting", "Approval required", f"An approver can run: {self.command()}")
        display(bundle, raw=True)  # type: ignore[no-untyped-call]

    def required_message(self) -> str:
        request_id = self.view.get("id")
        return (
            f"this cell needs approval; request {request_id} is waiting for an approver "
            f"({self._rules()}). Approve it in the JupyterLab Approvals panel or with `{self.command()}`, "
            "then run again (or wait: --wait-for-approval / GOVERNED_APPROVAL_TIMEOUT)."
        )

    def command(self) -> str:
        return APPROVE_HINT.format(id=self.view.get("id"))

    def _publish(self, bundle: dict[str, str]) -> None:
        if self.handle is not None:
            self.handle.update(bundle, raw=True)
        else:
            from IPython.display import display

            display(bundle, raw=True)  # type: ignore[no-untyped-call]


_COLOURS = {"waiting": "#f0ad4e", "approved": "#5cb85c", "denied": "#d9534f", "ended": "#777777"}
