"""``MaskingOutStream``: stdout/stderr masked across writes, flushes and file-descriptor output.

Why a stream class and not only the Session: a PAN printed in two pieces (``print(a, end="")``
then ``print(b)``, or a flush in between) arrives in two stream messages, each harmless alone. The
engine's :class:`StreamMasker` holds back a tail that could still grow into a PAN; the tail leaves
at end of cell (:meth:`MaskingOutStream.finish_cell`), when the next cell starts, or after
``max_delay`` seconds (a timer on the IOPub thread).

File-descriptor output (C code, ``os.write(1, ...)``, subprocesses) reaches the same stream through
ipykernel's pipe watcher. Upstream copies those bytes *raw* to the kernel's original stdout/stderr,
which ends up in the server log; here the copy is masked with its own carry-over. Capture is forced
on even when ``PYTEST_CURRENT_TEST`` is set (upstream skips it then, and the output would go raw to
the original descriptors). Python-level ``echo`` (``quiet=False``) is never honoured: it is raw.
"""

from __future__ import annotations

import array
import codecs
import contextlib
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any

from ipykernel.iostream import OutStream

try:
    import fcntl
    import termios
except ImportError:  # pragma: no cover - Windows: always sync through the pipe
    fcntl = None  # type: ignore[assignment]

from governed_kernel.masking import Masker, MaskReport, StreamMasker, default_masker
from governed_kernel.session import WITHHELD

PIPE_BUFFER_SIZE = 1000
SYNC_TIMEOUT = 2.0
"""Seconds :meth:`MaskingOutStream.finish_cell` waits for fd output written before it to be read."""


