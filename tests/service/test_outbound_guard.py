"""The outbound guard, as an analyst would try it: a file with card numbers, fetched on every route.

Files with PANs in many layouts are written where an allowed cell could write them (the server's
root dir), then fetched through the contents API (text, base64, notebooks), ``/files/`` (whole,
ranges that cut a PAN, suffix and multiple ranges, ``?download=1``, ``HEAD``, ETag and
If-Modified-Since revalidation), nbconvert (GET and POST), checkpoints, copy, ``/view/`` and
kernelspec resources. No response may show a card number; a range is a slice of the masked file,
never of the original. A notebook opened masked is read-only, a save over it is refused (409) and
the file is unchanged, while a save to a new path works. Each masked response is audited.
"""

from __future__ import annotations

import base64
import codecs
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from service_helpers import TOKENS  # type: ignore[import-not-found]
from tornado.httpclient import HTTPClientError, HTTPResponse

from governed_kernel.masking import Masker, needs_masking, notebook_needs_masking

VISA, MC, AMEX = "4111111111111111", "5555555555554444", "378282246310005"
PANS = (VISA, MC, AMEX)
MASKER = Masker()

TEXT = (
    f"plain {VISA}\n"
    f"spaced {MC[:4]} {MC[4:8]} {MC[8:12]} {MC[12:]}\n"
    f"dashed {AMEX[:4]}-{AMEX[4:10]}-{AMEX[10:]}\n"
    f"nbsp {VISA[:4]}\u00a0{VISA[4:8]}\u00a0{VISA[8:12]}\u00a0{VISA[12:]}\n"
)
CSV = f"id,card,amount\n1,{VISA},12.50\n2,{MC[:4]}-{MC[4:8]}-{MC[8:12]}-{MC[12:]},310.00\n"
# A card number as a JSON number, one behind \u escapes, one with escaped no-break spaces.
JSON_RAW = (
    '{"number": ' + MC + ', "escaped": "' + "".join(f"\\u{ord(c):04x}" for c in VISA) + '", '
    '"nbsp": "' + "\\u00a0".join([AMEX[:4], AMEX[4:10], AMEX[10:]]) + '"}\n'
)
BOUNDARY = "a" * (64 * 1024 - 8) + VISA + "\n" + "b" * 1000 + "\n"


def notebook_with_pans() -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "governed-python", "display_name": "x", "language": "python"}},
        "cells": [
            {"cell_type": "markdown", "id": "md", "metadata": {}, "source": [f"Card: {AMEX}\n"],
             "attachments": {"note.txt": {"text/plain": f"attached {MC}"}}},
            {"cell_type": "code", "id": "code", "metadata": {}, "execution_count": 1,
             "source": [f"card = '{VISA}'\n", "print(card)\n"],
             "outputs": [
                 {"output_type": "stream", "name": "stdout", "text": [f"{VISA}\n"]},
                 {"output_type": "display_data", "metadata": {},
                  "data": {"text/plain": [f"{MC}"], "text/html": [f"<td>{MC}</td>"],
                           "application/json": {"card": int(MC)}}},
                 {"output_type": "error", "ename": "ValueError", "evalue": f"bad card {AMEX}",
                  "traceback": [f"ValueError: bad card {AMEX}"]},
             ]},
        ],
    }  # fmt: skip


NOTEBOOK = json.dumps(notebook_with_pans(), indent=1) + "\n"


@pytest.fixture
def backend() -> str:
    """SQLite only: these tests are about what leaves the server, not the store."""
    return "sqlite"


@pytest.fixture
def files(jp_root_dir: Path) -> dict[str, bytes]:
    """What an allowed cell could write into the analyst's folder."""
    content = {
        "layouts.txt": TEXT.encode(),
        "cards.csv": CSV.encode(),
        "data.json": JSON_RAW.encode(),
        "boundary.log": BOUNDARY.encode(),
        "utf16.txt": ("card " + VISA + "\n").encode("utf-16"),
        "utf16le.txt": ("card " + MC + "\n").encode("utf-16-le"),
        "latin1.txt": f"caf\xe9 {VISA[:4]} {VISA[4:8]} {VISA[8:12]} {VISA[12:]}\n".encode("latin-1"),
        "analysis.ipynb": NOTEBOOK.encode(),
        "page.html": f"<html><body><p>card {VISA}</p></body></html>".encode(),
    }
    for name, data in content.items():
        (jp_root_dir / name).write_bytes(data)
    return content


