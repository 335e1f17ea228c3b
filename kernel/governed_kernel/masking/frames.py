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

from governed_kernel.masking.cards import MIN_PAN
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
        if rule is None and len(value) < MIN_PAN:
            return value  # fewer characters than a PAN has digits
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


Window = tuple[int, int] | None
"""``(head, filler)``: rows ``head .. head + filler - 1`` of a small display frame are hidden copies of
row 0 (pandas cuts them out); only the other rows render and are masked. None: every row renders."""


def _visible(values: list[Any], window: Window) -> list[Any]:
    if window is None:
        return values
    head, filler = window
    return values[:head] + values[head + filler :]


def _refill(masked: list[Any], window: Window) -> list[Any]:
    if window is None:
        return masked
    head, filler = window
    return masked[:head] + [masked[0]] * filler + masked[head:]


def _mask_values(
    values: list[Any], masker: Masker, rule: str | None, report: MaskReport, window: Window
) -> list[Any] | None:
    """Masked values of the rows that render (hidden filler rows get masked row 0), or None if clean."""
    shown = _visible(values, window)
    masked = [mask_value(v, masker, rule, report) for v in shown]
    if all(m is v for m, v in zip(masked, shown, strict=True)):
        return None
    return _refill(masked, window)


def _numbers_too_small(values: Any) -> bool:
    """True when no value of a numeric array can be a PAN (every |value| < 10**11)."""
    import numpy as np

    dtype = getattr(values.dtype, "numpy_dtype", values.dtype)  # NumpyExtensionArray wraps a numpy dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iuf":
        if dtype.kind in "iu" and dtype.itemsize < 8:
            return True  # int8/16/32 never reach 12 digits
        array = np.asarray(values)
    else:  # nullable extension arrays (Int64, Float64...): missing values become NaN
        array = values.to_numpy(dtype="float64", na_value=np.nan)
    return not bool(((array >= 1e11) | (array <= -1e11)).any())


def _may_hold_pan(dtype: Any) -> bool:
    """False for dtypes whose values can never show a PAN: bool, datetimes, complex, int8-32."""
    kind = getattr(dtype, "kind", "O")
    if kind in "bmMc":
        return False
    return not (kind in "iu" and getattr(dtype, "itemsize", 8) < 8 and type(dtype).__module__ == "numpy")


def _object_array(values: list[Any]) -> Any:
    import numpy as np

    return np.fromiter(values, dtype=object, count=len(values))


def _mask_labels(index: Any, masker: Masker, report: MaskReport, window: Window = None) -> Any:
    import pandas as pd

    names = [None if n is None else mask_value(n, masker, None, report) for n in index.names]
    names_changed = any(m is not n for m, n in zip(names, index.names, strict=True))
    if isinstance(index, pd.MultiIndex):
        levels = [index.get_level_values(level) for level in range(index.nlevels)]
        arrays = [_mask_values(list(level), masker, None, report, window) for level in levels]
        if all(a is None for a in arrays):
            return index.set_names(names) if names_changed else index
        return pd.MultiIndex.from_arrays(
            [list(level) if a is None else a for a, level in zip(arrays, levels, strict=True)], names=names
        )
    kind = index.dtype.kind
    if kind in "bmM" or (kind in "iuf" and _numbers_too_small(index.array)):
        return index.set_names(names) if names_changed else index
    masked = _mask_values(list(index), masker, None, report, window)
    if masked is None:
        return index.set_names(names) if names_changed else index
    return pd.Index(masked, name=names[0], dtype=object)


def _column_rule(label: Any, masker: Masker) -> str | None:
    text = " ".join(map(str, label)) if isinstance(label, tuple) else str(label)
    return masker.config.column_rule(text)


def _mask_column(
    series: Any, masker: Masker, rule: str | None, report: MaskReport, window: Window = None
) -> list[Any] | None:
    """The masked values of a column (hidden filler rows included), or None when it is clean."""
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        # Mask each category shown once (counted once per visible cell), then pick by code.
        codes = series.array.codes.tolist()
        shown = _visible(codes, window)
        categories = dtype.categories
        masked_by_code: dict[int, Any] = {-1: None}
        changed = False
        for code in set(shown):
            if code < 0:
                continue
            scratch = MaskReport()
            original = categories[code]
            masked_by_code[code] = mask_value(original, masker, rule, scratch)
            changed = changed or masked_by_code[code] is not original
            report.merge_times(scratch, shown.count(code))
        if not changed:
            return None
        return _refill([masked_by_code[code] for code in shown], window)
    kind = dtype.kind
    if rule is None and kind in "bmMc":  # bool, datetime, timedelta, complex: never a PAN
        return None
    if rule is None and kind in "iuf" and _numbers_too_small(series.array):
        return None
    return _mask_values(series.tolist(), masker, rule, report, window)


def _mask_series_values(series: Any, masker: Masker, rule: str | None, report: MaskReport) -> Any:
    import pandas as pd

    masked = _mask_column(series, masker, rule, report)
    if masked is None:
        return series
    return pd.Series(masked, index=series.index, name=series.name, dtype=object)


