"""A card number printed in pieces with pauses longer than the kernel's hold-back: every piece leaves
on its own, and the client's output area (JupyterLab's joining rules, ``output_view``) and the
cell's audit record never hold the whole number: the kernel retracts with ``clear_output(wait=True)``
and sends the cell's outputs again, masked, before the reply."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from kernel_helpers import PANS, Kernel, full_pans, strings  # type: ignore[import-not-found]
from output_view import area_texts, output_area  # type: ignore[import-not-found]

HEX = re.compile(r"[0-9a-f]{32,}")
PAUSE = 0.6
"""Longer than the stream hold-back (``StreamMasker.max_delay``, 0.5 s): each piece is released."""

WRITERS = {
    "print": "print(piece, end='', flush=True)",
    "sys.stdout.write": "import sys\nsys.stdout.write(piece); sys.stdout.flush()",
    "os.write": "import os\nos.write(1, piece.encode())",
    "stderr print": "import sys\nprint(piece, end='', file=sys.stderr, flush=True)",
}


def pieces_of(text: str, count: int) -> list[str]:
    size = max(1, len(text) // count)
    cuts = [size * i for i in range(1, count)]
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def cell_code(pieces: list[str], writer: str) -> str:
    """The code holds the pieces apart (its own record must not hold the PAN either)."""
    lines = [f"pieces = {json.dumps(pieces)}", "import time", "for piece in pieces:"]
    lines += ["    " + line for line in WRITERS[writer].split("\n")]
    lines += [f"    time.sleep({PAUSE})", "print()"]
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("writer", "count", "pan"),
    [
        ("print", 2, PANS[0]),
        ("print", 16, PANS[1]),
        ("sys.stdout.write", 5, PANS[2]),
        ("os.write", 3, PANS[3]),
        ("os.write", 16, PANS[4]),
        ("stderr print", 4, PANS[5]),
    ],
)
def test_a_pan_printed_in_pieces_never_stays_whole(
    kernel: Kernel, governance_service: Any, writer: str, count: int, pan: str
) -> None:
    text = f"card {pan[:4]} {pan[4:8]} {pan[8:12]} {pan[12:]} ok"
    cell = kernel.ok(cell_code(pieces_of(text, count), writer))
    kept = output_area(cell.iopub)
    shown = "\n".join(area_texts(kept))
    assert pan not in shown.replace(" ", ""), f"{writer}, {count} pieces: the client keeps {shown!r}"
    assert not full_pans(shown), shown
    assert shown.startswith("card ") and f"{pan[-4:]} ok" in shown, "the output is still there, masked"
    assert any(m["msg_type"] == "clear_output" for m in cell.iopub), "the pieces were retracted"
    last_output = max(i for i, m in enumerate(cell.iopub) if m["msg_type"] in ("stream", "clear_output"))
    idle = max(i for i, m in enumerate(cell.iopub) if m["msg_type"] == "status")
    assert last_output < idle, "the retraction reaches the client before the idle status"
    records = cell_records(governance_service, cell.reply["parent_header"]["msg_id"])
    assert any(f"{pan[-4:]} ok" in value for value in strings(records)), "the output is recorded, masked"
    for value in strings(records):
        if not HEX.fullmatch(value):  # hashes and signatures
            assert not full_pans(value), f"the audit record holds the PAN: {value!r}"


def cell_records(governance_service: Any, msg_id: str) -> list[dict[str, Any]]:
    """The kernel's records of one request, once its end record has arrived (sent in the background)."""
    deadline = time.monotonic() + 30
    while True:
        records = [
            r for r in governance_service.audit() if (r["data"].get("details") or {}).get("msg_id") == msg_id
        ]
        if any(r["event_type"] == "cell.end" for r in records) or time.monotonic() > deadline:
            assert records, "the cell has audit records"
            return records
        time.sleep(0.2)


def test_pieces_a_second_apart_with_other_output_between(kernel: Kernel) -> None:
    """Another stream between the pieces ends the join (the client shows two outputs)."""
    pan = PANS[6]
    code = (f"import sys, time\nprint({pan[:8]!r}, end='', flush=True)\ntime.sleep({PAUSE})\n"
            f"print('note', file=sys.stderr, flush=True)\ntime.sleep({PAUSE})\n"
            f"print({pan[8:]!r})")  # fmt: skip
    cell = kernel.ok(code)
    kept = output_area(cell.iopub)
    assert [o["name"] for o in kept] == ["stdout", "stderr", "stdout"]
    assert not any(m["msg_type"] == "clear_output" for m in cell.iopub), "nothing to retract"


def test_ordinary_output_is_never_retracted(kernel: Kernel) -> None:
    code = (f"import time\nfor i in range(5):\n    print(i, end=' ', flush=True)\n"
            f"    time.sleep({PAUSE / 3})\n"
            "print(12345678901234)")  # fmt: skip
    cell = kernel.ok(code)
    assert not any(m["msg_type"] == "clear_output" for m in cell.iopub)
    assert cell.stream("stdout") == "0 1 2 3 4 12345678901234\n"


def _msg_id(record: dict[str, Any]) -> str:
    return str((record["data"].get("details") or {}).get("msg_id", ""))
