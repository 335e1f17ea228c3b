"""IPython history that never stores a raw PAN.

Decision (docs/kernel-masking.md): keep the SQLite history, but write it *masked*. Analysts keep
``%history``, up-arrow history across sessions and ``history_request`` working; only what goes to
disk changes (``In``/``_i`` in memory keep the exact source, so re-running a cell is unchanged).
``GovernedKernelApp.history = "memory"`` keeps the history in memory instead (nothing on disk).

The database is written in exactly two places (``_writeout_input_cache`` and
``_writeout_output_cache``, called from the writer thread and at exit), so masking there covers
inputs, raw inputs and logged outputs. A value that cannot be masked is stored as a notice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from IPython.core.history import HistoryManager

from governed_kernel.masking import Masker, default_masker

WITHHELD = "# [governed kernel] not stored: masking failed"


class MaskingHistoryManager(HistoryManager):
    """A :class:`HistoryManager` whose database rows are masked."""

    masker_source: Callable[[], Masker] = staticmethod(default_masker)
    """Where the masker comes from (set to the kernel session's masker by :func:`install`)."""

    def _masked(self, value: Any) -> Any:
        if not isinstance(value, str) or len(value) < 12:
            return value
        try:
            return self.masker_source().mask_text(value)[0]
        except Exception:
            return WITHHELD

    def _writeout_input_cache(self, conn: sqlite3.Connection) -> None:
        with conn:
            for line_num, source, source_raw in self.db_input_cache:
                conn.execute(
                    "INSERT INTO history VALUES (?, ?, ?, ?)",
                    (self.session_number, line_num, self._masked(source), self._masked(source_raw)),
                )

    def _writeout_output_cache(self, conn: sqlite3.Connection) -> None:
        with conn:
            for line_num, output in self.db_output_cache:
                conn.execute(
                    "INSERT INTO output_history VALUES (?, ?, ?)",
                    (self.session_number, line_num, self._masked(output)),
                )


def install(shell: Any, masker: Callable[[], Masker]) -> None:
    """Make the shell's history manager write masked rows.

    The manager is switched in place (its class), not replaced: the shell, ``In``/``Out`` and the
    writer thread keep their references. Nothing user-typed has been stored at this point. The
    in-memory mode is plain IPython configuration (``HistoryManager.hist_file = ":memory:"``), set
    by the app before the shell exists; rows are masked in that mode too.
    """
    manager = shell.history_manager
    if manager is None:
        return
    manager.__class__ = MaskingHistoryManager
    manager.masker_source = masker
