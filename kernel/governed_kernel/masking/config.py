"""``MaskingConfig``: the ``masking:`` section of the policy, validated once.

Shared contract with the policy loader: :meth:`MaskingConfig.from_mapping` accepts exactly the keys
``reveal``, ``mask_char``, ``full_mask_columns``, ``pan_columns``, ``extra_brands`` and ``token``, all
optional, and raises ``ValueError`` naming the bad key so the policy error points at the right line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from governed_kernel.masking.cards import Brand

Reveal = Literal["last4", "bin6", "none"]
REVEALS: tuple[Reveal, ...] = ("last4", "bin6", "none")

_W = "(?:^|[^a-z])"  # a word edge where '_' and digits count as separators
_E = "(?:[^a-z]|$)"

DEFAULT_FULL_MASK_COLUMNS: tuple[str, ...] = (
    "cvv",
    "cvc",
    f"{_W}cid{_E}",
    f"{_W}csc{_E}",
    "cav2",
    "security[_ -]?code",
    "card[_ -]?verification",
    f"{_W}pin{_E}",
    "pin[_ -]?block",
    "track[_ -]?[12]",
    "track[_ -]?data",
    "magstripe",
)
"""Column / key names whose values are sensitive authentication data: every character is masked."""

DEFAULT_PAN_COLUMNS: tuple[str, ...] = (
    f"{_W}pan{_E}",
    "card[_ -]?num",
    "cardnumber",
    f"{_W}cc[_ -]?num",
    "primary[_ -]?account[_ -]?number",
    "credit[_ -]?card",
)
"""Column / key names whose digits are masked (keeping the revealed ones) even when Luhn fails."""

_KEYS = frozenset({"reveal", "mask_char", "full_mask_columns", "pan_columns", "extra_brands", "token"})
_FORBIDDEN_MASK_CHARS = set("<>&\"'\\;=^%?") | set("0123456789")


@dataclass(frozen=True)
class MaskingConfig:
    """How PANs are shown. The defaults are the PCI DSS 3.4.1 safe choice (last four digits only)."""

    reveal: Reveal = "last4"
    mask_char: str = "*"
    full_mask_columns: tuple[str, ...] = DEFAULT_FULL_MASK_COLUMNS
    pan_columns: tuple[str, ...] = DEFAULT_PAN_COLUMNS
    extra_brands: tuple[Brand, ...] = ()
    token_enabled: bool = False
    token_key_env: str | None = None
    _compiled: dict[str, re.Pattern[str] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    _rule_by_name: dict[str, Literal["full", "pan"] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.reveal not in REVEALS:
            raise ValueError(f"masking.reveal must be one of {', '.join(REVEALS)}, not {self.reveal!r}")
        if not isinstance(self.mask_char, str) or len(self.mask_char) != 1:
            raise ValueError(f"masking.mask_char must be exactly one character, not {self.mask_char!r}")
        if self.mask_char in _FORBIDDEN_MASK_CHARS or self.mask_char.isspace() or self.mask_char.isdigit():
            raise ValueError(
                f"masking.mask_char {self.mask_char!r} is not allowed: it must not be a digit, whitespace "
                "or a character that HTML, JSON or track data give a meaning"
            )
        for key, patterns in (
            ("full_mask_columns", self.full_mask_columns),
            ("pan_columns", self.pan_columns),
        ):
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as error:
                    raise ValueError(f"masking.{key}: {pattern!r} is not a valid regex: {error}") from None
        if self.token_enabled and not self.token_key_env:
            raise ValueError("masking.token.key_env must name the environment variable holding the HMAC key")

    @classmethod
    def from_mapping(cls, data: Mapping[str, object] | None) -> MaskingConfig:
        """Validate the policy's ``masking:`` mapping (``None`` or ``{}`` gives the defaults)."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError("masking must be a mapping")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ValueError(
                f"masking: unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(sorted(_KEYS))}"
            )
        kwargs: dict[str, object] = {}
        if "reveal" in data:
            kwargs["reveal"] = data["reveal"]
        if "mask_char" in data:
            kwargs["mask_char"] = data["mask_char"]
        for key in ("full_mask_columns", "pan_columns"):
            if key in data:
                value = data[key]
                if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                    raise ValueError(f"masking.{key} must be a list of regex strings")
                kwargs[key] = tuple(value)
        if "extra_brands" in data:
            brands = data["extra_brands"]
            if not isinstance(brands, list) or not all(isinstance(item, Mapping) for item in brands):
                raise ValueError("masking.extra_brands must be a list of {name, prefixes, lengths} mappings")
            kwargs["extra_brands"] = tuple(Brand.from_mapping(item) for item in brands)
        if "token" in data:
            token = data["token"]
            if not isinstance(token, Mapping) or set(token) - {"enabled", "key_env"}:
                raise ValueError("masking.token must be a mapping with keys 'enabled' and 'key_env'")
            enabled = token.get("enabled", False)
            key_env = token.get("key_env")
            if not isinstance(enabled, bool):
                raise ValueError("masking.token.enabled must be true or false")
            if key_env is not None and (not isinstance(key_env, str) or not key_env):
                raise ValueError("masking.token.key_env must be a non-empty environment variable name")
            kwargs["token_enabled"] = enabled
            kwargs["token_key_env"] = key_env
        return cls(**kwargs)  # type: ignore[arg-type]

    def column_rule(self, name: str) -> Literal["full", "pan"] | None:
        """Which column rule a column (or JSON key) name triggers: ``"full"``, ``"pan"`` or None.

        Remembered per name (the same keys come back in every record and frame; the config never
        changes), up to :data:`_RULE_CACHE_SIZE` names.
        """
        try:
            return self._rule_by_name[name]
        except KeyError:
            pass
        rule = self._column_rule(name)
        if len(self._rule_by_name) < _RULE_CACHE_SIZE:
            self._rule_by_name[name] = rule
        return rule

    def _column_rule(self, name: str) -> Literal["full", "pan"] | None:
        lowered = name.lower()
        full = self._pattern("full", self.full_mask_columns)
        if full is not None and full.search(lowered):
            return "full"
        pan = self._pattern("pan", self.pan_columns)
        if pan is not None and pan.search(lowered):
            return "pan"
        return None

    def _pattern(self, key: str, patterns: tuple[str, ...]) -> re.Pattern[str] | None:
        if key not in self._compiled:
            joined = "|".join(f"(?:{_scoped_flags(p)})" for p in patterns)
            self._compiled[key] = re.compile(joined, re.IGNORECASE) if patterns else None
        return self._compiled[key]


_RULE_CACHE_SIZE = 4096
"""Column names whose rule is remembered per config (bounded: keys can come from user data)."""

_GLOBAL_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")


def _scoped_flags(pattern: str) -> str:
    """``(?i)^cvv$`` → ``(?i:^cvv$)``: a leading global flag cannot stand inside an alternation
    (an error since Python 3.11), and policies write column rules that way."""
    match = _GLOBAL_FLAGS.match(pattern)
    return f"(?{match.group(1)}:{pattern[match.end() :]})" if match else pattern
