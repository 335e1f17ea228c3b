"""Type stub of the C accelerator (``_panscan.c``); see ``scanner.py`` and ``text.py`` for its use."""

from collections.abc import Callable
from typing import Any

ABI_VERSION: int
SOURCE_HASH: str

def find(
    text: str,
    tables: tuple[bytes, bytes, tuple[str, ...]],
    slow: Callable[[str, int, int, Any, list[Any]], None],
    table: Any,
    finding_cls: type[Any],
) -> list[Any]: ...
def mask(
    text: str, findings: list[Any], mask_char: str, reveal: int
) -> tuple[str, dict[tuple[str, str | None], int], list[int]] | None: ...
def has_wide_digit(text: str) -> bool: ...
