"""Mask pandas objects *before* pandas formats them, touching only the rows and columns that render.

Why before: pandas cuts cells wider than ``display.max_colwidth`` ("4111111111111..."), and a cut PAN
no longer passes Luhn, so masking the formatted text afterwards could show 13+ digits. Why only the
rendered part: a 10-million-row frame shows 10 rows; masking them all would cost seconds.

The trick: pandas shows the first and last ``min_rows // 2`` rows of a frame longer than
``display.max_rows``. We build a small frame of the first and last rows whose length is still
``max_rows + 1`` (so pandas truncates it the same way, with the same visible rows and index labels),
mask every cell, label and name in it, render it, and put the original dimensions back in the footer.
pandas is imported lazily: the kernel works without it.
"""

from __future__ import annotations

import decimal
import math
from typing import Any

from governed_kernel.masking.report import MaskReport
from governed_kernel.masking.text import Masker, MaskingError, default_masker

_PANDAS_TYPES = {"DataFrame", "Series", "Index", "MultiIndex", "Styler"}


def is_pandas_display(obj: object) -> bool:
    """True for the pandas objects this module masks (checked without importing pandas)."""
    cls = type(obj)
    return cls.__module__.startswith("pandas") and any(base.__name__ in _PANDAS_TYPES for base in cls.__mro__)


def _display_window(length: int, limit: int | None) -> tuple[int, int] | None:
    """(head, tail) counts that keep pandas' truncation identical, or None to keep everything."""
    if not limit or length <= limit:
        return None
    head = (limit + 2) // 2
    return head, limit + 1 - head


def mask_value(value: Any, masker: Masker, rule: str | None, report: MaskReport) -> Any:
    """One cell or label: the value itself when clean, else a masked string."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return value
        if value.is_integer() and abs(value) >= 1e11:
            text = str(int(value))
        elif rule is None:
            return value
        else:
            text = repr(value)
    elif isinstance(value, int):
        if rule is None and not 10**11 <= abs(value) < 10**19:
            return value
        text = str(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, decimal.Decimal):
        text = str(value)
    elif isinstance(value, tuple):
        return tuple(mask_value(item, masker, rule, report) for item in value)
    else:
        type_name = type(value).__name__
        if type_name in ("Timestamp", "Timedelta", "NaTType", "Period", "datetime64", "timedelta64"):
            return value
        if hasattr(value, "dtype") and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            return mask_value(value.item(), masker, rule, report)
        text = str(value)
    if rule is not None:
        masked = masker.mask_by_name(text, rule, report)
    else:
        masked, _ = masker.mask_text(text, report)
    return value if masked == text else masked


def _mask_labels(index: Any, masker: Masker, report: MaskReport) -> Any:
    import pandas as pd

    names = [None if n is None else mask_value(n, masker, None, report) for n in index.names]
    if isinstance(index, pd.MultiIndex):
        arrays = [
            [mask_value(v, masker, None, report) for v in index.get_level_values(level)]
            for level in range(index.nlevels)
        ]
        if all(list(a) == list(index.get_level_values(i)) for i, a in enumerate(arrays)):
            return index.set_names(names)
        return pd.MultiIndex.from_arrays(arrays, names=names)
    values = list(index)
    masked = [mask_value(v, masker, None, report) for v in values]
    if all(m is v for m, v in zip(masked, values, strict=True)):
        return index.set_names(names)
    return pd.Index(masked, name=names[0], dtype=object)


def _column_rule(label: Any, masker: Masker) -> str | None:
    text = " ".join(map(str, label)) if isinstance(label, tuple) else str(label)
    return masker.config.column_rule(text)


def _mask_series_values(series: Any, masker: Masker, rule: str | None, report: MaskReport) -> Any:
    import pandas as pd

    kind = series.dtype.kind
    if rule is None and kind in "bmMc":  # bool, datetime, timedelta, complex: never a PAN
        return series
    if rule is None and kind in "iu":
        values = series.to_numpy()
        if not ((values >= 10**11) | (values <= -(10**11))).any():
            return series
    if rule is None and kind == "f":
        values = series.to_numpy()
        if not ((values >= 1e11) | (values <= -1e11)).any():
            return series
    masked = [mask_value(v, masker, rule, report) for v in series.tolist()]
    return pd.Series(masked, index=series.index, name=series.name, dtype=object)


def mask_frame(frame: Any, masker: Masker | None = None, report: MaskReport | None = None) -> Any:
    """A masked copy of the part of ``frame`` (DataFrame) that pandas would display.

    The result has every visible cell, index label, column label and axis name masked; when the
    frame is longer than ``display.max_rows`` (or wider than ``display.max_columns``) the result is
    a small frame that pandas truncates to exactly the same visible rows (see the module docs).
    """
    import pandas as pd

    masker = masker or default_masker()
    report = report if report is not None else MaskReport()
    rows = _display_window(len(frame), pd.get_option("display.max_rows"))
    if rows is not None:
        head, tail = rows
        frame = pd.concat([frame.iloc[:head], frame.iloc[len(frame) - tail :]])
    cols = _display_window(frame.shape[1], pd.get_option("display.max_columns"))
    if cols is not None:
        head, tail = cols
        frame = pd.concat([frame.iloc[:, :head], frame.iloc[:, frame.shape[1] - tail :]], axis=1)
    data = {}
    for position in range(frame.shape[1]):
        column = frame.iloc[:, position]
        rule = _column_rule(frame.columns[position], masker)
        data[position] = _mask_series_values(column, masker, rule, report)
    masked = pd.DataFrame(data, index=frame.index)
    masked.columns = _mask_labels(frame.columns, masker, report)
    masked.index = _mask_labels(frame.index, masker, report)
    return masked


def mask_series(series: Any, masker: Masker | None = None, report: MaskReport | None = None) -> Any:
    """A masked copy of the displayed part of a Series (values, index labels and name)."""
    import pandas as pd

    masker = masker or default_masker()
    report = report if report is not None else MaskReport()
    rows = _display_window(len(series), pd.get_option("display.max_rows"))
    if rows is not None:
        head, tail = rows
        series = pd.concat([series.iloc[:head], series.iloc[len(series) - tail :]])
    name = series.name
    rule = _column_rule(name, masker) if name is not None else None
    masked = _mask_series_values(series, masker, rule, report)
    if masked is series:
        masked = series.copy()
    masked.index = _mask_labels(series.index, masker, report)
    masked.name = None if name is None else mask_value(name, masker, None, report)
    return masked


class MaskedDisplay:
    """Stands in for a pandas object at display time: renders the masked small copy with the
    original's dimensions in the footer. Has ``__repr__`` and ``_repr_html_`` like the original."""

    def __init__(self, masked: Any, shape: tuple[int, ...], dtype: str | None, report: MaskReport) -> None:
        self.masked = masked
        self.shape = shape
        self.dtype = dtype
        self.report = report

    def _fix_footer(self, text: str, html: bool) -> str:
        small = self.masked.shape
        if small == self.shape and self.dtype is None:
            return text
        if len(small) == 2:
            if html:
                old = f"<p>{small[0]} rows \u00d7 {small[1]} columns</p>"
                new = f"<p>{self.shape[0]} rows \u00d7 {self.shape[1]} columns</p>"
            else:
                old = f"[{small[0]} rows x {small[1]} columns]"
                new = f"[{self.shape[0]} rows x {self.shape[1]} columns]"
            head, sep, tail = text.rpartition(old)
            return head + new + tail if sep else text
        head, sep, tail = text.rpartition("\n")
        tail = tail.replace(f"Length: {small[0]}", f"Length: {self.shape[0]}")
        if self.dtype is not None:
            tail = tail.replace(f"dtype: {self.masked.dtype}", f"dtype: {self.dtype}")
        return head + sep + tail

    def __repr__(self) -> str:
        return self._fix_footer(repr(self.masked), html=False)

    def _repr_html_(self) -> str | None:
        render = getattr(self.masked, "_repr_html_", None)
        if render is None:
            return None
        html = render()
        return None if html is None else self._fix_footer(html, html=True)


