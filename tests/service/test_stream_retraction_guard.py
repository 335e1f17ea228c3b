"""The server's guard retracts a card number that a kernel lets through in pieces: a cell switches
the kernel's own retraction off, then prints a PAN in pieces with pauses. What the client keeps
(JupyterLab's joining rules, ``output_view``) never holds the whole number, on both websocket
protocols, and the bypass is in the audit log."""

from __future__ import annotations

import json
from typing import Any

import pytest
from output_view import area_texts, output_area  # type: ignore[import-not-found]
from service_helpers import Api  # type: ignore[import-not-found]
from ws_client import V1  # type: ignore[import-not-found]

from governed_kernel.masking import default_masker

PAN = "4111111111111111"
PIECES = ["card 4111 11", "11 1111", " 1111 ok"]
ATTACK = f"""\
import time
get_ipython().kernel.session.areas.observe = lambda *args, **kwargs: None  # the kernel's retraction off
for piece in {json.dumps(PIECES)}:
    print(piece, end='', flush=True)
    time.sleep(0.6)
print()
"""


@pytest.mark.parametrize("protocol", [V1, None])
async def test_a_pan_sent_in_pieces_by_a_bypassed_kernel_is_retracted_by_the_server(
    governed_kernelspec: None, open_kernel: Any, api: Api, protocol: str | None
) -> None:
    kernel = await open_kernel("alice", protocol, "governed-python")
    msg_id = kernel.execute(ATTACK)
    answers = await kernel.finished(msg_id, timeout=60)
    kept = output_area([m for m in answers if m.get("channel", "iopub") == "iopub"], parent_id=msg_id)
    shown = "\n".join(area_texts(kept))
    assert not default_masker().find(shown) and PAN not in shown.replace(" ", ""), shown
    assert "card " in shown and "1111 ok" in shown, "the output is still shown, masked"
    assert any(m["msg_type"] == "clear_output" for m in answers), "the server retracted the pieces"
    status, listing = await api("dave", "GET", "audit", params={"event_type": "guard.masked"})
    assert status == 200 and listing["records"], "the bypass is recorded"
