"""Mask a whole notebook (nbformat 4 as a dict): cell sources, outputs, attachments and metadata.

This is how the server serves a notebook that may hold card numbers (the contents API, nbconvert,
the raw ``.ipynb`` under ``/files/``): every part a person can see is masked as the kernel would
have masked it when it was produced. Outputs' MIME bundles go through :func:`mask_bundle` (images
and other binary payloads left alone, JSON types as data); text (sources, streams, errors,
tracebacks) as text, also when nbformat stores it as a list of lines; everything else (metadata,
ids, unknown keys) as JSON whose keys are field names (``by_name=False``), so every string and every
card-sized number is still masked. The input is not modified. No Jupyter imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from governed_kernel.masking.jsonmask import mask_json, needs_masking
from governed_kernel.masking.mime import is_binary, mask_bundle
from governed_kernel.masking.output_area import rendered
from governed_kernel.masking.report import MaskReport
from governed_kernel.masking.text import Masker, MaskingError, default_masker


def mask_notebook(
    notebook: Mapping[str, Any], masker: Masker | None = None, report: MaskReport | None = None
) -> tuple[dict[str, Any], MaskReport]:
    """A masked copy of ``notebook`` and what was masked. Raises MaskingError on a malformed one."""
    masker = masker or default_masker()
    report = report if report is not None else MaskReport()
    if not isinstance(notebook, Mapping):
        raise MaskingError(f"a notebook is a JSON object, not {type(notebook).__name__}")
    out: dict[str, Any] = {}
    for key, value in notebook.items():
        if key == "cells":
            if not isinstance(value, list):
                raise MaskingError("the notebook's 'cells' is not a list")
            out[key] = [_mask_cell(cell, masker, report) for cell in value]
        else:
            out[key] = _json(value, masker, report)
    return out, report


def notebook_needs_masking(notebook: Mapping[str, Any], masker: Masker | None = None) -> bool:
    """Whether :func:`mask_notebook` would change ``notebook``, with one scan in the common case.

    One joined scan of every string (``needs_masking`` with field-name keys) answers for sources,
    text and metadata; JSON outputs are asked again with their keys read as column names (a
    ``cvv`` key masks its value), as :func:`mask_bundle` masks them. Base64 images are part of the
    joined scan: a digit run in one only costs the full walk, which leaves images alone.
    """
    masker = masker or default_masker()
    if needs_masking(notebook, masker, by_name=False):
        return True
    for cell in _list(notebook.get("cells")):
        outputs = _list(cell.get("outputs") if isinstance(cell, Mapping) else None)
        if any(_run_holds_pan(run, masker) for run in _stream_runs(outputs)):
            return True
        for output in outputs:
            data = output.get("data") if isinstance(output, Mapping) else None
            if isinstance(data, Mapping):
                for mime, value in data.items():
                    if _is_json_mime(str(mime)) and needs_masking(value, masker):
                        return True
    return False


def _mask_cell(cell: Any, masker: Masker, report: MaskReport) -> Any:
    if not isinstance(cell, Mapping):
        raise MaskingError(f"a notebook cell is a JSON object, not {type(cell).__name__}")
    out: dict[str, Any] = {}
    for key, value in cell.items():
        if key == "source":
            out[key] = _text(value, masker, report)
        elif key == "outputs" and isinstance(value, list):
            out[key] = _joined_streams(
                [_mask_output(output, masker, report) for output in value], masker, report
            )
        elif key == "attachments" and isinstance(value, Mapping):
            out[key] = {
                _json(name, masker, report): _bundle(bundle, masker, report) for name, bundle in value.items()
            }
        else:
            out[key] = _json(value, masker, report)
    return out


def _mask_output(output: Any, masker: Masker, report: MaskReport) -> Any:
    if not isinstance(output, Mapping):
        raise MaskingError(f"a cell output is a JSON object, not {type(output).__name__}")
    out: dict[str, Any] = {}
    for key, value in output.items():
        if key == "data":
            out[key] = _bundle(value, masker, report)
        elif key in ("text", "evalue", "ename"):
            out[key] = _text(value, masker, report)
        elif key == "traceback" and isinstance(value, list):
            out[key] = [_text(line, masker, report) for line in value]
        else:
            out[key] = _json(value, masker, report)
    return out


def _bundle(bundle: Any, masker: Masker, report: MaskReport) -> Any:
    """A MIME bundle (outputs' ``data``, attachments); anything else is masked as JSON."""
    if not isinstance(bundle, Mapping):
        return _json(bundle, masker, report)
    masked = mask_bundle(dict(bundle), masker, report)[0]
    return {_json(mime, masker, report): value for mime, value in masked.items()}


def _text(value: Any, masker: Masker, report: MaskReport) -> Any:
    """Text as nbformat stores it: a string, or a list of lines (masked joined, split back)."""
    if isinstance(value, str):
        return masker.mask_text(value, report)[0]
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        masked = masker.mask_text("".join(value), report)[0]
        return masked.splitlines(keepends=True)
    return _json(value, masker, report)


def _stream_runs(outputs: list[Any]) -> list[list[Any]]:
    """Runs of two or more consecutive stream outputs of one name: JupyterLab joins each run into
    one output when it loads the notebook, so a card number split over them would show whole."""
    runs: list[list[Any]] = []
    run: list[Any] = []
    for output in [*outputs, None]:
        name = (
            output.get("name")
            if isinstance(output, Mapping) and output.get("output_type") == "stream"
            else None
        )
        if run and name is not None and run[-1].get("name") == name:
            run.append(output)
            continue
        if len(run) > 1:
            runs.append(run)
        run = [output] if name is not None else []
    return runs


def _stream_text(output: Mapping[str, Any]) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else str(text)


def _run_holds_pan(run: list[Any], masker: Masker) -> bool:
    joined = "".join(_stream_text(output) for output in run)
    return bool(masker.find(joined) or masker.find(rendered(joined)))


def _joined_streams(outputs: list[Any], masker: Masker, report: MaskReport) -> list[Any]:
    """Outputs with each run of streams that holds a PAN only when joined replaced by one stream
    output, masked as JupyterLab would show it (the others are left as they are)."""
    for run in _stream_runs(outputs):
        if not _run_holds_pan(run, masker):
            continue
        joined = rendered("".join(_stream_text(output) for output in run))
        merged = {**run[0], "text": masker.mask_text(joined, report)[0].splitlines(keepends=True)}
        first = next(i for i, output in enumerate(outputs) if output is run[0])
        outputs = [*outputs[:first], merged, *outputs[first + len(run) :]]
    return outputs


def _json(value: Any, masker: Masker, report: MaskReport) -> Any:
    return mask_json(value, masker, report, by_name=False)[0]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_json_mime(mime: str) -> bool:
    return (mime == "application/json" or mime.endswith("+json")) and not is_binary(mime)
