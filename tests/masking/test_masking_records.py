"""The project's own records: keys are field names, not data columns (``mask_json(by_name=False)``)."""

from __future__ import annotations

from typing import Any

import pytest

from governed_kernel.masking import Masker, MaskingConfig, mask_json, needs_masking
from governed_kernel.policy import load_policy
from governed_kernel.resources import default_policy_path

PAN = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
def masker() -> Masker:
    return Masker(MaskingConfig.from_mapping(load_policy(default_policy_path()).masking))


@pytest.mark.parametrize(
    "record",
    [
        {"span": {"line": 3, "column": 5, "end_line": 3, "end_column": 9}},
        {"rules": [{"id": "r", "span": {"line": 1, "column": 1}}], "timespan": 12, "japan": "office"},
        {"cvv": 42, "pin": "7", "track": [1, 2], "card_number": 4242},  # field names of a record
    ],
)
def test_field_names_trigger_no_column_rule(masker: Masker, record: dict[str, Any]) -> None:
    assert not needs_masking(record, masker, by_name=False)
    assert mask_json(record, masker, by_name=False)[0] == record


def test_the_same_keys_of_data_still_trigger_column_rules(masker: Masker) -> None:
    """Data (a frame's columns, a user's JSON) keeps the column rules: the flag is opt-in."""
    masked, report = mask_json({"cvv": "123", "card_number": "4111111111111112"}, masker)
    assert masked["cvv"] != "123" and "4111111111111112" not in masked["card_number"]
    assert report.total


def test_card_numbers_in_a_record_are_still_masked(masker: Masker) -> None:
    record = {"span": {"line": 4111111111111111}, "reason": f"runs `echo {PAN}`", PAN: [f"x {PAN}"]}
    assert needs_masking(record, masker, by_name=False)
    masked, report = mask_json(record, masker, by_name=False)
    assert PAN not in repr(masked) and "4111111111111111" not in repr(masked)
    assert masked["span"]["line"] == "************1111"
    assert report.total == 4
