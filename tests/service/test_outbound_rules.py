"""The outbound guard's rules without a server: masked files and their cache, models, the save ledger."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from governed_kernel.masking import Masker
from governed_server.single_user.outbound import (
    Fingerprint,
    MaskedFileCache,
    OutboundGuard,
    OutboundRefused,
    SaveLedger,
)

VISA = "4111111111111111"


def test_a_masked_file_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    guard = OutboundGuard(Masker(), cache_bytes=1024)
    path = tmp_path / "cards.txt"
    path.write_text(f"card {VISA}\n")
    first = guard.masked_file(str(path))
    assert first.data == b"card ************1111\n" and first.changed
    assert guard.masked_file(str(path)) is first  # cached: one masking for ranges and revalidations
    stat = path.stat()
    path.write_text(f"card {VISA[:-1]}2\n")  # same size: the times (and inode data) still tell
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime put back
    second = guard.masked_file(str(path))
    assert second is not first and second.data == b"card 4111111111111112\n" and not second.changed
    assert second.etag != first.etag


def test_large_files_are_refused_and_the_cache_stays_bounded(tmp_path: Path) -> None:
    guard = OutboundGuard(Masker(), max_file_bytes=100, cache_bytes=50)
    big = tmp_path / "big.txt"
    big.write_text("x" * 101)
    with pytest.raises(OutboundRefused) as refused:
        guard.masked_file(str(big))
    assert refused.value.status == 413 and "outbound_max_file_mb" in refused.value.message
    cache = MaskedFileCache(max_bytes=50)
    small = tmp_path / "a.txt"
    for index in range(5):
        small.write_text(str(index) * 20)
        cache.put((index,), guard.masked_file(str(small)))
    assert cache.get((0,)) is None and cache.get((4,)) is not None  # oldest out first


def test_models_that_masking_changes_are_read_only_with_a_hash_of_what_they_hold() -> None:
    guard = OutboundGuard(Masker())
    text = {"type": "file", "format": "text", "name": "a.txt", "content": f"{VISA}\n", "writable": True,
            "size": 17, "hash": "original-hash", "hash_algorithm": "sha256"}  # fmt: skip
    masked, report = guard.mask_model(text)
    assert masked["content"] == "************1111\n" and masked["writable"] is False
    assert masked["hash"] not in ("original-hash", None) and report.kinds["pan"] == 1
    assert text["content"] == f"{VISA}\n"  # the input is not modified
    raw = base64.encodebytes(f"{VISA}\n".encode()).decode()
    b64 = {"type": "file", "format": "base64", "name": "a.bin", "content": raw, "writable": True}
    masked, _ = guard.mask_model(b64)
    assert base64.b64decode(masked["content"]) == b"************1111\n" and masked["writable"] is False
    clean = {"type": "file", "format": "text", "name": "a.txt", "content": "nothing", "writable": True}
    same, nothing = guard.mask_model(clean)
    assert same is clean and not nothing
    listing = {"type": "directory", "content": [{"name": VISA, "content": None}]}
    assert guard.mask_model(listing)[0] is listing  # names are paths, not content (docs/outbound.md)


def test_the_save_ledger_follows_writes_renames_and_deletes() -> None:
    ledger = SaveLedger(max_entries=2)
    state = Fingerprint("2026-01-01T00:00:00", 10)
    ledger.record("ana", "/a.ipynb", state)
    assert ledger.matches("ana", "a.ipynb", state)
    assert not ledger.matches("bob", "a.ipynb", state)
    assert not ledger.matches("ana", "a.ipynb", Fingerprint("2026-01-01T00:00:01", 10))
    ledger.move("a.ipynb", "b.ipynb")
    assert ledger.matches("ana", "b.ipynb", state) and not ledger.matches("ana", "a.ipynb", state)
    ledger.forget(None, "b.ipynb")
    assert not ledger.matches("ana", "b.ipynb", state)
    for name in ("x", "y", "z"):
        ledger.record("ana", name, state)
    assert not ledger.matches("ana", "x", state) and ledger.matches("ana", "z", state)
