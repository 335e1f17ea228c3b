"""Display hook: pandas objects are masked *before* pandas formats them.

Why: pandas cuts cells wider than ``display.max_colwidth``; a cut PAN fails the Luhn check, so
masking the formatted text afterwards could still show 13+ digits. The shell's
``DisplayFormatter.format`` is what both ``display()`` and the execute result (``Out[n]``) call, so
wrapping it covers DataFrame, Series, Index and Styler on both paths. For these objects only
``text/plain`` and ``text/html`` are produced (from :func:`display_bundle`); pandas' other reprs
(``_repr_latex_``, table schema JSON) are not, so they cannot bypass the masking.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from governed_kernel.masking import MaskReport, display_bundle, is_pandas_display
from governed_kernel.session import WITHHELD, MaskingSession

Bundle = tuple[dict[str, Any], dict[str, Any]]


class PandasMaskingFormat:
    """Stands in for ``DisplayFormatter.format``: masks pandas objects, defers everything else."""

    def __init__(self, original: Callable[..., Bundle], session: MaskingSession) -> None:
        self.original = original
        self.session = session

    def __call__(
        self, obj: Any, include: Collection[str] | None = None, exclude: Collection[str] | None = None
    ) -> Bundle:
        if not is_pandas_display(obj):
            return self.original(obj, include=include, exclude=exclude)
        try:
            data, report = display_bundle(obj, self.session.masker)
        except Exception as error:  # fail closed: a notice instead of the table
            self.session.ledger.add_dropped(None)
            data, report = {"text/plain": WITHHELD.format(error=type(error).__name__)}, MaskReport()
        self.session.ledger.add_report(report)
        if include:
            data = {mime: value for mime, value in data.items() if mime in include}
        if exclude:
            data = {mime: value for mime, value in data.items() if mime not in exclude}
        return data, {}


def install(shell: Any, session: MaskingSession) -> None:
    """Wrap ``shell.display_formatter.format`` (idempotent)."""
    formatter = shell.display_formatter
    if isinstance(formatter.format, PandasMaskingFormat):
        return
    formatter.format = PandasMaskingFormat(formatter.format, session)