class MaskingOutStream(OutStream):
    """An :class:`OutStream` that masks with carry-over and echoes fd output masked (never raw)."""

    def __init__(
        self,
        session: Any,
        pub_thread: Any,
        name: str,
        pipe: Any = None,
        echo: Any = None,
        *,
        watchfd: bool | str = True,
        isatty: bool = False,
    ) -> None:
        # Set before super().__init__: it starts the pipe-watcher thread, which uses these.
        self._carry: dict[str, tuple[dict[str, Any], StreamMasker]] = {}
        self._release = False
        self._flushing = False
        self._fd_in_flight = False
        self._poll_scheduled = False
        self._sync_token = b"\x00governed-sync-" + os.urandom(8).hex().encode() + b"\x00"
        self._synced = threading.Event()
        self._echo_masker: StreamMasker | None = None
        self._echo_lock = threading.Lock()
        masker = getattr(session, "masker", None)
        self._masker: Masker = masker if isinstance(masker, Masker) else default_masker()
        ledger = getattr(session, "ledger", None)
        self._ledger = ledger
        if ledger is not None:
            ledger.add_finisher(self.finish_cell)
        if watchfd is True:
            watchfd = "force"
        kwargs: dict[str, Any] = {"watchfd": watchfd, "isatty": isatty}
        if pipe is not None:
            kwargs["pipe"] = pipe
        super().__init__(session, pub_thread, name, echo=None, **kwargs)  # type: ignore[no-untyped-call]

    # -- end of cell ------------------------------------------------------------------------------
    def finish_cell(self) -> None:
        """Send everything held back (after reading fd output written so far). Main thread.

        Most cells print nothing on a given stream: then there is nothing to wait for, and the two
        round trips to other threads (fd watcher, IOPub thread) are skipped (see :meth:`_idle`).
        """
        self._sync_fd()
        if self._idle():
            return
        self._release = True
        self.flush()

    def flush(self) -> None:
        """Send what was written, and wait until it is sent; at once when nothing was written.

        ipykernel's flush always makes a round trip to the IOPub thread (wake it, wait for it), even
        with nothing to send; every cell flushes both streams after it runs and again after showing
        its result, so most of those round trips carry nothing (measured: ~0.1 ms each on a loaded
        two-core machine). Nothing written since the last flush, nothing held back, no flush running
        and no descriptor output waiting in the pipe: there is nothing to send.
        """
        if self._idle() and self._fd_quiet_or_unwatched():
            return
        super().flush()  # type: ignore[no-untyped-call]

    def _fd_quiet_or_unwatched(self) -> bool:
        if not self._should_watch or self._fid is None:
            return True
        return self._fd_quiet()

    def _idle(self) -> bool:
        """Nothing written since the last flush, no flush running, nothing held back.

        Read in this order: a write sets ``_flush_pending`` before it returns, and :meth:`_flush`
        sets ``_flushing`` before it clears ``_flush_pending``.
        """
        return not self._flush_pending and not self._flushing and not self._carry

    def _fd_quiet(self) -> bool:
        """No fd output is waiting in the pipe or being forwarded by the watcher.

        Read in this order: the watcher sets ``_fd_in_flight`` before it reads from the pipe and
        clears it after it forwarded what it read, so bytes are always either counted by FIONREAD
        or covered by the flag.
        """
        if _pending_bytes(self._fid) != 0:
            return False
        return not self._fd_in_flight

    def _sync_fd(self) -> None:
        """Wait until the watcher has forwarded all fd output written so far (a token round trip)."""
        watcher = getattr(self, "watch_fd_thread", None)
        if not self._should_watch or self._fid is None or watcher is None or not watcher.is_alive():
            return
        if self._fd_quiet():
            return
        fd = self._original_stdstream_fd
        try:
            if os.fstat(fd).st_ino != os.fstat(self._fid).st_ino:
                return  # user code re-pointed the descriptor: do not write the token there
            self._synced.clear()
            os.write(fd, self._sync_token)
        except OSError:
            return
        self._synced.wait(SYNC_TIMEOUT)

    # -- masking on the IOPub thread --------------------------------------------------------------
    def _flush(self) -> None:
        self._flushing = True
        try:
            self._flush_held()
        finally:
            self._flushing = False

    def _flush_held(self) -> None:
        self._flush_pending = False
        self._subprocess_flush_pending = False
        release, self._release = self._release, False
        release = release or not self._is_master_process()  # type: ignore[no-untyped-call]
        for parent, data in self._flush_buffers():  # type: ignore[no-untyped-call]
            if data:
                self._feed(parent, data)
        current = _msg_id(self.parent_header)
        for key, (parent, masker) in list(self._carry.items()):
            final = release or key != current
            self._masked(parent, masker, masker.flush if final else masker.poll)
            if not masker.held:
                self._carry.pop(key, None)
        if self._carry and not self._poll_scheduled and self._io_loop is not None:
            self._poll_scheduled = True
            delay = min(masker.max_delay for _, masker in self._carry.values())
            self._io_loop.call_later(delay, self._poll_flush)

    def _poll_flush(self) -> None:
        self._poll_scheduled = False
        self._flush()

    def _feed(self, parent: dict[str, Any], data: str) -> None:
        key = _msg_id(parent)
        entry = self._carry.get(key)
        if entry is None:
            entry = self._carry[key] = (parent, StreamMasker(self._masker))
        masker = entry[1]
        self._masked(parent, masker, lambda: masker.feed(data))

    def _masked(self, parent: dict[str, Any], masker: StreamMasker, step: Callable[[], str]) -> None:
        """Run one masking step and send its output; on failure send a notice instead (fail closed)."""
        masker.report = MaskReport()
        try:
            text = step()
        except Exception as error:
            self._carry.pop(_msg_id(parent), None)  # the held tail is dropped with it
            if self._ledger is not None:
                self._ledger.add_dropped(_msg_id(parent))
            text = WITHHELD.format(error=type(error).__name__)
        if self._ledger is not None and masker.report:
            self._ledger.add_report(masker.report, _msg_id(parent))
        self._send(parent, text)

    def _send(self, parent: dict[str, Any], text: str) -> None:
        if not text:
            return
        self.session.pid = os.getpid()  # the IOPub thread is fork-safe (as upstream)
        msg = self.session.msg("stream", {"name": self.name, "text": text}, parent=parent)
        for hook in self._hooks:
            msg = hook(msg)
            if msg is None:
                return
        send = getattr(self.session, "send_masked_stream", self.session.send)
        send(self.pub_thread, msg, ident=self.topic)

    # -- file-descriptor output -------------------------------------------------------------------
    def _watch_pipe_fd(self) -> None:
        """Read fd output, forward it to the stream, copy it *masked* to the original descriptor."""
        if self._fid is None:
            return
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        token = self._sync_token
        pending = b""
        try:
            readable = select.poll()
            readable.register(self._fid, select.POLLIN)
            while True:
                readable.poll()  # wait outside the flag: see _fd_quiet
                self._fd_in_flight = True
                chunk = os.read(self._fid, PIPE_BUFFER_SIZE)
                if not chunk or not self._should_watch:
                    break
                data = pending + chunk
                synced = token in data
                if synced:
                    data = data.replace(token, b"")
                keep = _partial_suffix(data, token)
                pending = data[len(data) - keep :]
                text = decoder.decode(data[: len(data) - keep])
                if text:
                    self.write(text)
                    self._echo(text)
                if synced:
                    self._echo(None)
                    self._synced.set()
                self._fd_in_flight = False
        except Exception:
            self._exc = sys.exc_info()
        finally:
            self._fd_in_flight = False

    def _echo(self, text: str | None) -> None:
        """Masked copy of fd output to the original descriptor (the terminal or the server log)."""
        with self._echo_lock:
            if self._echo_masker is None:
                self._echo_masker = StreamMasker(self._masker)
            try:
                out = self._echo_masker.flush() if text is None else self._echo_masker.feed(text)
            except Exception:
                out = "[governed kernel] output withheld: masking failed\n"
            if out:
                with contextlib.suppress(OSError):
                    os.write(self._original_stdstream_copy, out.encode(errors="replace"))


def _pending_bytes(fd: int | None) -> int:
    """Unread bytes in the pipe ``fd`` (FIONREAD); -1 when that cannot be asked (then: sync)."""
    if fd is None or fcntl is None:
        return -1
    count = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, count, True)
    except OSError:
        return -1
    return count[0]


def _msg_id(parent: dict[str, Any]) -> str:
    return str(parent.get("msg_id", "")) if parent else ""


def _partial_suffix(data: bytes, token: bytes) -> int:
    """Length of the longest end of ``data`` that is a proper start of ``token`` (split token)."""
    start = data.rfind(token[:1], max(0, len(data) - len(token) + 1))
    while start >= 0:
        if token.startswith(data[start:]):
            return len(data) - start
        start = data.rfind(token[:1], max(0, len(data) - len(token) + 1), start)
    return 0
