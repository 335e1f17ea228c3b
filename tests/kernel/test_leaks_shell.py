"""Leak suite, shell/stdin/control side: replies and payloads carry values too (DESIGN pitfalls).

Pager and ``set_next_input`` payloads, ``user_expressions``, inspect, complete (dict keys and
DataFrame columns), history, input prompts, kernel_info; the debugger is refused; IPython's
history database and the audit store hold no full PAN.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from kernel_helpers import (  # type: ignore[import-not-found]
    AMEX,
    DISCOVER,
    MASTERCARD,
    VISA,
    Kernel,
    assert_masked,
    assert_no_pan,
    dumps,
    history_rows,
    strings,
)

V, M, A, D = VISA, MASTERCARD, AMEX, DISCOVER
HEX = re.compile(r"[0-9a-fA-F]{32,}")


def payloads(kernel: Kernel, code: str) -> list[dict[str, Any]]:
    cell = kernel.ok(code)
    found: list[dict[str, Any]] = cell.reply["content"].get("payload", [])
    assert found, f"no payload for {code!r}"
    return found


def test_pager_on_a_docstring_with_a_pan(kernel: Kernel) -> None:
    kernel.ok(f"def card_helper():\n    '''Charges card {V} (test).'''\n    return '{M}'")
    assert_masked(payloads(kernel, "card_helper?"), V, where="pager ?")
    pages = payloads(kernel, "card_helper??")  # source: docstring and body
    assert_masked(pages, V, where="pager ??")
    assert_masked(pages, M, where="pager ?? body")


def test_set_next_input_payload(kernel: Kernel) -> None:
    found = payloads(kernel, f"get_ipython().set_next_input(\"card = '{D}'\")")
    assert_masked(found, D, where="set_next_input")


def test_user_expressions(kernel: Kernel) -> None:
    kernel.ok(f"ue_card = '{A}'")
    cell = kernel.ok("pass", user_expressions={"e": "ue_card", "n": f"{V}", "bad": f"undefined_{M}"})
    expressions = cell.reply["content"]["user_expressions"]
    assert expressions["e"]["status"] == "ok"
    assert_masked(expressions["e"], A, where="user_expressions")
    assert_masked(expressions["n"], V, where="user_expressions number")
    assert_masked(expressions["bad"], M, where="user_expressions error")


def test_inspect_reply(kernel: Kernel) -> None:
    kernel.ok(f"inspect_card = '{V}'")
    for level in (0, 1):
        reply = kernel.request("inspect", "inspect_card", 12, detail_level=level)
        assert reply["content"]["found"]
        assert_masked(reply["content"], V, where=f"inspect_reply level {level}")


def test_complete_reply_dict_keys_and_dataframe_columns(kernel: Kernel) -> None:
    kernel.ok(f"import pandas as pd\ncards = {{'{V}': 1, 'k{M}': 2}}\nframe = pd.DataFrame(columns=['{A}'])")
    reply = kernel.request("complete", "cards['", 7)
    assert reply["content"]["matches"], reply["content"]
    assert_masked(reply["content"], V, where="complete dict key")
    assert_masked(reply["content"], M, where="complete dict key with prefix")
    reply = kernel.request("complete", "frame['", 7)
    assert reply["content"]["matches"], reply["content"]
    assert_masked(reply["content"], A, where="complete DataFrame column")


def test_history_reply(kernel: Kernel) -> None:
    kernel.ok(f"hist_card = '{D}'\nhist_card")
    for kwargs in (
        {"hist_access_type": "tail", "n": 100, "output": True, "raw": True},
        {"hist_access_type": "search", "pattern": "hist_card*", "output": False},
    ):
        reply = kernel.request("history", **kwargs)
        assert reply["content"]["history"], kwargs
        assert_masked(reply["content"], D, where=f"history_reply {kwargs['hist_access_type']}")


def test_input_prompt_on_stdin(kernel: Kernel) -> None:
    cell = kernel.run(f"answer = input('Confirm card {V}: ')\nprint('got', answer)", stdin_answer="yes")
    assert cell.reply["content"]["status"] == "ok"
    assert cell.stdin, "no input_request"
    assert_masked([m["content"] for m in cell.stdin], V, where="input_request prompt")
    cell = kernel.run(f"import getpass\ngetpass.getpass('PIN for {M}: ')", stdin_answer="1234")
    assert_masked([m["content"] for m in cell.stdin], M, where="getpass prompt")


def test_kernel_info_offers_no_debugger(kernel: Kernel) -> None:
    reply = kernel.request("kernel_info")
    content = reply["content"]
    assert "debugger" not in content.get("supported_features", [])
    assert content.get("debugger") is False
    assert_no_pan(dumps(content), where="kernel_info")


def test_debug_requests_are_refused(kernel: Kernel) -> None:
    msg = kernel.kc.session.msg("debug_request", {"type": "request", "seq": 1, "command": "initialize"})
    kernel.kc.control_channel.send(msg)
    deadline = time.monotonic() + 30
    while True:
        reply = kernel.kc.control_channel.get_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            break
        assert time.monotonic() < deadline
    assert reply["msg_type"] == "debug_reply"
    assert reply["content"]["success"] is False
    assert "does not offer the debugger" in reply["content"]["message"]
    cell = kernel.ok("import sys\nprint(sorted(m for m in ('debugpy', 'pydevd') if m in sys.modules))")
    assert cell.stream() == "[]\n"  # the debugger's code is not even loaded into the kernel
    assert kernel.ok("import debugpy\nprint(debugpy.__name__)").stream() == "debugpy\n"  # user code may


def test_history_database_holds_no_pan(kernel: Kernel, ipython_dir: Path) -> None:
    kernel.ok(f"db_card = '{V}'\ndb_card")
    kernel.ok("get_ipython().history_manager.writeout_cache()")
    rows = history_rows(ipython_dir)
    assert rows, "history database is empty: the test would prove nothing"
    assert_masked(rows, V, where="history.sqlite")


def test_audit_store_holds_no_pan(kernel: Kernel, governance_service: Any) -> None:
    kernel.ok(f"print('audit {M}')")
    records = governance_service.audit()
    assert any(M[-4:] in text for text in strings(records)), "the cell's output should be recorded, masked"
    for text in strings(records):
        if not HEX.fullmatch(text):  # hashes and signatures: random hex holds PAN-like digit runs
            assert_no_pan(text, where="audit store")


def test_raw_kernel_output_holds_no_pan(kernel: Kernel) -> None:
    assert_no_pan(kernel.raw_output(), where="kernel's original stdout/stderr")


def test_comm_ids_the_kernel_makes_are_never_masked(kernel: Kernel) -> None:
    """About 1 random hex id in 1,400 holds a digit run that passes as a card number; masking it
    would rename the comm, so the frontend's answers would go nowhere. 4,000 comms: without the
    kernel's id choice at least one would be masked in ~95% of runs. Made 250 per cell: IOPub is a
    PUB socket that drops messages past its high-water mark (1,000) when the reader lags."""
    kernel.ok("import comm\nmade = []")
    sent: list[str] = []
    for _ in range(16):
        cell = kernel.ok("made += [comm.create_comm(target_name='probe') for _ in range(250)]")
        sent += [m["content"]["comm_id"] for m in cell.iopub if m["msg_type"] == "comm_open"]
    kernel.ok(
        "ids = [c.comm_id for c in made]\nassert len(set(ids)) == 4000 and all(len(i) == 32 for i in ids)"
    )
    assert len(sent) == 4000
    renamed = [comm_id for comm_id in sent if not re.fullmatch(r"[0-9a-f]{32}", comm_id)]
    assert not renamed, f"comm ids changed by masking: {renamed[:3]}"
    given = kernel.ok("c = comm.create_comm(target_name='probe', comm_id='card-4111111111111111')")
    [opened] = [m for m in given.iopub if m["msg_type"] == "comm_open"]
    assert opened["content"]["comm_id"] == "card-************1111"  # an id chosen by code: masked
