"""The data-path guard: the server masks every kernel message again on its way to the browser.

The kernel masks its own messages, but the kernel runs user code: code that disables or bypasses the
kernel's masking could still send a card number. This websocket connection class sits outside the
kernel process, in jupyter_server, and masks every message from every kernel with the same engine
before it is written to the websocket. When it has to mask something, the kernel's own masking was
bypassed: the message goes out masked and a ``guard.masked`` audit record names the kernel. A message
that cannot be masked is dropped (fail closed). Binary buffers are masked as text where they decode.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

from governed_kernel.masking import Masker, MaskingError, MaskReport
from governed_kernel.session import mask_content

log = logging.getLogger("governed_server")
DELIMITER = b"<IDS|MSG>"


class GuardedKernelConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection, masking every outgoing message."""

    def handle_outgoing_message(self, stream: Any, outgoing_msg: list[Any]) -> None:
        _, parts = self.session.feed_identities(outgoing_msg)
        try:
            msg = self._unpack(parts)
            masked, report = self._mask(msg)
        except (MaskingError, ValueError, TypeError, KeyError) as error:
            log.error("governed_server guard: dropped a message of kernel %s that could not be masked (%s)",
                      self.kernel_id, type(error).__name__)  # fmt: skip
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
