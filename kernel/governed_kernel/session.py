"""``MaskingSession``: the choke point that masks every message the kernel sends.

Every message the kernel sends (iopub, shell and control replies, stdin prompts, comm messages)
goes through :meth:`jupyter_client.session.Session.send`, so masking there covers every channel in
one place. Only string leaves (and numbers that could be a PAN) of ``content``, ``metadata`` and
the binary buffers are masked; headers are left alone (they carry ids the protocol matches on).
MIME bundles (display data, results, pager payloads, inspect replies, user expressions) are masked
by MIME type with the engine's :func:`mask_bundle`, comm data as JSON (key rules apply).

Fail closed: if masking raises, the message is not sent; an iopub message is replaced by a visible
stderr notice, a reply by an error reply of the same type, an input prompt by a notice prompt.
"""

from __future__ import annotations

import numbers
import threading
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_client.session import Session
from traitlets import Integer, Unicode
from traitlets.log import get_logger

from governed_kernel.masking import (
    Masker,
    MaskingConfig,
    MaskingError,
    MaskReport,
    mask_bundle,
    mask_json,
    needs_masking,
)
from governed_kernel.masking.output_area import OUTPUT_TYPES, OutputAreas, Retraction
from governed_kernel.masking_ledger import DEFAULT_TEXT_CAP, OutputLedger

if TYPE_CHECKING:
    from governed_kernel.policy import Policy

MIN_TEXT = 12
"""A string shorter than this cannot hold a PAN (12 digits at least): skipped without scanning."""
_MAX_DEPTH = 100
_COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})

WITHHELD = (
    "[governed kernel] An output was withheld because masking failed ({error}). Nothing unmasked was "
    "sent. Re-run the cell; if this persists, report it to your administrator.\n"
)