def visible_pans(body: bytes) -> list[str]:
    """Card numbers anyone could read in ``body``: as UTF-8, as UTF-16 either way, as JSON data
    (escapes decoded; a contents model's text, base64 and notebook content too)."""
    found = [f.pan for f in MASKER.find(body.decode("utf-8", "surrogateescape"))]
    for offset in (0, 1):
        tail = body[offset:]
        found += [
            f.pan for f in MASKER.find((tail[: len(tail) // 2 * 2]).decode("utf-16-le", "surrogatepass"))
        ]
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        found += [f.pan for f in MASKER.find(body.decode("utf-16"))]
    try:
        data = json.loads(body)
    except ValueError:
        return found
    if needs_masking(data, MASKER, by_name=False):
        found.append("<json data>")
    if isinstance(data, dict) and isinstance(data.get("content"), str) and data.get("format") == "base64":
        found += visible_pans(base64.b64decode(data["content"]))
    notebook = data.get("content") if isinstance(data, dict) else None
    if isinstance(notebook, dict) and notebook_needs_masking(notebook, MASKER):
        found.append("<notebook>")
    return found


@pytest.fixture
def fetch(jp_fetch: Any) -> Any:
    """``await fetch(*path, who="alice", **kwargs)`` → the response, whatever its status."""

    async def call(
        *path: str, who: str = "alice", headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        merged = {"Authorization": f"token {TOKENS[who]}", **(headers or {})}
        try:
            return await jp_fetch(*path, headers=merged, **kwargs)
        except HTTPClientError as error:
            assert error.response is not None, error
            return error.response

    return call


def model_of(response: HTTPResponse) -> dict[str, Any]:
    model = json.loads(response.body)
    assert isinstance(model, dict)
    return model


async def test_the_contents_api_masks_every_layout_and_format(files: dict[str, bytes], fetch: Any) -> None:
    for name in files:
        for params in ({}, {"type": "file"}, {"type": "file", "format": "base64"}):
            if name.endswith(".ipynb") and not params:
                params = {"type": "notebook"}
            response = await fetch("api", "contents", name, params=params)
            if response.code == 400:  # format=text of bytes that are not UTF-8: refused by jupyter_server
                continue
            assert response.code == 200, (name, params, response.body[:300])
            assert visible_pans(response.body) == [], (name, params)
            model = model_of(response)
            assert model["writable"] is False, (name, params)


async def test_masked_text_keeps_the_last_four_digits(files: dict[str, bytes], fetch: Any) -> None:
    model = model_of(await fetch("api", "contents", "layouts.txt"))
    assert model["format"] == "text"
    assert model["content"] == MASKER.mask_text(TEXT)[0]
    assert "************1111" in model["content"] and "**** **** **** 4444" in model["content"]
    notebook = model_of(await fetch("api", "contents", "analysis.ipynb"))["content"]
    code = next(cell for cell in notebook["cells"] if cell["id"] == "code")
    assert code["source"] == "card = '************1111'\nprint(card)\n"
    assert code["outputs"][1]["data"]["application/json"] == {"card": "************4444"}
    markdown = next(cell for cell in notebook["cells"] if cell["id"] == "md")
    assert markdown["attachments"]["note.txt"]["text/plain"] == "attached ************4444"
    latin1 = model_of(await fetch("api", "contents", "latin1.txt"))
    assert latin1["format"] == "base64"
    assert base64.b64decode(latin1["content"]) == "caf\xe9 **** **** **** 1111\n".encode("latin-1")


async def test_files_serves_the_masked_file_whole_and_in_ranges(files: dict[str, bytes], fetch: Any) -> None:
    for name, original in files.items():
        whole = await fetch("files", name)
        assert whole.code == 200, (name, whole.body[:200])
        masked = whole.body
        assert visible_pans(masked) == [], name
        assert masked != original
        assert int(whole.headers["Content-Length"]) == len(masked)
        head = await fetch("files", name, method="HEAD")
        assert int(head.headers["Content-Length"]) == len(masked)
        download = await fetch("files", name, params={"download": "1"})
        assert download.body == masked and "attachment" in download.headers["Content-Disposition"]
        # Ranges are slices of the masked bytes: one cutting the first PAN in half, a suffix, an open end.
        first = masked.find(b"*")  # where the first masked digit is
        for header, start, stop in (
            (f"bytes={first + 2}-{first + 9}", first + 2, first + 10),
            ("bytes=-20", len(masked) - 20, len(masked)),
            (f"bytes={first}-", first, len(masked)),
            ("bytes=0-0", 0, 1),
        ):
            part = await fetch("files", name, headers={"Range": header})
            assert part.code == 206, (name, header, part.code)
            assert part.body == masked[start:stop], (name, header)
            assert part.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(masked)}"
            assert int(part.headers["Content-Length"]) == stop - start
        # tornado serves one range only: several are answered with the whole masked file.
        several = await fetch("files", name, headers={"Range": "bytes=0-3,10-20"})
        assert several.code == 200 and several.body == masked


async def test_a_range_never_shows_the_digits_it_cuts(files: dict[str, bytes], fetch: Any) -> None:
    original = files["layouts.txt"]
    start = original.find(VISA.encode())
    part = await fetch("files", "layouts.txt", headers={"Range": f"bytes={start + 4}-{start + 11}"})
    assert part.body == b"********"
    assert original[start + 4 : start + 12] == VISA[4:12].encode()
    # The PAN split over a 64 KiB read boundary is masked too.
    boundary = await fetch(
        "files", "boundary.log", headers={"Range": f"bytes={64 * 1024 - 8}-{64 * 1024 + 7}"}
    )
    assert boundary.body == b"************1111"


async def test_etags_and_revalidation_follow_the_masked_bytes(files: dict[str, bytes], fetch: Any) -> None:
    first = await fetch("files", "layouts.txt")
    etag = first.headers["Etag"]
    assert etag and etag == (await fetch("files", "layouts.txt")).headers["Etag"]
    again = await fetch("files", "layouts.txt", headers={"If-None-Match": etag}, raise_error=False)
    assert again.code == 304 and not again.body
    since = await fetch(
        "files",
        "layouts.txt",
        headers={"If-Modified-Since": first.headers["Last-Modified"]},
        raise_error=False,
    )
    assert since.code == 304
    ranged = await fetch("files", "layouts.txt", headers={"Range": "bytes=0-5"})
    assert ranged.headers["Etag"] == etag  # a range carries the whole (masked) file's ETag
    assert (await fetch("files", "cards.csv")).headers["Etag"] != etag


async def test_a_changed_file_is_masked_afresh(
    files: dict[str, bytes], fetch: Any, jp_root_dir: Path
) -> None:
    before = (await fetch("files", "cards.csv")).body
    (jp_root_dir / "cards.csv").write_text(CSV + f"3,{AMEX},1.00\n")
    after = await fetch("files", "cards.csv")
    assert after.body != before and b"***********0005" in after.body
    assert visible_pans(after.body) == []


async def test_nbconvert_output_is_masked(files: dict[str, bytes], fetch: Any) -> None:
    for exporter in ("html", "script", "markdown", "notebook", "slides"):
        response = await fetch("nbconvert", exporter, "analysis.ipynb")
        assert response.code == 200, (exporter, response.body[:300])
        assert visible_pans(response.body) == [], exporter
        download = await fetch("nbconvert", exporter, "analysis.ipynb", params={"download": "true"})
        assert visible_pans(download.body) == [], exporter
    posted = await fetch(
        "nbconvert", "html", method="POST",
        body=json.dumps({"name": "posted.ipynb", "content": nbformat.reads(NOTEBOOK, as_version=4)}),
    )  # fmt: skip
    assert posted.code == 200 and b"************1111" in posted.body
    assert visible_pans(posted.body) == []


async def test_other_routes_do_not_leak(files: dict[str, bytes], fetch: Any, jp_root_dir: Path) -> None:
    view = await fetch("view", "page.html")
    assert view.code == 200 and visible_pans(view.body) == []  # an iframe of /files/, masked above
    listing = await fetch("api", "contents", "analysis.ipynb", "checkpoints", method="POST", body="")
    assert listing.code == 201 and visible_pans(listing.body) == []
    assert visible_pans((await fetch("api", "contents", "analysis.ipynb", "checkpoints")).body) == []
    copied = await fetch("api", "contents", method="POST", body=json.dumps({"copy_from": "analysis.ipynb"}))
    assert copied.code == 201 and visible_pans(copied.body) == []
    copy_path = model_of(copied)["path"]
    original = nbformat.reads(NOTEBOOK, as_version=4)
    assert nbformat.read(jp_root_dir / copy_path, as_version=4) == original  # a true copy, server side
    reopened = await fetch("api", "contents", copy_path)
    assert visible_pans(reopened.body) == [] and model_of(reopened)["writable"] is False
    renamed = await fetch(
        "api", "contents", copy_path, method="PATCH", body=json.dumps({"path": "renamed.ipynb"})
    )
    assert renamed.code == 200 and nbformat.read(jp_root_dir / "renamed.ipynb", as_version=4) == original


async def test_kernelspec_resources_are_masked(jp_data_dir: Path, fetch: Any) -> None:
    spec = jp_data_dir / "kernels" / "notes"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["python", "-c", "pass"], "display_name": "n",
                                                  "language": "python"}))  # fmt: skip
    (spec / "readme.txt").write_text(f"card {VISA}\n")
    response = await fetch("kernelspecs", "notes", "readme.txt")
    assert response.code == 200 and response.body == b"card ************1111\n"


