"""Shared helpers for the leak suite: public test PANs, leak checks and a governed kernel driver.

The kernels here run an *observe-mode* copy of the test policy: every cell is classified and
audited but none waits for an approval and the runtime guard only records. That makes the leak
tests independent of the gate (subprocess, ``os.write``, ``input()`` would otherwise need an
approver); the approval flow has its own tests.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

from governed_kernel.masking import default_masker, luhn_valid

CARDS_CSV = Path(__file__).resolve().parent.parent / "data" / "test-cards.csv"
TIMEOUT = 60


def load_pans() -> list[str]:
    with CARDS_CSV.open(newline="") as handle:
        return [row["pan"] for row in csv.DictReader(handle)]


PANS = load_pans()
VISA, MASTERCARD, AMEX, DISCOVER = PANS[0], PANS[2], PANS[6], PANS[8]

_RUN = re.compile(r"[0-9](?:[ \t\-.\u00a0\u2009\u202f]{0,3}[0-9])*")


def grouped(pan: str, sep: str) -> str:
    """``pan`` in groups of four joined by ``sep``."""
    return sep.join(pan[i : i + 4] for i in range(0, len(pan), 4))


def strings(value: Any) -> Iterator[str]:
    """Every string leaf (and number, as text) of a JSON-like value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, (int, float)):
        yield repr(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings(item)
    elif isinstance(value, bytes):
        yield value.decode("latin-1")


_HEX_ID = re.compile(r"[0-9a-fA-F][0-9a-fA-F-]{22,}[0-9a-fA-F]")


def _in_random_id(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` lies in a long hex token with letters (a message signature, a
    uuid, a kernel id): random hex has a digit run that passes Luhn in ~0.1% of tokens."""
    for match in _HEX_ID.finditer(text, max(0, start - 200), min(len(text), end + 200)):
        token = match.group()
        if match.start() <= start and end <= match.end() and re.search("[a-fA-F]", token):
            return True
    return False


def full_pans(text: str) -> list[str]:
    """Full PANs in ``text``: what the engine finds (outside random hex ids), plus every 12-19 digit
    window (separators ignored) of a digit run that passes Luhn *and* is a public test PAN (an
    independent check, which also covers the test PANs inside hex tokens)."""
    findings = default_masker().find(text)
    found = [text[f.start : f.end] for f in findings if not _in_random_id(text, f.start, f.end)]
    known = set(PANS)
    for match in _RUN.finditer(text):
        digits = re.sub(r"[^0-9]", "", match.group())
        for size in range(12, 20):
            for start in range(0, len(digits) - size + 1):
                window = digits[start : start + size]
                if window in known and luhn_valid(window):
                    found.append(window)
    return found


def assert_masked(value: Any, pan: str, *, where: str = "", shown: Any = None) -> None:
    """No full PAN anywhere in ``value``, and the last four digits of ``pan`` are visible in
    ``shown`` (default ``value``; pass the outputs only, so a masked echo of the code does not count)."""
    texts = list(strings(value))
    leaks = [p for text in texts for p in full_pans(text)]
    assert not leaks, f"{where}: full PAN(s) reached the client: {len(leaks)}"
    visible = texts if shown is None else list(strings(shown))
    assert any(pan[-4:] in text for text in visible), f"{where}: last four digits not visible (dropped?)"
    assert not any("withheld because masking failed" in text for text in visible), f"{where}: withheld"


def assert_no_pan(text: str, *, where: str = "") -> None:
    leaks = full_pans(text)
    lines = [line for line in text.splitlines() if full_pans(line)]
    shown = "\n".join(line[:400] for line in lines[:5])  # test card numbers only: safe to show
    assert not leaks, f"{where}: {len(leaks)} full PAN(s) found in:\n{shown}"


def kernel_env(base: dict[str, str], ipython_dir: Path) -> dict[str, str]:
    """The environment of a test kernel: the service credential, a private IPYTHONDIR, no
    PYTEST_CURRENT_TEST (ipykernel turns fd capture off under pytest; ours must not care, but the
    real-world environment has no such variable)."""
    env = {**os.environ, **base, "IPYTHONDIR": str(ipython_dir), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


@dataclass
class Cell:
    """Everything one request produced: iopub messages, the reply, stdin prompts."""

    iopub: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    stdin: list[dict[str, Any]] = field(default_factory=list)

    @property
    def everything(self) -> list[Any]:
        """Every message body, plus each stream as the frontend shows it (pieces joined)."""
        return (
            [m["content"] for m in self.iopub]
            + [m["metadata"] for m in self.iopub]
            + [
                self.reply.get("content", {}),
                *(m["content"] for m in self.stdin),
                self.stream("stdout"),
                self.stream("stderr"),
            ]
        )

    @property
    def shown(self) -> list[Any]:
        """What the cell produced (not the echo of its code): outputs, reply, prompts, streams."""
        return (
            [m["content"] for m in self.outputs]
            + [m["metadata"] for m in self.outputs]
            + [
                self.reply.get("content", {}),
                *(m["content"] for m in self.stdin),
                self.stream("stdout"),
                self.stream("stderr"),
            ]
        )

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return [m for m in self.iopub if m["msg_type"] not in ("status", "execute_input")]

    def stream(self, name: str | None = None) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.iopub
            if m["msg_type"] == "stream" and (name is None or m["content"]["name"] == name)
        )


class Kernel:
    """A governed kernel started by jupyter_client, raw output captured to files."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.workdir = workdir
        self.raw_out = (workdir / "kernel-stdout.log").open("wb")
        self.raw_err = (workdir / "kernel-stderr.log").open("wb")
        self.km = KernelManager(kernel_name="governed-python")
        self.km.start_kernel(env=env, cwd=str(workdir), stdout=self.raw_out, stderr=self.raw_err)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def run(self, code: str, *, stdin_answer: str | None = None, **kwargs: Any) -> Cell:
        cell = Cell()

        def on_stdin(msg: dict[str, Any]) -> None:
            cell.stdin.append(msg)
            self.kc.input(stdin_answer or "")

        reply = self.kc.execute_interactive(
            code,
            output_hook=cell.iopub.append,
            stdin_hook=on_stdin,
            allow_stdin=stdin_answer is not None,
            timeout=TIMEOUT,
            **kwargs,
        )
        cell.reply = reply
        return cell

    def ok(self, code: str, **kwargs: Any) -> Cell:
        cell = self.run(code, **kwargs)
        assert cell.reply["content"]["status"] == "ok", cell.reply["content"]
        return cell

    def request(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Send a shell request (inspect, complete, history, kernel_info) and return its reply."""
        msg_id = getattr(self.kc, method)(*args, **kwargs)
        while True:
            reply: dict[str, Any] = self.kc.get_shell_msg(timeout=TIMEOUT)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    def raw_output(self) -> str:
        """What the kernel wrote to its original stdout/stderr (the server log in production)."""
        self.raw_out.flush()
        self.raw_err.flush()
        return (self.workdir / "kernel-stdout.log").read_text(errors="replace") + (
            self.workdir / "kernel-stderr.log"
        ).read_text(errors="replace")

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)
        self.raw_out.close()
        self.raw_err.close()


def history_rows(ipython_dir: Path) -> list[str]:
    """Every text value stored in the kernel's IPython history database (a jailed kernel's is in
    the profile's writable ``governed-history`` folder: the profile itself is read-only)."""
    import sqlite3

    profile = ipython_dir / "profile_default"
    jailed = profile / "governed-history" / "history.sqlite"
    path = jailed if jailed.exists() else profile / "history.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        rows: Iterable[tuple[Any, ...]] = [
            *db.execute("SELECT source, source_raw FROM history"),
            *db.execute("SELECT output FROM output_history"),
        ]
        return [str(value) for row in rows for value in row if value is not None]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