class MaskingSession(Session):
    """A :class:`Session` whose :meth:`send` masks PANs in every outgoing message."""

    policy_path = Unicode(
        None,
        allow_none=True,
        help="Policy file whose masking section configures the masker (default: GOVERNED_POLICY or "
        "the bundled policy).",
    ).tag(config=True)
    ledger_text_cap = Integer(
        DEFAULT_TEXT_CAP, help="Bytes of masked output text the ledger keeps per cell."
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._masker: Masker | None = None
        self._masker_lock = threading.Lock()
        self._policy: Policy | None = None
        self._policy_path: Path | None = None
        self.masking_problem: str | None = None
        """Why the policy's masking settings could not be used (the defaults are used instead)."""
        self.ledger = OutputLedger(self.ledger_text_cap, masker=lambda: self.masker)
        self._areas: OutputAreas | None = None

    # -- configuration ----------------------------------------------------------------------------
    @property
    def masker(self) -> Masker:
        """The kernel's configured masker; use it to mask any text the kernel writes (audit, errors)."""
        if self._masker is None:
            with self._masker_lock:
                if self._masker is None:
                    self._masker = self._build_masker()
        return self._masker

    @property
    def areas(self) -> OutputAreas:
        """Each recent cell's outputs as the client joins them (retraction of PANs split over
        stream messages: :mod:`governed_kernel.masking.output_area`)."""
        if self._areas is None:
            with self._masker_lock:
                if self._areas is None:
                    self._areas = OutputAreas(self.masker)
        return self._areas

    def configure_masking(self, masking: Mapping[str, Any]) -> None:
        """Use a loaded policy's ``masking`` section (raises ``ValueError``/``MaskingError``)."""
        self._masker = checked_masker(masking)
        self._areas = None
        self.masking_problem = None

    def loaded_policy(self, path: Path) -> Policy | None:
        """The policy this session loaded from ``path`` for its masking, if any (one load per kernel)."""
        if self._policy is not None and self._policy_path == path:
            return self._policy
        return None

    def _build_masker(self) -> Masker:
        from governed_kernel.policy import load_policy
        from governed_kernel.resources import default_policy_path

        try:
            path = Path(self.policy_path).expanduser() if self.policy_path else default_policy_path()
            policy = load_policy(path)
            self._policy, self._policy_path = policy, path
            return checked_masker(policy.masking)
        except Exception as error:
            # The cell gate refuses to run cells without a policy; kernel messages are still masked
            # with the default rules (every default brand, last four) rather than not at all.
            self.masking_problem = f"{type(error).__name__}: {error}"
            get_logger().error("Masking policy unusable, using default masking: %s", type(error).__name__)
            return Masker(MaskingConfig())

    def mask_text(self, text: str) -> str:
        """Mask ``text`` with the kernel's masker (for audit records and error messages)."""
        return self.masker.mask_text(text)[0]

    # -- the choke point --------------------------------------------------------------------------
    def send(
        self,
        stream: Any,
        msg_or_type: dict[str, Any] | str,
        content: dict[str, Any] | None = None,
        parent: dict[str, Any] | None = None,
        ident: bytes | list[bytes] | None = None,
        buffers: list[Any] | None = None,
        track: bool = False,
        header: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        if isinstance(msg_or_type, dict):
            msg = msg_or_type
            buffers = buffers or msg.get("buffers") or []
        else:
            msg = self.msg(msg_or_type, content=content, parent=parent, header=header, metadata=metadata)
        parent_id = (msg.get("parent_header") or {}).get("msg_id")
        try:
            safe, report = self.mask_message(msg, buffers or [])
        except Exception as error:
            safe = withheld(msg, type(error).__name__)
            self.ledger.add_dropped(parent_id)
            kind = type(error).__name__
            get_logger().error("Withheld a %s message: masking failed (%s)", msg.get("msg_type"), kind)
        else:
            self.ledger.add_report(report, parent_id)
        return self._deliver(stream, safe, ident, track)

    def send_masked_stream(self, stream: Any, msg: dict[str, Any], ident: Any = None) -> Any:
        """Send a ``stream`` message whose text :class:`MaskingOutStream` has already masked (with
        carry-over): scanning it again here would double the cost of every print."""
        if msg["header"]["msg_type"] != "stream" or set(msg.get("content") or {}) != {"name", "text"}:
            return self.send(stream, msg, ident=ident)
        return self._deliver(stream, dict(msg, metadata={}, buffers=[]), ident, False)

    def _deliver(self, stream: Any, safe: dict[str, Any], ident: Any, track: bool) -> dict[str, Any] | None:
        msg_type = safe["header"]["msg_type"]
        if msg_type not in OUTPUT_TYPES and msg_type != "status":
            return self._send_recorded(stream, safe, ident, track)
        parent_id = str((safe.get("parent_header") or {}).get("msg_id") or "")
        areas = self.areas
        with areas.lock:
            retraction = areas.observe(parent_id, msg_type, safe["content"], safe.get("metadata"))
            if retraction is None:
                return self._send_recorded(stream, safe, ident, track)
            return self._retract(stream, safe, retraction)

    def _retract(
        self, stream: Any, completing: dict[str, Any], retraction: Retraction
    ) -> dict[str, Any] | None:
        """Send ``clear_output(wait=True)`` and the cell's outputs again, masked as the client joins
        them, instead of the stream message that completed a PAN (its text is in them)."""
        parent = completing.get("parent_header") or {}
        parent_id = parent.get("msg_id")
        self.ledger.retracted(parent_id)
        self.ledger.add_report(retraction.report, parent_id)
        get_logger().warning("Retracted a card number completed across stream messages (%d outputs re-sent)",
                             len(retraction.outputs))  # fmt: skip
        self._send_recorded(
            stream, self.msg("clear_output", {"wait": True}, parent=parent), b"clear_output", False
        )
        if retraction.notice:
            notice = self.msg("stream", {"name": "stderr", "text": retraction.notice}, parent=parent)
            self._send_recorded(stream, notice, b"stream.stderr", False)
        sent = None
        for output in retraction.outputs:
            msg = self.msg(output.msg_type, output.content, parent=parent, metadata=output.metadata)
            topic = f"stream.{output.content.get('name')}" if output.msg_type == "stream" else output.msg_type
            sent = self._send_recorded(stream, msg, topic.encode(), False)
        return sent

    def _send_recorded(
        self, stream: Any, safe: dict[str, Any], ident: Any, track: bool
    ) -> dict[str, Any] | None:
        parent_id = (safe.get("parent_header") or {}).get("msg_id")
        if parent_id is not None and self.ledger.recording(parent_id):
            self.ledger.record_message(safe["header"]["msg_type"], safe["content"], parent_id)
        return super().send(stream, safe, ident=ident, buffers=safe.get("buffers") or None, track=track)

    def mask_message(self, msg: dict[str, Any], buffers: list[Any]) -> tuple[dict[str, Any], MaskReport]:
        """A copy of ``msg`` with content, metadata and buffers masked (raises on failure)."""
        masker = self.masker
        report = MaskReport()
        msg_type = msg["header"]["msg_type"]
        content = mask_content(msg_type, msg.get("content") or {}, masker, report)
        if msg_type == "kernel_info_reply":
            content = without_debugger(content)
        safe = dict(msg)
        safe["content"] = content
        safe["metadata"] = mask_tree(msg.get("metadata") or {}, masker, report)
        safe["buffers"] = [mask_buffer(buffer, masker, report) for buffer in buffers]
        return safe, report


# -- pure helpers (no Session state): also used by the tests and the benchmark ----------------------
def checked_masker(masking: Mapping[str, Any]) -> Masker:
    """A masker for a policy's ``masking`` section, its column rules compiled now (fail at start,
    not on the first message)."""
    masker = Masker(MaskingConfig.from_mapping(masking))
    masker.config.column_rule("probe")
    return masker


def mask_content(msg_type: str, content: dict[str, Any], masker: Masker, report: MaskReport) -> Any:
    """Mask a message's content: bundles by MIME type, comm data as JSON, the rest leaf by leaf."""
    if msg_type in _COMM_TYPES:
        data = content.get("data")
        rest = {key: value for key, value in content.items() if key != "data"}
        out = mask_tree(rest, masker, report)
        if data is not None:
            plain = _plain(data)
            out["data"] = mask_json(plain, masker, report)[0] if needs_masking(plain, masker) else plain
        return out
    return mask_tree(content, masker, report)


def mask_tree(value: Any, masker: Masker, report: MaskReport, depth: int = 0) -> Any:
    """Mask string leaves and PAN-sized numbers; a dict under a ``data`` key is a MIME bundle
    (display data, results, pager payloads, inspect replies, user expressions)."""
    if isinstance(value, str):
        return value if len(value) < MIN_TEXT else masker.mask_text(value, report)[0]
    if depth > _MAX_DEPTH:
        raise MaskingError(f"message nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            new_key = mask_tree(key, masker, report, depth + 1)
            if key == "data" and isinstance(item, dict):
                bundle = mask_bundle(_plain(item), masker, report)[0]
                out[new_key] = {mask_tree(k, masker, report, depth + 1): v for k, v in bundle.items()}
            else:
                out[new_key] = mask_tree(item, masker, report, depth + 1)
        return out
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Number):
        return _mask_number(value, masker, report)
    if isinstance(value, bytes):
        return mask_buffer(value, masker, report)
    if isinstance(value, (datetime, date)):
        return value
    if isinstance(value, Iterable):  # tuples (history entries), sets, generators: JSON lists
        return [mask_tree(item, masker, report, depth + 1) for item in value]
    return value  # not JSON-serialisable: the packer raises, nothing is sent


def _mask_number(value: Any, masker: Masker, report: MaskReport) -> Any:
    """A number whose integer digits form a PAN becomes a masked string (JSON numbers cannot hold *)."""
    if isinstance(value, numbers.Integral):
        number = int(value)
        if not 10**11 <= abs(number) < 10**19:
            return value
        text = str(number)
    elif isinstance(value, numbers.Real):
        real = float(value)
        if not (real.is_integer() and 1e11 <= abs(real) < 1e19):
            return value
        text = str(int(real))
    else:
        return masker.mask_text(str(value), report)[0]  # complex, Decimal…: JSON would stringify
    masked = masker.mask_text(text, report)[0]
    return value if masked == text else masked


def _plain(value: Any) -> Any:
    """Containers as the JSON packer will see them (tuples and sets become lists, numbers plain)."""
    if isinstance(value, dict):
        return {key if isinstance(key, str) else _plain_key(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (str, bytes, bool)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Iterable):
        return [_plain(item) for item in value]
    return value


def _plain_key(key: Any) -> str:
    """A dict key as JSON writes it (always a string), so the string masking sees its digits."""
    if isinstance(key, bool) or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    if isinstance(key, numbers.Integral):
        return str(int(key))
    if isinstance(key, numbers.Real):
        return repr(float(key))
    return str(key)


def mask_buffer(buffer: Any, masker: Masker, report: MaskReport) -> Any:
    """Binary buffers (comm/widget data) are masked as Latin-1 text when they hold a PAN."""
    data = bytes(buffer)
    text = data.decode("latin-1")
    findings = masker.find(text)
    if not findings:
        return buffer
    return masker.apply(text, findings, report).encode("latin-1", "replace")


def without_debugger(content: dict[str, Any]) -> dict[str, Any]:
    """The debugger is not offered: it would show variable values unmasked (docs/kernel-masking.md)."""
    out = dict(content)
    features = [f for f in out.get("supported_features") or [] if f != "debugger"]
    out["supported_features"] = features
    out["debugger"] = False
    return out


def withheld(msg: dict[str, Any], error: str) -> dict[str, Any]:
    """The message sent instead of one that could not be masked: it says so and carries no data."""
    notice = WITHHELD.format(error=error)
    header = dict(msg["header"])
    msg_type = header["msg_type"]
    original = msg.get("content") or {}
    content: dict[str, Any]
    if msg_type.endswith("_reply"):
        content = {"status": "error", "ename": "MaskingError", "evalue": notice.strip()}
        content["traceback"] = [notice]
        if isinstance(original.get("execution_count"), int):
            content["execution_count"] = original["execution_count"]
    elif msg_type == "input_request":
        content = {"prompt": notice.strip() + " ", "password": bool(original.get("password"))}
    elif msg_type == "status":
        content = {"execution_state": str(original.get("execution_state", "idle"))}
    else:
        header["msg_type"] = "stream"
        content = {"name": "stderr", "text": notice}
    safe = dict(msg)
    safe.update(header=header, msg_type=header["msg_type"], content=content, metadata={}, buffers=[])
    return safe
