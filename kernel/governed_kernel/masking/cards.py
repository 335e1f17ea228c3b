"""The card-brand table (IIN ranges and lengths) as data, and the Luhn check.

A number is treated as a PAN when its length is 12-19, some brand's IIN range covers its first
digits with that length, and its Luhn check digit is right. The table is plain data so a policy can
extend it (``masking.extra_brands``) without code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MIN_PAN = 12
MAX_PAN = 19


@dataclass(frozen=True)
class Brand:
    """One card brand: its IIN ranges (as strings, e.g. ``"6011"`` or ``"622126-622925"``) and lengths."""

    name: str
    prefixes: tuple[str, ...]
    lengths: tuple[int, ...]

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> Brand:
        """Build a brand from policy data; raises ``ValueError`` on anything malformed."""
        name = data.get("name")
        prefixes = data.get("prefixes")
        lengths = data.get("lengths")
        if not isinstance(name, str) or not name:
            raise ValueError("masking.extra_brands: each brand needs a non-empty 'name'")
        if not isinstance(prefixes, list) or not prefixes:
            raise ValueError(f"masking.extra_brands[{name}]: 'prefixes' must be a non-empty list")
        if not isinstance(lengths, list) or not lengths:
            raise ValueError(f"masking.extra_brands[{name}]: 'lengths' must be a non-empty list")
        for prefix in prefixes:
            if not isinstance(prefix, str):
                raise ValueError(f"masking.extra_brands[{name}]: prefix {prefix!r} must be a string")
            parse_range(prefix)
        for length in lengths:
            if isinstance(length, bool) or not isinstance(length, int) or not MIN_PAN <= length <= MAX_PAN:
                raise ValueError(
                    f"masking.extra_brands[{name}]: length {length!r} must be an integer from "
                    f"{MIN_PAN} to {MAX_PAN}"
                )
        return cls(name, tuple(prefixes), tuple(lengths))


def _b(name: str, prefixes: str, lengths: Iterable[int]) -> Brand:
    return Brand(name, tuple(prefixes.split()), tuple(lengths))


R16_19 = range(16, 20)

DEFAULT_BRANDS: tuple[Brand, ...] = (
    # More specific ranges first: the first brand that matches names the card in reports.
    _b("mir", "2200-2204", R16_19),
    _b("verve", "506099-506198 650002-650027 507865-507964", (16, 18, 19)),
    _b("discover", "6011 644-649 65 622126-622925", R16_19),
    _b("rupay", "508 353 356 60 81 82", (16,)),
    _b("jcb", "3528-3589 3088-3094 3096-3102 3112-3120 3158-3159 3337-3349", R16_19),
    _b("jcb", "1800 2131", (15,)),
    _b("amex", "34 37", (15,)),
    _b("diners", "300-305 3095 36 38-39", range(14, 20)),
    _b("mastercard", "51-55 2221-2720", (16,)),
    _b("visa", "4", (13, 16, 19)),
    _b("unionpay", "62 81", R16_19),
    _b("maestro", "50 56-69", range(12, 20)),
    _b("interpayment", "636", R16_19),
    _b("instapayment", "637-639", (16,)),
    _b("troy", "9792", (16,)),
    _b("dinacard", "9891", (16,)),
    _b("uzcard", "8600", (16,)),
    _b("humo", "9860", (16,)),
    _b("uatp", "1", (15,)),
)
"""Current IIN ranges of the major brands (2024), lengths per brand."""


def parse_range(spec: str) -> tuple[int, int, int]:
    """``"622126-622925"`` -> (622126, 622925, 6); ``"4"`` -> (4, 4, 1). Both ends need the same width."""
    low, _, high = spec.partition("-")
    high = high or low
    if not (low.isascii() and low.isdigit() and high.isascii() and high.isdigit()):
        raise ValueError(f"IIN range {spec!r} must be digits like '6011' or '622126-622925'")
    if len(low) != len(high) or not 1 <= len(low) <= 8 or int(low) > int(high):
        raise ValueError(f"IIN range {spec!r}: both ends need the same width (1-8 digits), low <= high")
    return int(low), int(high), len(low)


_NO_LENGTHS: frozenset[int] = frozenset()


class BrandTable:
    """Fast lookup from a number's leading digits to the brands and lengths that can start with them.

    Precomputed per 4-digit prefix (10,000 slots); ranges finer than 4 digits are kept as a short list
    per slot and checked on the 8-digit prefix only for numbers that land there.
    """

    def __init__(self, brands: Sequence[Brand]) -> None:
        self.brands = tuple(brands)
        coarse: list[list[tuple[str, frozenset[int]]]] = [[] for _ in range(10_000)]
        fine: dict[int, list[tuple[int, int, str, frozenset[int]]]] = {}
        for brand in self.brands:
            lengths = frozenset(brand.lengths)
            for spec in brand.prefixes:
                low, high, width = parse_range(spec)
                if width <= 4:
                    scale = 10 ** (4 - width)
                    for slot in range(low * scale, (high + 1) * scale):
                        coarse[slot].append((brand.name, lengths))
                else:
                    scale = 10 ** (8 - width)
                    lo8, hi8 = low * scale, (high + 1) * scale - 1
                    for slot in range(lo8 // 10_000, hi8 // 10_000 + 1):
                        fine.setdefault(slot, []).append((lo8, hi8, brand.name, lengths))
        self._lengths = [
            frozenset().union(*(ls for _, ls in entry)) if entry else _NO_LENGTHS for entry in coarse
        ]
        self.lengths_by_slot: Sequence[frozenset[int]] = self._lengths
        """Lengths any brand allows for each 4-digit prefix (ranges finer than 4 digits excluded)."""
        self._names = [entry[0][0] if entry else "" for entry in coarse]
        self._brand_by_length: list[dict[int, str]] = []
        """Per 4-digit prefix: length -> the first brand (in table order) with that prefix and length."""
        for entry in coarse:
            by_length: dict[int, str] = {}
            for name, lengths in entry:
                for n in lengths:
                    by_length.setdefault(n, name)
            self._brand_by_length.append(by_length)
        self._coarse = coarse
        self._fine = fine
        self._any_fine = [slot in fine for slot in range(10_000)]
        self.fine_slots: Sequence[bool] = self._any_fine
        """For each 4-digit prefix: do ranges finer than four digits start there?"""
        self._native: tuple[bytes, bytes, tuple[str, ...]] | None = None

    def brand_of(self, digits: str) -> str | None:
        """The brand name for a digit string (length counted), or None when no brand fits."""
        n = len(digits)
        if n < MIN_PAN or n > MAX_PAN:
            return None
        slot = int(digits[:4])
        if self._any_fine[slot]:
            head8 = int(digits[:8])
            for lo8, hi8, name, lengths in self._fine[slot]:
                if lo8 <= head8 <= hi8 and n in lengths:
                    return name
        return self._brand_by_length[slot].get(n)

    def has_fine(self, digits: str) -> bool:
        """True when ranges finer than four digits start inside this number's 4-digit prefix."""
        return self._any_fine[int(digits[:4])]

    def possible(self, digits: str) -> bool:
        """Cheap pre-check (no Luhn): could this digit string be a PAN by prefix and length?"""
        n = len(digits)
        if n < MIN_PAN or n > MAX_PAN:
            return False
        slot = int(digits[:4])
        return n in self._lengths[slot] or self._any_fine[slot]

    def native_tables(self) -> tuple[bytes, bytes, tuple[str, ...]]:
        """This table for the C accelerator (``_panscan.find``), built on first use (~15 ms):
        the brand per 4-digit prefix and length as ``index + 1`` into the names (0: none) in
        ``bytes[10000 * 20]``, the fine-range flag per prefix in ``bytes[10000]``, the names."""
        tables = self._native
        if tables is None:
            names: list[str] = []
            index: dict[str, int] = {}
            brand = bytearray(10_000 * 20)
            for slot, by_length in enumerate(self._brand_by_length):
                for length, name in by_length.items():
                    if name not in index:
                        index[name] = len(names) + 1
                        names.append(name)
                    brand[slot * 20 + length] = index[name]
            if len(names) > 255:
                raise ValueError("more than 255 brand names")
            tables = self._native = (bytes(brand), bytes(self._any_fine), tuple(names))
        return tables

    def with_brands(self, extra: Sequence[Brand]) -> BrandTable:
        """A new table with ``extra`` brands added (checked first, so they name matching cards)."""
        return BrandTable(tuple(extra) + self.brands) if extra else self


_DOUBLED = bytes((2 * (c - 48) if c < 53 else 2 * (c - 48) - 9) if 48 <= c <= 57 else 0 for c in range(256))
"""Byte map for the Luhn check: an ASCII digit to its doubled-and-reduced value (``"7"`` -> 5)."""


def luhn_valid(digits: str) -> bool:
    """True when the ASCII digit string passes the Luhn (mod 10) check.

    Works on bytes: the undoubled digits are summed as byte values (minus ``"0"`` each), the doubled
    ones through a 256-byte table; about 2x faster than a per-digit dict lookup."""
    data = digits.encode()
    return (sum(data[-1::-2]) - 48 * ((len(data) + 1) // 2) + sum(data[-2::-2].translate(_DOUBLED))) % 10 == 0


_default_table: BrandTable | None = None


def default_table() -> BrandTable:
    """The shared table of :data:`DEFAULT_BRANDS`, built on first use (about 10 ms)."""
    global _default_table
    if _default_table is None:
        _default_table = BrandTable(DEFAULT_BRANDS)
    return _default_table
