"""The bundled policy's column rules work in the engine (they use leading ``(?i)`` flags)."""

from __future__ import annotations

from governed_kernel.masking import Masker, MaskingConfig, mask_json
from governed_kernel.policy import load_default_policy


def test_bundled_policy_column_rules_mask_json_keys_and_values() -> None:
    masker = Masker(MaskingConfig.from_mapping(load_default_policy().masking))
    masked, report = mask_json({"card_number": "1234", "CVV": "123", "note": "4111111111111111"}, masker)
    assert masked == {"card_number": "****", "CVV": "***", "note": "************1111"}
    assert report.kinds["pan"] == 1


def test_mixed_flag_styles_in_column_rules() -> None:
    config = MaskingConfig.from_mapping(
        {"full_mask_columns": ["(?i)^cvv2?$", "^PIN$", "(?x) security _ code"]}
    )
    assert config.column_rule("cvv2") == "full"
    assert config.column_rule("pin") == "full"
    assert config.column_rule("security_code") == "full"
    assert config.column_rule("amount") is None
