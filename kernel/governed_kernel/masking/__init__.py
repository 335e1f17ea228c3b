"""PAN detection and masking, shared by the kernel, the server's data-path guard and the CLI.

Pure Python, no Jupyter imports; pandas is imported only when a pandas object is masked.

- :class:`MaskingConfig` — the policy's ``masking:`` section (reveal, mask character, column rules,
  extra brands, keyed tokens), validated by :meth:`MaskingConfig.from_mapping`.
- :class:`Masker` — masks text (:meth:`Masker.mask_text`) and finds PANs (:meth:`Masker.find`).
- :func:`mask_text`, :func:`mask_html`, :func:`mask_json`, :func:`mask_bundle` — text, HTML, JSON data
  and Jupyter MIME bundles; each returns ``(masked, MaskReport)``.
- :func:`mask_for_display`, :func:`display_bundle` — pandas DataFrame/Series/Index/Styler, masked
  before formatting and only where rows render.
- :class:`StreamMasker` — stdout/stderr pieces, with a bounded hold-back for PANs split across writes.
- :func:`mask_notebook` — a whole notebook (sources, outputs, attachments, metadata);
  :func:`mask_file_bytes` / :func:`mask_file_text` — a whole file as the server serves it (UTF-8,
  UTF-16/32, NUL-interleaved digits, JSON escapes; see ``files``).
- :class:`MaskReport` — counts by kind and brand for the audit log; :class:`MaskingError` — masking
  failed, drop the output (fail closed).
"""

from governed_kernel.masking.cards import DEFAULT_BRANDS, Brand, BrandTable, luhn_valid
from governed_kernel.masking.config import MaskingConfig
from governed_kernel.masking.files import mask_file_bytes, mask_file_text
from governed_kernel.masking.frames import display_bundle, is_pandas_display, mask_for_display
from governed_kernel.masking.html import mask_html
from governed_kernel.masking.jsonmask import mask_json, needs_masking
from governed_kernel.masking.mime import mask_bundle
from governed_kernel.masking.notebook import mask_notebook, notebook_needs_masking
from governed_kernel.masking.report import MaskReport
from governed_kernel.masking.scanner import Finding
from governed_kernel.masking.stream import StreamMasker
from governed_kernel.masking.text import Masker, MaskingError, default_masker, mask_text

__all__ = [
    "DEFAULT_BRANDS",
    "Brand",
    "BrandTable",
    "Finding",
    "MaskReport",
    "Masker",
    "MaskingConfig",
    "MaskingError",
    "StreamMasker",
    "default_masker",
    "display_bundle",
    "is_pandas_display",
    "luhn_valid",
    "mask_bundle",
    "mask_file_bytes",
    "mask_file_text",
    "mask_for_display",
    "mask_html",
    "mask_json",
    "mask_notebook",
    "mask_text",
    "needs_masking",
    "notebook_needs_masking",
]
