"""The governed Jupyter kernel: an IPython kernel that classifies, gates, masks and audits every cell.

Modules here that the server also needs (masking, policy) import nothing from Jupyter, so the
kernel, the server's data-path guard and the CLI share one implementation.
"""

from governed_kernel._version import __version__

KERNEL_NAME = "governed-python"
"""The kernelspec name: a stable contract that notebooks and CI refer to."""

__all__ = ["KERNEL_NAME", "__version__"]
