"""``MaskReport``: what a masking call changed, by kind and brand, for the audit log (never digits)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

KINDS = ("pan", "track1", "track2", "pan_column", "sensitive_column")
"""``pan``: a detected card number; ``track1``/``track2``: a whole magnetic-stripe track;
``pan_column``: a value in a PAN-named column or key masked by name (Luhn not required);
``sensitive_column``: a value in a CVV/PIN/track-named column or key masked entirely."""


@dataclass
class MaskReport:
    """Counts of masked items. Mutable so one report can collect a whole message or cell."""

    kinds: Counter[str] = field(default_factory=Counter)
    brands: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, brand: str | None = None, count: int = 1) -> None:
        self.kinds[kind] += count
        if brand:
            self.brands[brand] += count

    def merge(self, other: MaskReport) -> MaskReport:
        """Add ``other``'s counts into this report; returns self for chaining."""
        self.kinds.update(other.kinds)
        self.brands.update(other.brands)
        return self

    def merge_times(self, other: MaskReport, times: int) -> MaskReport:
        """Add ``other``'s counts ``times`` times (one masked value shown in several cells)."""
        for kind, count in other.kinds.items():
            self.kinds[kind] += count * times
        for brand, count in other.brands.items():
            self.brands[brand] += count * times
        return self

    @property
    def total(self) -> int:
        return sum(self.kinds.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def as_dict(self) -> dict[str, dict[str, int]]:
        """A JSON-ready summary, e.g. ``{"kinds": {"pan": 2}, "brands": {"visa": 2}}``."""
        return {"kinds": dict(sorted(self.kinds.items())), "brands": dict(sorted(self.brands.items()))}

    def summary(self) -> str:
        """One line for humans: ``pan=2 track2=1`` (``nothing masked`` when empty)."""
        if not self.total:
            return "nothing masked"
        return " ".join(f"{kind}={count}" for kind, count in sorted(self.kinds.items()))
