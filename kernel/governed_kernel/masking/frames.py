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
import re
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


_RULE_CACHE_SIZE = 4096
_HAS_DIGIT = re.compile(r"\d")  # any decimal digit (``digits``)


def _column_rule(label: Any, masker: Masker) -> str | None:
    """The policy's rule for a column label (``full``, ``pan`` or None), remembered per masker for
    labels without digits (so no card number is kept in the cache)."""
    if type(label) is str:
        text = label
    else:
        text = " ".join(map(str, label)) if isinstance(label, tuple) else str(label)
    cache = masker.column_rules
    rule = cache.get(text, "")
    if rule != "":
        return rule
    rule = masker.config.column_rule(text)
    if len(text) <= 64 and not _HAS_DIGIT.search(text):
        if len(cache) >= _RULE_CACHE_SIZE:
            cache.clear()
        cache[text] = rule
    return rule


def _shown_positions(length: int, window: Window) -> Any:
    """Positions of the rendered rows in a small display frame of ``length`` rows (None: all)."""
    import numpy as np

    if window is None:
        return None
    head, filler = window
    return np.concatenate((np.arange(head, dtype=np.intp), np.arange(head + filler, length, dtype=np.intp)))


def _mask_array(
    values: Any, masker: Masker, rule: str | None, report: MaskReport, shown: Any, window: Window
) -> list[Any] | None:
    """The masked values of one column for a small display frame, or None when they are clean.

    ``values`` is the column's array (numpy or pandas extension array); ``shown`` the positions in it
    of the rows that render (None: every row); ``window`` says where the hidden filler rows go
    (they get masked row 0, see :data:`Window`)."""
    import numpy as np
    import pandas as pd

    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        # Mask each category shown once (counted once per visible cell), then pick by code.
        codes = values.codes
        shown_codes = (codes if shown is None else codes[shown]).tolist()
        categories = dtype.categories
        masked_by_code: dict[int, Any] = {-1: None}
        changed = False
        for code in set(shown_codes):
            if code < 0:
                continue
            original = categories[code]
            if rule is None and type(original) is str and len(original) < MIN_PAN:
                masked_by_code[code] = original  # too short to hold a PAN (mask_value would agree)
                continue
            scratch = MaskReport()
            masked_by_code[code] = mask_value(original, masker, rule, scratch)
            changed = changed or masked_by_code[code] is not original
            report.merge_times(scratch, shown_codes.count(code))
        if not changed:
            return None
        return _refill([masked_by_code[code] for code in shown_codes], window)
    kind = dtype.kind
    if rule is None and kind in "bmMc":  # bool, datetime, timedelta, complex: never a PAN
        return None
    if shown is None:
        part = values
    elif isinstance(values, np.ndarray):
        part = values[shown]
    else:
        part = values.take(shown)
    is_numpy = isinstance(part, np.ndarray)
    numpy_ints = kind in "iu" and is_numpy
    if rule is None and kind in "iuf":
        if len(part) > 64 or not is_numpy:  # (extension arrays: missing values need to_numpy)
            if _numbers_too_small(part):
                return None
        elif all(-1e11 < v < 1e11 for v in part.tolist()):  # NaN fails the test: checked below
            return None
    items = part.tolist()
    if numpy_ints and rule is not None:
        # A whole column of plain integers masked by name (card_number, cvv...): no per-value dispatch.
        texts = [str(v) for v in items]
        masked: list[Any] = [masker.mask_by_name(t, rule) for t in texts]
        report.add("sensitive_column" if rule == "full" else "pan_column", count=len(texts))
        return _refill(masked, window)
    masked = [mask_value(v, masker, rule, report) for v in items]
    if all(m is v for m, v in zip(masked, items, strict=True)):
        return None
    return _refill(masked, window)


def _column_values(series: Any) -> Any:
    """A Series' values as a numpy array (numpy dtypes, no copy) or its extension array."""
    import numpy as np

    return series.to_numpy() if isinstance(series.dtype, np.dtype) else series.array


def _mask_column(
    series: Any, masker: Masker, rule: str | None, report: MaskReport, window: Window = None
) -> list[Any] | None:
    """The masked values of a column (hidden filler rows included), or None when it is clean."""
    return _mask_array(
        _column_values(series), masker, rule, report, _shown_positions(len(series), window), window
    )


def _mask_series_values(series: Any, masker: Masker, rule: str | None, report: MaskReport) -> Any:
    import pandas as pd

    masked = _mask_column(series, masker, rule, report)
    if masked is None:
        return series
    return pd.Series(masked, index=series.index, name=series.name, dtype=object)


def _visible_rows(
    length: int, max_rows: int | None = None, min_rows: int | None = None
) -> tuple[int, int] | None:
    """(head, tail) rows that pandas' DataFrame repr (text and HTML) shows of a frame of ``length``
    rows, or None when it shows every row. Mirrors ``DataFrameFormatter``: a frame longer than
    ``display.max_rows`` shows ``min(display.min_rows, max_rows) // 2`` rows at each end."""
    import pandas as pd

    if max_rows is None:
        max_rows = pd.get_option("display.max_rows")
        min_rows = pd.get_option("display.min_rows")
    if not max_rows or length <= max_rows:
        return None  # no limit (or 0: fit the terminal): every row may render, so mask every row
    shown = min(min_rows, max_rows) if min_rows else max_rows
    half = shown // 2
    if half < 1:
        return max_rows + 1, 0  # pandas shows the first max_rows rows: mask all max_rows + 1
    return half, half


