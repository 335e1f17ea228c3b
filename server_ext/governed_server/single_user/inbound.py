"""The inbound guard's rules: what a client's message to a kernel is, and what the server does with it.

The server sits between every browser and every kernel. Whatever the kernel does to its own
controls, the server reads each request on its way in, records the ones that carry code before
forwarding them, refuses what the policy does not allow, and holds a cell the policy gates until
an approval exists (:mod:`governed_server.single_user.inbound_gate` does the holding). The decision is made
from what the server saw itself: the request's text and the names bound by the cells it forwarded
to that kernel, never from what the kernel reports.

What carries code (and is recorded): ``execute_request`` (its ``code`` and ``user_expressions``),
``complete_request`` and ``inspect_request`` (the kernel pins completion to no evaluation),
``input_reply`` (what the user typed, masked; withheld when the prompt was a password), and comm
messages (what a widget sends to kernel code). Debug and subshell requests are refused unless the
policy allows them; comms only open for the policy's targets; unknown request types are refused.

Pure: no tornado, no store. Messages come in either websocket protocol; :func:`parse` and
:func:`encode` read and write both.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from governed_kernel.policy import Classifier, Decision
from governed_kernel.policy.model import RequestSettings
from governed_kernel.requests import GOVERNED_METADATA, governed_source, source_hash
from governed_server.audit_records import AuditEvent, masked_decision

PROTOCOL_V1 = "v1.kernel.websocket.jupyter.org"
PASSWORD_WITHHELD = "[withheld: the prompt asked for a password]"

Action = Literal["forward", "record", "gate", "refuse"]

PASS_THROUGH = frozenset({
    "kernel_info_request", "comm_info_request", "history_request", "is_complete_request",
    "interrupt_request", "shutdown_request", "usage_request",
})  # fmt: skip
"""Requests that run no code the client wrote: forwarded as they are, not recorded."""

SUBSHELL_REQUESTS = frozenset({"create_subshell_request", "delete_subshell_request", "list_subshell_request"})


class InboundError(ValueError):
    """A client message that cannot be read: it is dropped, never forwarded unread."""


@dataclass
class ClientMessage:
    """One message from a client to a kernel, read (both websocket protocols)."""

    channel: str
    header: dict[str, Any]
    parent_header: dict[str, Any]
    metadata: dict[str, Any]
    content: dict[str, Any]
    buffers: list[bytes] = field(default_factory=list)

    @property
    def msg_type(self) -> str:
        return str(self.header.get("msg_type", ""))

    @property
    def msg_id(self) -> str:
        return str(self.header.get("msg_id", ""))


def parse(raw: str | bytes, protocol: str | None, unpack: Callable[[bytes], Any]) -> ClientMessage:
    """Read a websocket message as jupyter_server would, but every part of it. Raises InboundError."""
    try:
        if protocol == PROTOCOL_V1:
            channel, parts = deserialize_msg_from_ws_v1(raw)  # type: ignore[no-untyped-call]
            if len(parts) < 4:
                raise InboundError("a v1 message needs header, parent header, metadata and content")
            header, parent, metadata, content = (unpack(bytes(part)) for part in parts[:4])
            buffers = [bytes(part) for part in parts[4:]]
        else:
            binary = isinstance(raw, bytes)
            msg = deserialize_binary_message(raw) if binary else json.loads(raw)  # type: ignore[no-untyped-call]
            channel = msg.get("channel")
            header, parent = msg.get("header"), msg.get("parent_header") or {}
            metadata, content = msg.get("metadata") or {}, msg.get("content") or {}
            buffers = [bytes(b) for b in msg.get("buffers") or []]
    except InboundError:
        raise
    except Exception as error:  # whatever a client sends: a message we cannot read is not forwarded
        raise InboundError(f"unreadable message ({type(error).__name__})") from None
    if not all(isinstance(part, dict) for part in (header, parent, metadata, content)):
        raise InboundError("header, parent header, metadata and content must be objects")
    return ClientMessage(str(channel or "shell"), header, parent, metadata, content, buffers)


def encode(msg: ClientMessage, protocol: str | None, pack: Callable[[Any], bytes]) -> str | bytes:
    """The message written back in its protocol (after :func:`with_governed_metadata`)."""
    if protocol == PROTOCOL_V1:
        parts = [pack(msg.header), pack(msg.parent_header), pack(msg.metadata), pack(msg.content)]
        return bytes(serialize_msg_to_ws_v1([*parts, *msg.buffers], msg.channel))  # type: ignore[no-untyped-call]
    body = {
        "channel": msg.channel,
        "header": msg.header,
        "parent_header": msg.parent_header,
        "metadata": msg.metadata,
        "content": msg.content,
    }
    if msg.buffers:
        return bytes(serialize_binary_message({**body, "buffers": msg.buffers}))  # type: ignore[no-untyped-call]
    return json.dumps(body)


def with_governed_metadata(msg: ClientMessage, values: Mapping[str, Any]) -> ClientMessage:
    """The request as the kernel gets it: ``metadata.governed`` is the server's, whatever the client
    put there (an approval id it names is only ever the one the server checked)."""
    metadata = {key: value for key, value in msg.metadata.items() if key != GOVERNED_METADATA}
    if values:
        metadata[GOVERNED_METADATA] = dict(values)
    return ClientMessage(msg.channel, msg.header, msg.parent_header, metadata, msg.content, msg.buffers)


@dataclass(frozen=True)
class Verdict:
    """What happens to one message: forwarded as is, recorded then forwarded, held for an approval
    (``gate``), or refused with ``reason`` (recorded, answered with an error, never forwarded)."""

    action: Action
    kind: str
    reason: str = ""
    source: str = ""
    decision: Decision | None = None


def judge(
    msg: ClientMessage,
    *,
    rules: RequestSettings,
    classifier: Classifier | None,
    aliases: Mapping[str, str],
    enforce: bool,
    comm_targets: Mapping[str, str],
) -> Verdict:
    """The verdict on ``msg`` (see the module). ``comm_targets``: comm id → target of the comms opened
    in this kernel; ``classifier`` None (no policy loaded) refuses every cell: fail closed."""
    kind, msg_type, content = msg.msg_type.removesuffix("_request"), msg.msg_type, msg.content
    if msg.header.get("subshell_id") not in (None, "") and not rules.allow_subshells:
        return Verdict("refuse", "subshell", "the governance policy does not allow subshells")
    if msg_type in SUBSHELL_REQUESTS:
        if rules.allow_subshells:
            return Verdict("record", "subshell")
        return Verdict("refuse", "subshell", "the governance policy does not allow subshells")
    if msg_type == "debug_request":
        if rules.allow_debugger:
            return Verdict("record", "debug")
        return Verdict("refuse", "debug", "the governance policy does not allow the debugger")
    if msg_type == "execute_request":
        source = governed_source(str(content.get("code", "")), content.get("user_expressions"))
        if classifier is None:
            return Verdict("refuse", "execute", "the governance policy is not loaded", source)
        decision = classifier.classify(source, aliases)
        if enforce and decision.action == "deny":
            return Verdict("refuse", "execute", decision.summary(), source, decision)
        if enforce and decision.action == "approve":
            return Verdict("gate", "execute", decision.summary(), source, decision)
        return Verdict("record", "execute", "", source, decision)
    if msg_type in ("complete_request", "inspect_request"):
        return Verdict("record", kind, "", str(content.get("code", "")))
    if msg_type == "input_reply":
        return Verdict("record", "input")
    if msg_type == "comm_open":
        target = str(content.get("target_name", ""))
        if enforce and not _allowed(target, rules):
            return Verdict("refuse", "comm_open", f"comm target {target!r} is not allowed by the policy")
        return Verdict("record", "comm_open")
    if msg_type in ("comm_msg", "comm_close"):
        opened = comm_targets.get(str(content.get("comm_id", "")))
        if enforce and opened is not None and not _allowed(opened, rules):
            return Verdict("refuse", msg_type, f"comm target {opened!r} is not allowed by the policy")
        return Verdict("record", msg_type)
    if msg_type in PASS_THROUGH:
        return Verdict("forward", kind)
    if enforce:
        return Verdict("refuse", "unknown", f"the server does not forward {msg_type or 'untyped'} messages")
    return Verdict("record", "unknown")


def _allowed(target: str, rules: RequestSettings) -> bool:
    return any(fnmatch.fnmatchcase(target, glob) for glob in rules.comm_targets)


def request_event(
    msg: ClientMessage,
    verdict: Verdict,
    *,
    user: str,
    kernel_id: str,
    notebook: str,
    server: str,
    client_addr: str,
    policy_version: str,
    password_prompt: bool = False,
    outcome: str = "success",
    extra: Mapping[str, Any] | None = None,
    mask: Callable[[str], str] = str,
) -> AuditEvent:
    """The server's own record of a request (``request.<kind>``): who sent it, to which kernel, what
    it carried. What the client sent is masked here (``mask``: the service's masker), and again on
    the way into the log like every record; kernels cannot write this type. The hash is of the
    request as sent: an approval binds to it."""
    details: dict[str, Any] = {
        "msg_id": msg.msg_id,
        "msg_type": msg.msg_type,
        "channel": msg.channel,
        "verdict": verdict.action,
    }
    if verdict.reason:
        details["reason"] = mask(verdict.reason)
    if verdict.decision is not None:
        details["decision"] = masked_decision(verdict.decision, mask)
    code = verdict.source
    if msg.msg_type == "input_reply":
        value = str(msg.content.get("value", ""))
        details["input"] = PASSWORD_WITHHELD if password_prompt else mask(value)
    elif msg.msg_type.startswith("comm_"):
        details["comm_id"] = str(msg.content.get("comm_id", ""))
        if msg.msg_type == "comm_open":
            details["target_name"] = str(msg.content.get("target_name", ""))
        details["data"] = mask(json.dumps(msg.content.get("data", {}), default=str))[:20_000]
    elif msg.msg_type in ("complete_request", "inspect_request"):
        details["cursor_pos"] = msg.content.get("cursor_pos")
    details.update(extra or {})
    cell_id = msg.metadata.get("cellId") or msg.metadata.get("cell_id") or ""
    return AuditEvent(
        event_type=f"request.{verdict.kind}",
        user=user,
        outcome=outcome,
        client_addr=client_addr,
        server=server,
        kernel_id=kernel_id,
        session_id=str(msg.header.get("session", ""))[:128],
        notebook=notebook[:1024],
        cell_id=str(cell_id)[:128],
        cell_hash=source_hash(code) if code else "",
        code=mask(code),
        policy_version=policy_version,
        details=details,
    )
