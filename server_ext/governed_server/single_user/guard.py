"""The data-path guard: the server reads every message between a browser and a kernel.

Out (kernel → browser): the kernel masks its own messages, but the kernel runs user code: code that
disables or bypasses the kernel's masking could still send a card number. This websocket connection
class sits outside the kernel process, in jupyter_server, and masks every message from every kernel
with the same engine before it is written to the websocket. When it has to mask something, the
kernel's own masking was bypassed: the message goes out masked and a ``guard.masked`` audit record
names the kernel. A message that cannot be masked is dropped (fail closed). Binary buffers are
masked as text where they decode.

In (browser → kernel): every message goes through the inbound gate
(:mod:`governed_server.single_user.inbound_gate`): recorded when it carries code, refused or held for an
approval as the policy says, before the kernel sees it. jupyter_server forwards v1-protocol
messages without reading them; the gate reads them all.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

from governed_kernel.masking import Masker, MaskingError, MaskReport
from governed_kernel.masking.output_area import OutputAreas, Retraction
from governed_kernel.session import mask_content
from governed_server.single_user.inbound import PROTOCOL_V1
from governed_server.single_user.inbound_gate import InboundGate

log = logging.getLogger("governed_server")
DELIMITER = b"<IDS|MSG>"


class GuardedKernelConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection, admitting every incoming message through the
    inbound gate and masking every outgoing one."""

    gate: InboundGate | None = None
    areas: OutputAreas | None = None

    async def prepare(self) -> None:
        await super().prepare()  # type: ignore[no-untyped-call]
        app = self.websocket_handler.settings.get("governed_server")
        if app is None:
            return
        handler = self.websocket_handler
        self.gate = InboundGate(
            app,
            str(self.kernel_id),
            user=handler.current_user,
            protocol=lambda: self.subprotocol,
            session=self.session,
            forward=super().handle_incoming_message,  # type: ignore[arg-type]
            write=self._write_to_client,
            client_addr=str(handler.request.remote_ip or ""),
        )
        self.areas = OutputAreas(self._masker())
        await app.inbound.learn_notebook(self.gate.kernel, handler)

    def handle_incoming_message(self, incoming_msg: Any) -> None:
        if self.gate is None:  # no governance extension on this server: nothing to admit against
            log.error("governed_server guard: no inbound gate for kernel %s; message dropped", self.kernel_id)
            return
        self.gate.admit(incoming_msg)

    def disconnect(self) -> None:  # type: ignore[override]
        if self.gate is not None:
            self.gate.close()
        super().disconnect()  # type: ignore[no-untyped-call]

    def _watch(self, msg: dict[str, Any]) -> None:
        """What the gate learns from the kernel's answers: a password prompt, a reply's status."""
        assert self.gate is not None
        msg_type = msg["header"].get("msg_type")
        if msg_type == "input_request":
            self.gate.kernel.password_prompt = bool(msg["content"].get("password"))
        elif msg_type == "execute_reply":
            parent = str((msg.get("parent_header") or {}).get("msg_id", ""))
            self.gate.kernel_replied(parent, str(msg["content"].get("status", "")))

    def on_kernel_restarted(self) -> None:
        if self.gate is not None:
            self.gate.kernel_gone()
        super().on_kernel_restarted()  # type: ignore[no-untyped-call]

    def on_restart_failed(self) -> None:
        if self.gate is not None:
            self.gate.kernel_gone()
        super().on_restart_failed()  # type: ignore[no-untyped-call]

    def _write_to_client(self, channel: str, msg: dict[str, Any]) -> None:
        """Send a message the server made (an answer to a request it did not forward), masked."""
        try:
            masked, _ = self._mask({**msg, "buffers": []})
        except (MaskingError, ValueError, TypeError, KeyError):
            log.error("governed_server guard: a %s for the client could not be masked", msg.get("msg_type"))
            return
        masked.pop("buffers", None)
        if self.subprotocol == PROTOCOL_V1:
            frame = serialize_msg_to_ws_v1(masked, channel, self.session.pack)  # type: ignore[no-untyped-call]
            self.write_message(frame, binary=True)
        else:
            masked["channel"] = channel
            self.write_message(json.dumps(masked, default=json_default))

    def handle_outgoing_message(self, stream: Any, outgoing_msg: list[Any]) -> None:
        _, parts = self.session.feed_identities(outgoing_msg)
        try:
            msg = self._unpack(parts)
            if self.gate is not None:
                self._watch(msg)
            masked, report = self._mask(msg)
        except (MaskingError, ValueError, TypeError, KeyError) as error:
            log.error("governed_server guard: dropped a message of kernel %s that could not be masked (%s)",
                      self.kernel_id, type(error).__name__)  # fmt: skip
            return
        if getattr(stream, "channel", None) == "iopub" and self.areas is not None:
            retraction = self._observe(masked)
            if retraction is not None:
                self._record_bypass(msg, retraction.report)
                self._retract(masked, retraction)
                return
        if report.total == 0:
            super().handle_outgoing_message(stream, outgoing_msg)
            return
        self._record_bypass(msg, report)
        packed = [
            self.session.pack(masked["header"]),
            self.session.pack(masked["parent_header"]),
            self.session.pack(masked["metadata"]),
            self.session.pack(masked["content"]),
        ]
        signed = [DELIMITER, self.session.sign(packed), *packed, *masked["buffers"]]
        super().handle_outgoing_message(stream, signed)

    def _observe(self, masked: dict[str, Any]) -> Retraction | None:
        """The client's view of the cell's outputs after this message: a retraction when the kernel
        let a card number through in pieces (its own carry-over was bypassed)."""
        assert self.areas is not None
        parent_id = str((masked.get("parent_header") or {}).get("msg_id") or "")
        msg_type = str(masked["header"].get("msg_type", ""))
        return self.areas.observe(parent_id, msg_type, masked.get("content") or {}, masked.get("metadata"))

    def _retract(self, completing: dict[str, Any], retraction: Retraction) -> None:
        """Clear the client's output area (``wait``) and send the cell's outputs again, masked as
        the client joins them, instead of the message that completed the PAN."""
        parent = completing.get("parent_header") or {}
        log.warning("governed_server guard: kernel %s sent a card number in pieces; the client's outputs "
                    "were retracted and sent again masked", self.kernel_id)  # fmt: skip
        self._write_to_client("iopub", self.session.msg("clear_output", {"wait": True}, parent=parent))
        if retraction.notice:
            notice = {"name": "stderr", "text": retraction.notice}
            self._write_to_client("iopub", self.session.msg("stream", notice, parent=parent))
        for output in retraction.outputs:
            msg = self.session.msg(output.msg_type, output.content, parent=parent, metadata=output.metadata)
            self._write_to_client("iopub", msg)

    def _unpack(self, parts: list[Any]) -> dict[str, Any]:
        """Read a message without consuming its signature (jupyter_server checks it again after us)."""
        signature, frames = bytes(parts[0]), [bytes(part) for part in parts[1:5]]
        if self.session.auth is not None and not hmac.compare_digest(signature, self.session.sign(frames)):
            raise ValueError("invalid message signature")
        header, parent, metadata, content = (self.session.unpack(frame) for frame in frames)
        return {"header": header, "parent_header": parent, "metadata": metadata, "content": content,
                "buffers": list(parts[5:])}  # fmt: skip

    def _mask(self, msg: dict[str, Any]) -> tuple[dict[str, Any], MaskReport]:
        masker = self._masker()
        report = MaskReport()
        msg_type = str(msg.get("header", {}).get("msg_type", ""))
        content = mask_content(msg_type, dict(msg.get("content") or {}), masker, report)
        metadata = mask_content("metadata", dict(msg.get("metadata") or {}), masker, report)
        buffers = [self._mask_buffer(bytes(buffer), masker, report) for buffer in msg.get("buffers") or []]
        return {**msg, "content": content, "metadata": metadata, "buffers": buffers}, report

    @staticmethod
    def _mask_buffer(buffer: bytes, masker: Masker, report: MaskReport) -> bytes:
        try:
            text = buffer.decode("utf-8")
        except UnicodeDecodeError:
            return buffer
        return masker.mask_text(text, report)[0].encode("utf-8")

    def _masker(self) -> Masker:
        app = self.websocket_handler.settings.get("governed_server")
        masker: Masker | None = getattr(app, "guard_masker", None)
        return masker if masker is not None else Masker()

    def _record_bypass(self, msg: dict[str, Any], report: MaskReport) -> None:
        app = self.websocket_handler.settings.get("governed_server")
        msg_type = msg.get("header", {}).get("msg_type", "")
        log.warning("governed_server guard: masked %d card number(s) in a %s message of kernel %s",
                    report.total, msg_type, self.kernel_id)  # fmt: skip
        if app is not None:
            app.record_guard_event(self.kernel_id, str(msg_type), dict(report.kinds))
