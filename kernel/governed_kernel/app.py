"""The kernel application: an :class:`IPKernelApp` that starts :class:`GovernedKernel`.

Later wiring (the masking Session, output stream classes, history settings) belongs here, so the
kernel process is configured in one place, through traitlets, like any ipykernel.
"""

from __future__ import annotations

from ipykernel.kernelapp import IPKernelApp
from traitlets import Type

from governed_kernel._version import __version__
from governed_kernel.kernel import GovernedKernel


class GovernedKernelApp(IPKernelApp):
    """Launches the governed kernel; accepts every ipykernel option (``-f CONNECTION_FILE``…)."""

    name = "governed-kernel"
    version = __version__
    description = "The governed IPython kernel (policy gate, output masking, audit)."

    kernel_class = Type(  # type: ignore[assignment]
        GovernedKernel,
        klass="ipykernel.kernelbase.Kernel",
        help="The kernel class; must be GovernedKernel or a subclass of it.",
    ).tag(config=True)


launch_new_instance = GovernedKernelApp.launch_instance
