"""``python -m governed_server.cli``: the same as ``jupyter governance``."""

from governed_server.cli import run

run()
