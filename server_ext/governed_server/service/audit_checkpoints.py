"""Signed checkpoints: Ed25519 signatures over the chain head, kept in the DB and in files outside it.

A checkpoint says "record ``seq`` has hash ``head_hash``", signed at ``signed_at`` by key ``key_id``.
Because the hash of record N covers every record before it, one valid checkpoint vouches for the
whole chain up to N; because checkpoints are also appended to ``checkpoints.jsonl`` in a directory
outside the database (in production another machine or write-once storage), deleting the last
records, and rewinding the chain head with them, is still caught.

The signed message is ``canonical_json({"v": 1, "seq", "hash", "signed_at", "key_id"})``. The key
id is the first 16 hex digits of SHA-256 over the raw 32-byte public key; public keys are written
beside the checkpoint files as ``audit-key-<key_id>.pub`` (PEM). Files are 0600 in 0700 directories
(:mod:`governed_server.file_modes`): copy them to where auditors read them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from governed_server.audit_records import canonical_json, format_time, parse_time
from governed_server.file_modes import PRIVATE_FILE, private_dir

CHECKPOINT_FILE = "checkpoints.jsonl"
PUBLIC_KEY_PREFIX = "audit-key-"


class CheckpointError(RuntimeError):
    """A checkpoint could not be signed or written (key or directory problem)."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that record ``seq`` of the chain has hash ``head_hash``."""

    seq: int
    head_hash: str
    signed_at: datetime
    key_id: str
    signature: str

    def message(self) -> bytes:
        return signed_message(self.seq, self.head_hash, self.signed_at, self.key_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "seq": self.seq,
            "hash": self.head_hash,
            "signed_at": format_time(self.signed_at),
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        return cls(
            seq=int(data["seq"]),
            head_hash=str(data["hash"]),
            signed_at=parse_time(str(data["signed_at"])),
            key_id=str(data["key_id"]),
            signature=str(data["signature"]),
        )

    def identity(self) -> tuple[int, str, str, str]:
        return (self.seq, self.head_hash, self.key_id, self.signature)


def signed_message(seq: int, head_hash: str, signed_at: datetime, key_id: str) -> bytes:
    return canonical_json(
        {"v": 1, "seq": seq, "hash": head_hash, "signed_at": format_time(signed_at), "key_id": key_id}
    ).encode()


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- keys ------------------------------------------------------------------------------------------


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at ``path``, generated (mode 0600) on first use.

    Creation is atomic (write a temp file, then ``link``), so two processes starting together end up
    with the same key instead of one overwriting the other's.
    """
    path = path.expanduser()
    if not path.exists():
        private_dir(path.parent)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".audit-key-")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pem)
            os.fsync(fd)
            os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read the audit signing key {path}: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A PEM public key, or the public half of a PEM private key."""
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise CheckpointError(f"{path} is not an Ed25519 key")
        return private.public_key()
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"{path} is not an Ed25519 public key")
    return key


def directory_public_keys(directory: Path | None) -> dict[str, Ed25519PublicKey]:
    """Public keys stored beside the checkpoint files, by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    if directory is None or not directory.is_dir():
        return keys
    for path in sorted(directory.glob(f"{PUBLIC_KEY_PREFIX}*.pub")):
        with contextlib.suppress(CheckpointError, ValueError, OSError):
            key = load_public_key(path)
            keys[key_id_of(key)] = key
    return keys


def write_public_key(directory: Path, public_key: Ed25519PublicKey) -> Path:
    """Write ``audit-key-<id>.pub`` beside the checkpoints unless it is already there."""
    path = directory / f"{PUBLIC_KEY_PREFIX}{key_id_of(public_key)}.pub"
    if not path.exists():
        private_dir(directory)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".audit-key-")  # 0600
        try:
            os.write(fd, public_pem(public_key))
            os.fsync(fd)
            os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return path


# -- signing and checking --------------------------------------------------------------------------


def sign(key: Ed25519PrivateKey, seq: int, head_hash: str, signed_at: datetime) -> Checkpoint:
    key_id = key_id_of(key.public_key())
    signature = key.sign(signed_message(seq, head_hash, signed_at, key_id)).hex()
    return Checkpoint(seq, head_hash, signed_at, key_id, signature)


def signature_valid(checkpoint: Checkpoint, keys: Mapping[str, Ed25519PublicKey]) -> bool | None:
    """True/False, or None when no trusted key has this checkpoint's key id."""
    key = keys.get(checkpoint.key_id)
    if key is None:
        return None
    try:
        key.verify(bytes.fromhex(checkpoint.signature), checkpoint.message())
    except (InvalidSignature, ValueError):
        return False
    return True


# -- files outside the store -----------------------------------------------------------------------


def append_to_file(directory: Path, checkpoint: Checkpoint) -> None:
    """Append one JSON line to ``checkpoints.jsonl`` and fsync it (locked against other writers)."""
    private_dir(directory)
    line = (canonical_json(checkpoint.to_dict()) + "\n").encode()
    fd = os.open(directory / CHECKPOINT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_files(directory: Path | None) -> tuple[list[Checkpoint], list[str]]:
    """Checkpoints in ``directory`` and the lines that could not be read (as messages)."""
    if directory is None:
        return [], []
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        return [], []
    found: list[Checkpoint] = []
    errors: list[str] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found.append(Checkpoint.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            errors.append(f"{path}:{number}: unreadable checkpoint line")
    return found, errors


def unique(checkpoints: Iterable[Checkpoint]) -> list[Checkpoint]:
    """Deduplicated, ordered by seq."""
    seen: dict[tuple[int, str, str, str], Checkpoint] = {}
    for checkpoint in checkpoints:
        seen.setdefault(checkpoint.identity(), checkpoint)
    return sorted(seen.values(), key=lambda c: (c.seq, c.signed_at))
