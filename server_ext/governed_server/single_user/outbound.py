"""The outbound guard's rules: file content leaves the server masked, and no save loses data.

The handlers (``handlers/outbound.py``) stay thin; what they do with a file or a contents model is
decided here, without a server:

- :meth:`OutboundGuard.masked_file` — the masked bytes of a file on disk (``/files/``, kernelspec
  resources), read whole, masked whole, cached by the file's identity and times (device, inode,
  size, mtime, ctime), so ranges and revalidations of the same file cost one masking. Ranges are
  cut from these bytes, never masked per range; the ETag is a digest of them.
- :meth:`OutboundGuard.mask_model` — a contents model (notebook, text, base64) as the contents API,
  nbconvert and ``FilesHandler`` serve it. A model that masking changed comes back
  ``writable: false`` (JupyterLab opens it read-only and offers *Save As*), with a hash and size of
  what it now holds.
- :class:`SaveLedger` — who last wrote or read each file in full, so that a save over a file whose
  card numbers the client only ever saw masked is refused (:func:`save_refusal`), and a save to a
  new path works.

Fail closed: a file that cannot be masked, or is larger than the limit, is not served
(:class:`OutboundRefused`); nothing here ever returns the original bytes of a file that needed
masking.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from governed_kernel.masking import (
    Masker,
    MaskingError,
    MaskReport,
    mask_file_bytes,
    mask_file_text,
    mask_json,
    mask_notebook,
    needs_masking,
    notebook_needs_masking,
)

MIB = 1024 * 1024
DEFAULT_MAX_FILE_MB = 256
DEFAULT_CACHE_MB = 128
RECORD_WINDOW = 60.0
"""Seconds within which repeated ranges / revalidations of one masked file by one user are one record."""


class OutboundRefused(Exception):
    """The content cannot leave masked (too large, unreadable, masking failed): it does not leave."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class MaskedFile:
    """What a file route serves in place of the file: masked bytes, their digest, what changed."""

    data: bytes
    etag: str
    report: MaskReport = field(default_factory=MaskReport)

    @property
    def changed(self) -> bool:
        return self.report.total > 0


class MaskedFileCache:
    """Least-recently-used masked files, bounded by their total size. Thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Any, ...], MaskedFile] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> MaskedFile | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[Any, ...], entry: MaskedFile) -> None:
        if len(entry.data) > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= len(old.data)
            self._entries[key] = entry
            self._size += len(entry.data)
            while self._size > self.max_bytes and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self._size -= len(dropped.data)


@dataclass(frozen=True)
class Fingerprint:
    """A file's state as a contents model reports it (no content needed)."""

    last_modified: str
    size: int | None

    @classmethod
    def of(cls, model: Mapping[str, Any]) -> Fingerprint:
        size = model.get("size")
        return cls(str(model.get("last_modified")), int(size) if isinstance(size, int) else None)


class SaveLedger:
    """Per (user, path): the file's state when that user last wrote it, or read it whole unmasked.

    A save over a file in that same state cannot lose anything the user has not seen. Any other
    state (a cell wrote the file since, the user only ever got it masked, another user wrote it,
    the server restarted) needs the file's content on disk to be checked before the save.
    Bounded; in memory only (a restart forgets, which only means one more check).
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], Fingerprint] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, user: str, path: str, fingerprint: Fingerprint) -> None:
        with self._lock:
            self._entries[(user, _norm(path))] = fingerprint
            self._entries.move_to_end((user, _norm(path)))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def matches(self, user: str, path: str, fingerprint: Fingerprint) -> bool:
        with self._lock:
            return self._entries.get((user, _norm(path))) == fingerprint

    def forget(self, user: str | None, path: str) -> None:
        """Forget ``path`` for ``user`` (every user when None: the file is gone)."""
        with self._lock:
            for key in [k for k in self._entries if k[1] == _norm(path) and user in (None, k[0])]:
                del self._entries[key]

    def move(self, old: str, new: str) -> None:
        """A rename keeps the file's state: entries follow it."""
        with self._lock:
            for user, path in [k for k in self._entries if k[1] == _norm(old)]:
                self._entries[(user, _norm(new))] = self._entries.pop((user, path))