async def test_a_masked_notebook_is_read_only_and_cannot_be_saved_back(
    files: dict[str, bytes], fetch: Any, jp_root_dir: Path
) -> None:
    model = model_of(await fetch("api", "contents", "analysis.ipynb"))
    assert model["writable"] is False
    body = json.dumps({"type": "notebook", "format": "json", "content": model["content"]})
    refused = await fetch("api", "contents", "analysis.ipynb", method="PUT", body=body)
    assert refused.code == 409
    message = json.loads(refused.body)["message"]
    assert "holds card numbers" in message and "Save As" in message and VISA not in message
    assert (jp_root_dir / "analysis.ipynb").read_bytes() == files["analysis.ipynb"]
    # The same for a text file, and for a save that sends other content entirely.
    for name in ("layouts.txt", "cards.csv"):
        text = json.dumps({"type": "file", "format": "text", "content": "something else"})
        assert (await fetch("api", "contents", name, method="PUT", body=text)).code == 409
        assert (jp_root_dir / name).read_bytes() == files[name]
    # Save As: a new path works, and holds the masked copy.
    saved = await fetch("api", "contents", "analysis-masked.ipynb", method="PUT", body=body)
    assert saved.code == 201
    copy = model_of(await fetch("api", "contents", "analysis-masked.ipynb"))
    assert copy["writable"] is True and visible_pans(json.dumps(copy).encode()) == []
    resaved = await fetch("api", "contents", "analysis-masked.ipynb", method="PUT", body=body)
    assert resaved.code == 200


