"""End of cell: every byte written to the stdout/stderr descriptors during a cell is in that cell.

The kernel skips its round trips to the fd watcher and the IOPub thread when a stream is quiet
(nothing in the pipe, nothing being forwarded, nothing buffered or held back). These tests write at
the last moment of a cell, in every way output reaches a descriptor, and check nothing is late (it
would show up in the next cell, after the reply) and nothing is lost.
"""

from __future__ import annotations

import pytest
from kernel_helpers import Kernel  # type: ignore[import-not-found]

LAST_MOMENT_WRITES = {
    "os.write stdout": "import os\nos.write(1, b'{tag}\\n' * {n})",
    "os.write stderr": "import os\nos.write(2, b'{tag}\\n' * {n})",
    "libc write": "import ctypes\nctypes.CDLL(None).write(1, b'{tag}\\n' * {n}, len(b'{tag}\\n') * {n})",
    "subprocess": (
        "import subprocess\nsubprocess.run(['sh', '-c', 'for i in $(seq {n}); do echo {tag}; done'])"
    ),
    "print then fd": "import os\nprint('{tag}')\nos.write(1, b'{tag}\\n' * ({n} - 1))",
}


@pytest.mark.parametrize("how", list(LAST_MOMENT_WRITES))
def test_output_written_at_the_end_of_a_cell_is_in_that_cell(kernel: Kernel, how: str) -> None:
    for round_ in range(12):
        count = 1 + round_ * 37  # from one line to a few pipe buffers
        tag = f"out-{how.replace(' ', '-')}-{round_}"
        cell = kernel.ok(LAST_MOMENT_WRITES[how].format(tag=tag, n=count))
        lines = cell.stream().splitlines()
        assert lines.count(tag) == count, (how, round_, len(lines))
        after = kernel.ok("pass")
        assert tag not in after.stream(), f"{how}: output of round {round_} arrived in the next cell"


def test_quiet_cells_stay_quiet_between_noisy_ones(kernel: Kernel) -> None:
    for round_ in range(20):
        noisy = kernel.ok(f"import os\nos.write(1, b'noisy {round_}\\n')")
        assert noisy.stream() == f"noisy {round_}\n"
        assert kernel.ok("x = 1").stream() == ""


def test_a_flush_with_nothing_to_send_does_not_wait_for_the_iopub_thread(kernel: Kernel) -> None:
    """Every cell flushes both streams twice or more; a flush that has nothing to send returns at
    once instead of a round trip to the IOPub thread. One with output still waits until it is sent."""
    cell = kernel.ok(
        "import sys\n"
        "calls = []\n"
        "real = sys.stdout.pub_thread.schedule\n"
        "sys.stdout.pub_thread.schedule = lambda f: (calls.append(f), real(f))[1]\n"
        "try:\n"
        "    for _ in range(10):\n"
        "        sys.stdout.flush()\n"
        "    quiet = len(calls)\n"
        "    sys.stdout.write('sent before the flush returns\\n')\n"
        "    sys.stdout.flush()\n"
        "    noisy = len(calls) - quiet\n"
        "finally:\n"
        "    sys.stdout.pub_thread.schedule = real\n"
        "print('counts', quiet, noisy)"
    )
    counts = [line for line in cell.stream().splitlines() if line.startswith("counts")]
    quiet, noisy = (int(n) for n in counts[0].split()[1:])
    assert quiet == 0, "a flush with nothing to send went to the IOPub thread"
    assert noisy >= 2, "a flush with output must hand it to the IOPub thread and wait"
    assert "sent before the flush returns" in cell.stream()