def _index_too_small(index: Any) -> bool:
    """True when no label of a flat numeric or date index can be a PAN, checked cheaply."""
    import pandas as pd

    if isinstance(index, pd.RangeIndex):
        return max(abs(index.start), abs(index.stop)) < 10**11
    kind = index.dtype.kind
    return kind in "bmM" or (kind in "iuf" and _numbers_too_small(index.array))


def mask_frame(frame: Any, masker: Masker | None = None, report: MaskReport | None = None) -> Any:
    """A masked copy of the part of ``frame`` (DataFrame) that pandas would display.

    The result has every visible cell, index label, column label and axis name masked; when the
    frame is longer than ``display.max_rows`` (or wider than ``display.max_columns``) the result is
    a small frame that pandas truncates to exactly the same visible rows (see the module docs).
    Only the rows pandas shows (``display.min_rows``, 10 by default) are masked: the hidden middle
    of the small frame repeats masked row 0, so its length still makes pandas truncate it the same
    way and nothing unmasked is in it even if the display options change before it renders.

    Cost: flat in the frame's length. The values that render are read straight from each column's
    array; columns that change become object arrays, the others are ``take``-n rows of the
    original (same dtype, so pandas formats them exactly as it formats the original). The small
    frame is built in one step with pandas' internal ``DataFrame._from_arrays`` (~0.07 ms for
    8 columns, vs ~0.3 ms through ``take`` + ``items`` + ``isetitem``); when that internal API is
    missing or refuses the arrays, the public path (:func:`_mask_frame_public`) does the same.
    """
    import numpy as np
    import pandas as pd

    masker = masker or default_masker()
    report = report if report is not None else MaskReport()
    length = len(frame)
    max_rows = pd.get_option("display.max_rows")
    rows = _visible_rows(length, max_rows, pd.get_option("display.min_rows"))
    window: Window = None
    row_indexer: Any = None
    shown: Any = None
    if rows is not None:
        head, tail = rows
        filler = max_rows + 1 - head - tail
        if filler > 0:
            window = (head, filler)
            row_indexer = np.concatenate(
                (
                    np.arange(head, dtype=np.intp),
                    np.zeros(filler, dtype=np.intp),
                    np.arange(length - tail, length),
                )
            ).astype(np.intp, copy=False)
            shown = np.concatenate(
                (np.arange(head, dtype=np.intp), np.arange(length - tail, length, dtype=np.intp))
            )
        else:
            row_indexer = shown = np.arange(head + tail, dtype=np.intp)
    width = frame.shape[1]
    cols = _display_window(width, pd.get_option("display.max_columns"))
    col_positions = None if cols is None else np.r_[0 : cols[0], width - cols[1] : width]
    small = None
    if _FAST_FRAMES:
        try:
            small = _mask_frame_fast(frame, masker, report, row_indexer, shown, window, col_positions)
        except (AttributeError, TypeError, ValueError, AssertionError):  # internal API changed: public path
            small = None
    if small is None:
        small = _mask_frame_public(frame, masker, report, row_indexer, window, col_positions)
    labels = small.columns
    if not (
        labels.nlevels == 1
        and labels.name is None
        and all(type(label) is str and len(label) < MIN_PAN for label in labels.tolist())
    ):  # (short string labels cannot hold a PAN: the usual case, checked without _mask_labels)
        columns = _mask_labels(labels, masker, report)
        if columns is not labels:
            small.columns = columns
    if not (small.index.nlevels == 1 and small.index.name is None and _index_too_small(frame.index)):
        index = _mask_labels(small.index, masker, report, window)
        if index is not small.index:
            small.index = index
    return small


_FAST_FRAMES = True
"""Use pandas' internal ``_iter_column_arrays``/``_from_arrays`` to build the small frame (tests turn
this off to check that the public path gives the same result)."""


def _mask_frame_fast(
    frame: Any,
    masker: Masker,
    report: MaskReport,
    row_indexer: Any,
    shown: Any,
    window: Window,
    col_positions: Any,
) -> Any:
    import pandas as pd

    scratch = MaskReport()  # merged only on success, so a fallback does not count twice
    arrays = list(frame._iter_column_arrays())
    labels = frame.columns
    if col_positions is not None:
        arrays = [arrays[i] for i in col_positions.tolist()]
        labels = labels.take(col_positions)
    out: list[Any] = []
    for label, values in zip(labels.tolist(), arrays, strict=True):
        rule = _column_rule(label, masker)
        masked = None
        if rule is not None or _may_hold_pan(values.dtype):
            masked = _mask_array(values, masker, rule, scratch, shown, window)
        if masked is not None:
            out.append(_object_array(masked))
        else:
            out.append(values if row_indexer is None else values.take(row_indexer))
    index = frame.index if row_indexer is None else frame.index.take(row_indexer)
    small = pd.DataFrame._from_arrays(  # type: ignore[attr-defined]  # internal, see mask_frame
        out, columns=labels, index=index, verify_integrity=False
    )
    report.merge(scratch)
    return small


def _mask_frame_public(
    frame: Any, masker: Masker, report: MaskReport, row_indexer: Any, window: Window, col_positions: Any
) -> Any:
    """Same result as :func:`_mask_frame_fast` through public pandas API only (slower)."""
    import pandas as pd

    small = frame.copy(deep=False) if row_indexer is None else frame.take(row_indexer)
    if col_positions is not None:
        small = small.take(col_positions, axis=1)
    for position, (label, column) in enumerate(small.items()):
        rule = _column_rule(label, masker)
        if rule is None and not _may_hold_pan(column.dtype):
            continue
        masked = _mask_column(column, masker, rule, report, window)
        if masked is not None:
            small.isetitem(
                position, pd.Series(_object_array(masked), index=small.index, dtype=object, copy=False)
            )
    return small


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