async def test_the_author_of_a_card_number_can_keep_saving_until_it_is_shown_masked(
    fetch: Any, jp_root_dir: Path
) -> None:
    typed = json.dumps({"type": "file", "format": "text", "content": f"typed {VISA}\n"})
    assert (await fetch("api", "contents", "typed.txt", method="PUT", body=typed)).code == 201
    assert (await fetch("api", "contents", "typed.txt", method="PUT", body=typed)).code == 200  # autosave
    # Someone else never saw it unmasked: refused.
    assert (await fetch("api", "contents", "typed.txt", method="PUT", body=typed, who="bob")).code == 409
    # A cell rewrites the file: the author's copy is stale, the file on disk holds card numbers.
    (jp_root_dir / "typed.txt").write_text(f"from a cell {MC}\n")
    assert (await fetch("api", "contents", "typed.txt", method="PUT", body=typed)).code == 409
    assert (jp_root_dir / "typed.txt").read_text() == f"from a cell {MC}\n"
    # Reopened, the author gets it masked and read-only, and can no longer save over it.
    assert model_of(await fetch("api", "contents", "typed.txt"))["writable"] is False
    assert (await fetch("api", "contents", "typed.txt", method="PUT", body=typed)).code == 409


async def test_masked_serving_and_refused_saves_are_audited(
    files: dict[str, bytes], fetch: Any, api: Any
) -> None:
    await fetch("files", "cards.csv", params={"download": "1"})
    await fetch("api", "contents", "analysis.ipynb")
    body = json.dumps({"type": "file", "format": "text", "content": "x"})
    await fetch("api", "contents", "layouts.txt", method="PUT", body=body)
    _, listing = await api("dave", "GET", "audit", params={"event_type": "guard.masked"})
    records = listing["records"]
    routes = {(r["data"]["details"]["route"], r["data"]["details"]["path"]) for r in records}
    assert ("files download", "cards.csv") in routes and ("contents API", "analysis.ipynb") in routes
    assert all(r["user"] == "alice" and r["data"]["masking"]["pan"] >= 1 for r in records)
    _, refused = await api("dave", "GET", "audit", params={"event_type": "guard.save_refused"})
    assert [r["data"]["details"]["path"] for r in refused["records"]] == ["layouts.txt"]
    dump = json.dumps([records, refused["records"]])
    assert all(pan not in dump for pan in PANS)


async def test_files_larger_than_the_limit_are_refused_not_served(
    jp_root_dir: Path, fetch: Any, jp_serverapp: Any
) -> None:
    guard = jp_serverapp.web_app.settings["governed_server"].outbound_guard
    guard.max_file_bytes = 1024
    (jp_root_dir / "big.txt").write_text(f"{VISA}\n" * 200)
    for path in (("files", "big.txt"), ("api", "contents", "big.txt")):
        response = await fetch(*path)
        assert response.code == 413, path
        assert b"GovernedServerApp.outbound_max_file_mb" in response.body
        assert VISA.encode() not in response.body