def mask_for_display(obj: Any, masker: Masker | None = None) -> tuple[Any, MaskReport]:
    """Something safe to display in place of a pandas object, and what was masked.

    DataFrame and Series give a :class:`MaskedDisplay`; Index/MultiIndex a masked Index; Styler a new
    Styler over masked data that keeps the original's styles. Raises :class:`MaskingError` rather
    than ever returning the unmasked object.
    """
    import pandas as pd

    masker = masker or default_masker()
    report = MaskReport()
    try:
        if isinstance(obj, pd.DataFrame):
            return MaskedDisplay(mask_frame(obj, masker, report), obj.shape, None, report), report
        if isinstance(obj, pd.Series):
            masked = mask_series(obj, masker, report)
            dtype = str(obj.dtype) if masked.dtype != obj.dtype else None
            return MaskedDisplay(masked, obj.shape, dtype, report), report
        if isinstance(obj, pd.Index):
            return _mask_labels(obj, masker, report), report
        from pandas.io.formats.style import Styler

        if isinstance(obj, Styler):
            return _mask_styler(obj, masker, report), report
    except MaskingError:
        raise
    except Exception as error:  # fail closed: the caller drops the output
        raise MaskingError(f"could not mask {type(obj).__name__} for display: {error}") from error
    raise MaskingError(f"not a pandas display object: {type(obj).__name__}")


def _mask_styler(styler: Any, masker: Masker, report: MaskReport) -> Any:
    """Styler renders every row up to ``styler.render.max_rows``: mask the data it renders, keep styles.

    Styling functions run on the masked data, so ones that expect numbers in a masked column may fail;
    that raises (fail closed) rather than rendering the original.
    """
    import pandas as pd

    data = styler.data
    limit = pd.get_option("styler.render.max_rows")
    if limit and len(data) > limit:
        data = data.iloc[:limit]
    with pd.option_context("display.max_rows", None, "display.max_columns", None):
        masked = mask_frame(data, masker, report)
    new = masked.style
    new.use(styler.export())
    return new


def display_bundle(obj: Any, masker: Masker | None = None) -> tuple[dict[str, str], MaskReport]:
    """The ``text/plain`` and ``text/html`` a pandas object would display, masked."""
    shown, report = mask_for_display(obj, masker)
    bundle = {"text/plain": repr(shown)}
    render = getattr(shown, "_repr_html_", None)
    html = render() if render is not None else None
    if isinstance(html, str):
        bundle["text/html"] = html
    return bundle, report