def _visible_rows(length: int) -> tuple[int, int] | None:
    """(head, tail) rows that pandas' DataFrame repr (text and HTML) shows of a frame of ``length``
    rows, or None when it shows every row. Mirrors ``DataFrameFormatter``: a frame longer than
    ``display.max_rows`` shows ``min(display.min_rows, max_rows) // 2`` rows at each end."""
    import pandas as pd

    max_rows = pd.get_option("display.max_rows")
    if not max_rows or length <= max_rows:
        return None  # no limit (or 0: fit the terminal): every row may render, so mask every row
    min_rows = pd.get_option("display.min_rows")
    shown = min(min_rows, max_rows) if min_rows else max_rows
    half = shown // 2
    if half < 1:
        return max_rows + 1, 0  # pandas shows the first max_rows rows: mask all max_rows + 1
    return half, half


def mask_frame(frame: Any, masker: Masker | None = None, report: MaskReport | None = None) -> Any:
    """A masked copy of the part of ``frame`` (DataFrame) that pandas would display.

    The result has every visible cell, index label, column label and axis name masked; when the
    frame is longer than ``display.max_rows`` (or wider than ``display.max_columns``) the result is
    a small frame that pandas truncates to exactly the same visible rows (see the module docs).
    Only the rows pandas shows (``display.min_rows``, 10 by default) are masked: the hidden middle
    of the small frame repeats masked row 0, so its length still makes pandas truncate it the same
    way and nothing unmasked is in it even if the display options change before it renders.
    """
    import numpy as np
    import pandas as pd

    masker = masker or default_masker()
    report = report if report is not None else MaskReport()
    length = len(frame)
    rows = _visible_rows(length)
    window: Window = None
    if rows is not None:
        head, tail = rows
        filler = pd.get_option("display.max_rows") + 1 - head - tail
        if filler > 0:
            window = (head, filler)
            frame = frame.take(np.r_[0:head, np.zeros(filler, dtype=np.intp), length - tail : length])
        else:
            frame = frame.iloc[: head + tail]
    cols = _display_window(frame.shape[1], pd.get_option("display.max_columns"))
    if cols is not None:
        left, right = cols
        width = frame.shape[1]
        frame = frame.take(np.r_[0:left, width - right : width], axis=1)
    data: dict[int, Any] = {}
    changed = False
    for position, (label, column) in enumerate(frame.items()):
        data[position] = column
        rule = _column_rule(label, masker)
        if rule is None and not _may_hold_pan(column.dtype):
            continue
        masked = _mask_column(column, masker, rule, report, window)
        if masked is not None:
            data[position] = pd.Series(_object_array(masked), index=frame.index, dtype=object, copy=False)
            changed = True
    result = pd.DataFrame(data, index=frame.index, copy=False) if changed else frame.copy(deep=False)
    columns = _mask_labels(frame.columns, masker, report)
    if changed or columns is not frame.columns:
        result.columns = columns
    index = _mask_labels(frame.index, masker, report, window)
    if index is not frame.index:
        result.index = index
    return result


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


def _mask_styler(styler: Any, masker: Masker, report: MaskReport) -> MaskedStyler:
    """Styler renders every row up to ``styler.render.max_rows``: mask the data it renders, keep styles.

    Styling functions run on the masked data, so ones that expect numbers in a masked column may fail;
    the result then renders the masked data without styles and with a visible notice (never the
    original), see :class:`MaskedStyler`.
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
    return MaskedStyler(new, masked)


STYLING_DROPPED = (
    '<div class="governed-notice" role="note" style="border-left:4px solid #d9822b;padding:4px 8px;'
    'margin:4px 0;background:#fff8e6;color:#000">Governed kernel: styling was not applied because a '
    "styling function failed on masked card data ({error}). The values below are masked; styles are "
    "dropped.</div>"
)
"""HTML notice shown above the unstyled masked table when the Styler cannot render masked data."""


class MaskedStyler:
    """A Styler over masked data. Renders it with the original's styles when the styling functions
    accept the masked values; otherwise (e.g. ``background_gradient`` or ``map(lambda v: v > 0)`` on a
    masked PAN column) renders the masked frame without styles under a visible notice. Never
    renders the original data and never raises for a styling error."""

    def __init__(self, styler: Any, masked: Any) -> None:
        self.styler = styler
        self.masked = masked
        self.styling_error: str | None = None
        """Type of the exception that made styling fail (``None`` while styling works)."""

    def __repr__(self) -> str:
        return repr(self.styler)

    def _repr_html_(self) -> str | None:
        try:
            html: str | None = self.styler._repr_html_()
        except Exception as error:  # a styling function that cannot handle masked values
            self.styling_error = type(error).__name__
            return STYLING_DROPPED.format(error=self.styling_error) + (self.masked._repr_html_() or "")
        return html


def display_bundle(obj: Any, masker: Masker | None = None) -> tuple[dict[str, str], MaskReport]:
    """The ``text/plain`` and ``text/html`` a pandas object would display, masked."""
    shown, report = mask_for_display(obj, masker)
    bundle = {"text/plain": repr(shown)}
    render = getattr(shown, "_repr_html_", None)
    html = render() if render is not None else None
    if isinstance(html, str):
        bundle["text/html"] = html
    return bundle, report
