"""What a JupyterLab output area ends up holding for one cell, rebuilt from the IOPub messages the
client received: the oracle for the stream-retraction tests (written apart from the product's own
model, after JupyterLab's ``OutputAreaModel``: consecutive streams of one name are joined, then
backspaces and carriage returns applied; ``clear_output(wait=True)`` clears at the next output)."""

from __future__ import annotations

import re
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _fix_backspace(text: str) -> str:
    previous = None
    while previous != text:
        previous, text = text, re.sub(r"[^\n]\x08", "", text)
    return text


def _fix_carriage_return(text: str) -> str:
    text = re.sub(r"\r+\n", "\n", text)
    out = []
    for line in text.split("\n"):
        screen: list[str] = []
        col = 0
        for ch in line:
            if ch == "\r":
                col = 0
                continue
            if col < len(screen):
                screen[col] = ch
            else:
                screen.append(ch)
            col += 1
        out.append("".join(screen))
    return "\n".join(out)


def shown_stream(text: str) -> str:
    """A stream's text as the output area renders it."""
    return _fix_carriage_return(_fix_backspace(_ANSI.sub("", text)))


def output_area(messages: list[dict[str, Any]], parent_id: str | None = None) -> list[dict[str, Any]]:
    """The outputs (nbformat-like dicts) a client keeps after ``messages`` (IOPub, in order)."""
    outputs: list[dict[str, Any]] = []
    clear_pending = False
    for msg in messages:
        msg_type = msg.get("msg_type") or msg["header"]["msg_type"]
        if parent_id is not None and msg["parent_header"].get("msg_id") != parent_id:
            continue
        content = msg["content"]
        if msg_type == "clear_output":
            if content.get("wait"):
                clear_pending = True
            else:
                outputs = []
            continue
        if msg_type not in ("stream", "display_data", "execute_result", "error"):
            continue
        if clear_pending:
            outputs, clear_pending = [], False
        if msg_type == "stream":
            last = outputs[-1] if outputs else None
            if last and last["output_type"] == "stream" and last["name"] == content["name"]:
                last["text"] += content["text"]
                continue
            outputs.append({"output_type": "stream", "name": content["name"], "text": content["text"]})
        else:
            outputs.append({"output_type": msg_type, **content})
    return outputs


def area_texts(outputs: list[dict[str, Any]]) -> list[str]:
    """Each output's text as saved and, for streams, as shown."""
    texts: list[str] = []
    for output in outputs:
        if output["output_type"] == "stream":
            texts += [output["text"], shown_stream(output["text"])]
        else:
            texts += [str(value) for value in (output.get("data") or {}).values()]
            texts += [str(line) for line in output.get("traceback") or []]
    return texts