def _norm(path: str) -> str:
    return path.strip("/")


class OutboundGuard:
    """Masks file content for the routes that serve it; one per server, shared by its handlers."""

    def __init__(
        self,
        masker: Masker,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_MB * MIB,
        cache_bytes: int = DEFAULT_CACHE_MB * MIB,
    ) -> None:
        self.masker = masker
        self.max_file_bytes = max_file_bytes
        self.cache = MaskedFileCache(cache_bytes)
        self.ledger = SaveLedger()
        self._seen: dict[tuple[Any, ...], float] = {}
        self._seen_lock = threading.Lock()
        self._rules = repr(masker.config)
        """What the masked bytes also depend on: the masking rules (reveal, mask character, brands...)."""

    # -- files on disk ---------------------------------------------------------------------------
    def first_time(self, key: tuple[Any, ...], window: float = RECORD_WINDOW) -> bool:
        """Whether ``key`` was not seen in the last ``window`` seconds (records it as seen)."""
        now = time.monotonic()
        with self._seen_lock:
            if len(self._seen) > 10_000:
                self._seen = {k: t for k, t in self._seen.items() if now - t < window}
            last = self._seen.get(key)
            if last is not None and now - last < window:
                return False
            self._seen[key] = now
            return True

    def cached_file(self, path: str) -> MaskedFile | None:
        """The masked file when the cache holds it for the file as it is now (a stat, no read)."""
        try:
            return self.cache.get(self._key(path, os.stat(path)))
        except OSError:
            return None

    def masked_file(self, path: str) -> MaskedFile:
        """The masked bytes of the file at ``path`` (cached by identity and times).

        Raises OutboundRefused (413 too large, 500 masking failed) and OSError (unreadable)."""
        st = os.stat(path)
        key = self._key(path, st)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        if st.st_size > self.max_file_bytes:
            raise self.too_large(st.st_size)
        with open(path, "rb") as handle:
            raw = handle.read(self.max_file_bytes + 1)
            after = os.fstat(handle.fileno())
        if len(raw) > self.max_file_bytes:
            raise self.too_large(len(raw))
        try:
            data, report = mask_file_bytes(raw, os.path.basename(path), self.masker)
        except (MaskingError, ValueError, TypeError, RecursionError) as error:
            raise OutboundRefused(500, self.masking_failed(error)) from None
        # The ETag names the masked bytes: this state of the file (identity, size, times) under these
        # masking rules. No hash of the content: one would cost more than the masking (and a hash of
        # the original would fingerprint its digits).
        etag = hashlib.blake2b(repr((key[1:], len(data))).encode(), digest_size=16).hexdigest()
        masked = MaskedFile(data, etag, report)
        if self._key(path, after) == key:  # unchanged while read: safe to reuse
            self.cache.put(key, masked)
        return masked

    def _key(self, path: str, st: os.stat_result) -> tuple[Any, ...]:
        return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, self._rules)

    def too_large(self, size: int) -> OutboundRefused:
        limit = self.max_file_bytes / MIB
        return OutboundRefused(
            413,
            f"not served: the file is {size / MIB:.1f} MiB, more than the {limit:g} MiB that the server "
            "masks before serving a file (GovernedServerApp.outbound_max_file_mb)",
        )

    @staticmethod
    def masking_failed(error: BaseException) -> str:
        return (
            f"not served: the file's card numbers could not be masked ({type(error).__name__}); "
            "nothing of it was sent"
        )

    # -- contents models -------------------------------------------------------------------------
    def mask_model(self, model: Mapping[str, Any]) -> tuple[Mapping[str, Any], MaskReport]:
        """A contents model as it may leave: content masked; when that changed it, read-only.

        Returns the model itself when nothing needed masking. Raises OutboundRefused."""
        report = MaskReport()
        content = model.get("content")
        if content is None or model.get("type") == "directory":
            return model, report
        try:
            masked, digest_source = self._mask_content(model, content, report)
        except OutboundRefused:
            raise
        except (MaskingError, ValueError, TypeError, RecursionError) as error:
            raise OutboundRefused(500, self.masking_failed(error)) from None
        if not report:
            return model, report
        out = dict(model)
        out["content"] = masked
        out["writable"] = False
        if out.get("hash") is not None:  # the on-disk hash would fingerprint the digits: the view's
            out["hash"] = hashlib.sha256(digest_source()).hexdigest()
            out["hash_algorithm"] = "sha256"
        if (
            model.get("type") == "file"
            and isinstance(out.get("size"), int)
            and not _same_size(content, masked)
        ):
            out["size"] = len(digest_source())
        return out, report

    def _mask_content(
        self, model: Mapping[str, Any], content: Any, report: MaskReport
    ) -> tuple[Any, Callable[[], bytes]]:
        """The masked content and how to get the bytes it stands for (for a hash and size, if asked)."""
        name = str(model.get("name") or "")
        size = model.get("size")
        if isinstance(size, int) and size > self.max_file_bytes:
            raise self.too_large(size)
        if model.get("type") == "notebook" or model.get("format") == "json":
            if not isinstance(content, Mapping) or not notebook_needs_masking(content, self.masker):
                return content, bytes
            masked_nb = mask_notebook(content, self.masker, report)[0]
            if masked_nb == content:  # only values masked already (a "cvv" key's "***"): no change
                report.kinds.clear()
                report.brands.clear()
                return content, bytes
            return masked_nb, lambda: json.dumps(masked_nb, sort_keys=True).encode()
        if model.get("format") == "text" and isinstance(content, str):
            text = mask_file_text(content, name, self.masker, report)[0]
            return text, lambda: text.encode("utf-8", "surrogateescape")
        if model.get("format") == "base64" and isinstance(content, str):
            raw = base64.b64decode(content)
            data = mask_file_bytes(raw, name, self.masker, report)[0]
            encoded = base64.encodebytes(data) if "\n" in content else base64.b64encode(data)
            return encoded.decode("ascii"), lambda: data
        # Anything else (another contents manager's format): every string and number, as JSON.
        if not needs_masking(content, self.masker, by_name=False):
            return content, bytes
        other = mask_json(content, self.masker, report, by_name=False)[0]
        if other == content:
            report.kinds.clear()
            report.brands.clear()
        return other, lambda: json.dumps(other, sort_keys=True, default=str).encode()

    def mask_data(self, data: Any) -> tuple[Any, MaskReport]:
        """JSON that an API returns (checkpoints, workspaces, settings): strings and card-sized
        numbers masked, keys read as field names. Raises OutboundRefused."""
        report = MaskReport()
        try:
            if not needs_masking(data, self.masker, by_name=False):
                return data, report
            masked = mask_json(data, self.masker, report, by_name=False)[0]
            return (data, MaskReport()) if masked == data else (masked, report)
        except (MaskingError, ValueError, TypeError, RecursionError) as error:
            raise OutboundRefused(500, self.masking_failed(error)) from None

    def masked_path(self, path: str) -> str:
        """A path as records and messages may show it (a file name can hold a card number too)."""
        return self.masker.mask_text(path)[0]


def _same_size(content: Any, masked: Any) -> bool:
    """ASCII text masked with an ASCII character keeps its size in bytes (no need to encode it)."""
    return (
        isinstance(content, str)
        and isinstance(masked, str)
        and len(masked) == len(content)
        and masked.isascii()
        and content.isascii()
    )


def save_refusal(masked_path: str) -> str:
    """Why a save over ``masked_path`` is refused (409), and what to do."""
    return (
        f"Not saved: {masked_path} holds card numbers, which this server only ever shows masked, so the "
        "copy you have is masked and saving it here would overwrite them. The file is unchanged. Save "
        "your copy under a new name instead (File > Save As...)."
    )
