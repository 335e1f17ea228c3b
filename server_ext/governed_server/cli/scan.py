"""``jupyter governance scan PATH...``: find unmasked PANs in notebooks and text files.

Notebooks are read as JSON and searched per cell: source, each output (stream text, every MIME
type of display data and results, error tracebacks) and attachments' names. Locations are printed,
never the digits. Exit 1 when anything is found, 0 when clean, 2 when a file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from governed_server.cli.errors import EXIT_FOUND, EXIT_OK, EXIT_USAGE

TEXT_SKIP_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".pdf", ".zip", ".gz", ".whl", ".so", ".pyc"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="find unmasked card numbers in notebooks and text files (exit 1 when found)",
        description="Search notebooks (.ipynb: per cell, source and outputs) and text files for unmasked "
        "card numbers and track data. Prints where they are, never the digits. Exit status: 0 clean, "
        "1 found, 2 a file could not be read or parsed.",
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="files or directories (searched recursively)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per finding (JSON Lines)")
    parser.set_defaults(handler=run)


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _text_of(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _notebook_parts(nb: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(location, text) for every searchable part of a notebook."""
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise ValueError("no 'cells' list: not an nbformat 4 notebook")
    yield {"part": "notebook metadata"}, json.dumps(nb.get("metadata", {}))
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise ValueError(f"cell {index} is not an object")
        where = {"cell": index, "cell_id": cell.get("id"), "cell_type": cell.get("cell_type")}
        yield {**where, "part": "source"}, _text_of(cell.get("source", ""))
        for name in cell.get("attachments", {}) or {}:
            yield {**where, "part": "attachment name"}, str(name)
        for out_index, output in enumerate(cell.get("outputs", []) or []):
            if not isinstance(output, dict):
                raise ValueError(f"cell {index} output {out_index} is not an object")
            base = {**where, "output": out_index, "output_type": output.get("output_type")}
            if "text" in output:
                yield {**base, "part": f"stream {output.get('name', '')}".strip()}, _text_of(output["text"])
            for mime, value in (output.get("data") or {}).items():
                if mime.startswith(("image/", "audio/", "video/")) and not mime.endswith("+xml"):
                    continue
                yield {**base, "part": mime}, _text_of(value)
            if output.get("output_type") == "error":
                yield {**base, "part": "error"}, _text_of([output.get("ename", ""), output.get("evalue", "")])
                yield {**base, "part": "traceback"}, "\n".join(map(str, output.get("traceback", [])))


def scan_text(text: str, masker: Any, location: dict[str, Any]) -> list[dict[str, Any]]:
    findings = []
    for finding in masker.find(text):
        line, col = _line_col(text, finding.start)
        findings.append(
            {
                **location,
                "line": line,
                "column": col,
                "kind": finding.kind,
                "brand": finding.brand,
                "digits": len(finding.pan),
            }
        )
    return findings


def scan_path(path: Path, masker: Any) -> list[dict[str, Any]]:
    """Findings in one file; raises ``ValueError``/``OSError`` with a message for unusable files."""
    raw = path.read_bytes()
    text = raw.decode("utf-8", "surrogateescape")
    base = {"path": str(path)}
    if path.suffix == ".ipynb":
        try:
            nb = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"not valid notebook JSON (line {error.lineno}, column {error.colno})") from None
        if not isinstance(nb, dict):
            raise ValueError("not a notebook: top level is not a JSON object")
        found: list[dict[str, Any]] = []
        for where, part in _notebook_parts(nb):
            found.extend(scan_text(part, masker, {**base, **where}))
        return found
    return scan_text(text, masker, base)


def _files(paths: list[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix not in TEXT_SKIP_SUFFIXES and ".git" not in child.parts:
                    yield child
        else:
            yield path


def _describe(f: dict[str, Any]) -> str:
    where = [f["path"]]
    if "cell" in f:
        where.append(f"cell {f['cell']}" + (f" (id {f['cell_id']})" if f.get("cell_id") else ""))
        if "output" in f:
            where.append(f"output {f['output']}")
        where.append(f["part"])
    elif "part" in f:
        where.append(f["part"])
    where.append(f"line {f['line']} col {f['column']}")
    what = f"{f['brand'] or 'card'} {f['kind']}" if f["kind"] == "pan" else f["kind"]
    return f"{': '.join(where)}: unmasked {what} ({f['digits']} digits)"


def run(args: argparse.Namespace) -> int:
    from governed_kernel.masking import Masker

    masker = Masker()
    found = 0
    errors = 0
    for path in _files(args.paths):
        try:
            findings = scan_path(path, masker)
        except FileNotFoundError:
            print(f"jupyter governance scan: {path}: no such file", file=sys.stderr)
            errors += 1
            continue
        except (OSError, ValueError) as error:
            detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            print(f"jupyter governance scan: {path}: {detail}", file=sys.stderr)
            errors += 1
            continue
        found += len(findings)
        for finding in findings:
            print(json.dumps(finding) if args.json else _describe(finding))
    if not args.json:
        print(
            f"{found} unmasked card number(s) found" + (f", {errors} file(s) unreadable" if errors else ""),
            file=sys.stderr,
        )
    if errors:
        return EXIT_USAGE
    return EXIT_FOUND if found else EXIT_OK
