"""pandas display masking (before formatting, only rendered rows) and the mask/scan CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from governed_kernel.masking import display_bundle, mask_for_display

PAN = 4111111111111111


def big_frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "card_number": np.full(rows, PAN, dtype=np.int64),
            "note": pd.Categorical.from_codes(
                np.arange(rows) % 2, pd.Index(["paid 5555 5555 5555 4444", "x"])
            ),
            "cvv": (np.arange(rows) % 900 + 100).astype(np.int16),
            "amount": np.arange(rows, dtype=np.float32),
        }
    )


def test_ten_million_rows_masked_touching_only_rendered_rows() -> None:
    frame = big_frame(10_000_000)
    shown, report = mask_for_display(frame)
    assert len(shown.masked) == pd.get_option("display.max_rows") + 1  # not 10M
    text, html = repr(shown), shown._repr_html_()
    for out in (text, html):
        assert "4111111111111111" not in out and "5555 5555 5555 4444" not in out
        assert "************1111" in out
    assert "[10000000 rows x 4 columns]" in text
    assert "10000000 rows \u00d7 4 columns" in html
    # The cvv column, masked by name, in the rows pandas shows (display.min_rows), not all 10M.
    assert report.kinds["sensitive_column"] == pd.get_option("display.min_rows")


def test_small_frame_same_layout_as_pandas_except_digits() -> None:
    frame = pd.DataFrame({"card": ["4111 1111 1111 1111", "n/a"], "v": [1, 2]})
    bundle, report = display_bundle(frame)
    expected = repr(frame).replace("4111 1111 1111 1111", "**** **** **** 1111")
    assert bundle["text/plain"] == expected
    assert report.kinds["pan"] == 1


def test_wide_cell_truncated_by_pandas_never_shows_more_than_last_four() -> None:
    cell = "x" * 40 + "4111111111111111" + "y" * 40
    with pd.option_context("display.max_colwidth", 50):
        bundle, _ = display_bundle(pd.DataFrame({"c": [cell]}))
    assert "411111" not in bundle["text/plain"] and "411111" not in bundle["text/html"]


def test_series_index_multiindex_labels_and_dtypes() -> None:
    from decimal import Decimal

    index = pd.MultiIndex.from_tuples(
        [("a", "4111111111111111"), ("b", "x")], names=["k", "5555555555554444"]
    )
    series = pd.Series([Decimal("4111111111111111"), 4111111111111111.0], index=index, name="value")
    bundle, report = display_bundle(series)
    assert "4111111111111111" not in bundle["text/plain"] and "5555555555554444" not in bundle["text/plain"]
    assert report.kinds["pan"] == 4
    idx, _ = mask_for_display(pd.Index(["4111111111111111", "x"]))
    assert list(idx) == ["************1111", "x"]


def test_styler_masks_data_and_keeps_styles() -> None:
    frame = pd.DataFrame({"card": ["4111111111111111"], "amount": [3.0]})
    styled = frame.style.highlight_max(subset=["amount"], color="yellow")
    bundle, _ = display_bundle(styled)
    assert "4111111111111111" not in bundle["text/html"] and "************1111" in bundle["text/html"]
    assert "yellow" in bundle["text/html"]


@pytest.mark.parametrize(
    "style",
    [
        lambda s: s.background_gradient(subset=["card_number"]),
        lambda s: s.map(lambda v: "color: red" if v > 10 else "", subset=["card_number"]),
        lambda s: s.apply(lambda col: ["font-weight: bold" if v % 2 else "" for v in col]),
        lambda s: s.bar(subset=["card_number", "amount"]),
    ],
    ids=["gradient", "map-compare", "apply-modulo", "bar"],
)
def test_styler_expecting_numbers_in_masked_column_renders_masked(style: object) -> None:
    frame = pd.DataFrame({"card_number": [PAN, 5555555555554444], "amount": [3.0, 4.0]})
    styled = style(frame.style)  # type: ignore[operator]
    bundle, report = display_bundle(styled)  # never raises for a styling error
    html = bundle["text/html"]
    assert "4111111111111111" not in html and "5555555555554444" not in html
    assert "************1111" in html and "************4444" in html
    assert "styling was not applied" in html  # the notice is visible
    assert report.kinds["pan_column"] == 2


def test_styler_that_works_on_masked_data_keeps_styles_and_no_notice() -> None:
    frame = pd.DataFrame({"card_number": [PAN], "amount": [3.0]})
    bundle, _ = display_bundle(frame.style.highlight_max(subset=["amount"], color="yellow"))
    assert "yellow" in bundle["text/html"] and "not applied" not in bundle["text/html"]
    assert "4111111111111111" not in bundle["text/html"]


def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "governed_server.cli", *args], input=stdin, capture_output=True, timeout=60
    )


def test_cli_mask_is_byte_identical_except_pans() -> None:
    data = b"a\xff\r\n4111 1111 1111 1111\tb=378282246310005\n" * 2000
    result = cli("mask", "--stats", stdin=data)
    assert result.returncode == 0
    expected = data.replace(b"4111 1111 1111 1111", b"**** **** **** 1111").replace(
        b"378282246310005", b"***********0005"
    )
    assert result.stdout == expected
    assert b"pan=4000" in result.stderr
    assert cli("mask", "--reveal", "bin6", stdin=b"4111111111111111").stdout == b"411111******1111"


def test_cli_scan_notebook_text_and_errors(tmp_path: Path) -> None:
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {
                "cell_type": "code",
                "id": "c1",
                "source": ["x = 1\n", "card = '5555555555554444'"],
                "metadata": {},
                "execution_count": 1,
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": ["ok 4111 1111 1111 1111\n"]}
                ],
            },
        ],
    }
    dirty = tmp_path / "dirty.ipynb"
    dirty.write_text(json.dumps(nb))
    clean = tmp_path / "clean.txt"
    clean.write_text("**** **** **** 1111 and 12345\n")
    result = cli("scan", str(dirty))
    assert result.returncode == 1
    out = result.stdout.decode()
    assert "cell 0 (id c1): source: line 2" in out and "output 0: stream stdout" in out
    assert "5555" not in out and "4111" not in out  # locations, never digits
    records = [json.loads(line) for line in cli("scan", "--json", str(dirty)).stdout.decode().splitlines()]
    assert {r["part"] for r in records} == {"source", "stream stdout"}
    assert cli("scan", str(clean)).returncode == 0
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    result = cli("scan", str(broken), str(clean))
    assert result.returncode == 2 and b"not valid notebook JSON" in result.stderr


@pytest.mark.parametrize("args", [["mask", "--reveal", "all"], ["mask", "--mask-char", "7"]])
def test_cli_usage_errors(args: list[str]) -> None:
    assert cli(*args).returncode == 2
