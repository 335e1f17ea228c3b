"""The kernel application: an :class:`IPKernelApp` that starts :class:`GovernedKernel`.

The kernel process is configured here, in one place, through traitlets like any ipykernel: the
masking Session (every outgoing message), the masking stdout/stderr class (carry-over, fd output),
the pandas display hook, masked IPython history, masked kernel logs, and the refused debugger.
See docs/kernel-masking.md.
"""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

from ipykernel.kernelapp import IPKernelApp
from traitlets import DottedObjectName, Enum, Type
from traitlets.utils.importstring import import_item

from governed_kernel import comm_ids, display, history
from governed_kernel._version import __version__
from governed_kernel.audit_buffer import new_event_id
from governed_kernel.iopub_pipe import IpcPipeIOPubThread
from governed_kernel.kernel import GovernedKernel
from governed_kernel.outstream import MaskingOutStream
from governed_kernel.session import MaskingSession

DEBUGGER_REFUSED = (
    "The governed kernel does not offer the debugger: it shows variable values without masking. "
    "Use print/display (masked) instead."
)


class GovernedKernelApp(IPKernelApp):
    """Launches the governed kernel; accepts every ipykernel option (``-f CONNECTION_FILE``…)."""

    name = "governed-kernel"
    version = __version__
    description = "The governed IPython kernel (policy gate, output masking, audit)."

    kernel_class = Type(
        GovernedKernel,
        klass=GovernedKernel,
        help=(
            "Always GovernedKernel: not configurable. A kernel_class set in configuration (an IPython "
            "profile's ipython_kernel_config.py, for IPKernelApp or GovernedKernelApp) is ignored, "
            "logged and recorded in the audit log."
        ),
    )
    outstream_class = DottedObjectName(
        "governed_kernel.outstream.MaskingOutStream",
        help="stdout/stderr class; must be MaskingOutStream or a subclass (checked at start).",
    ).tag(config=True)
    history = Enum(
        ["masked", "memory"],
        "masked",
        help="IPython history: 'masked' (SQLite file, rows masked) or 'memory' (nothing on disk, masked).",
    ).tag(config=True)

    ignored_settings: list[str]
    """Configured settings that would have replaced the governed kernel (ignored; recorded at start)."""

    def initialize(self, argv: Any = None) -> None:
        self.ignored_settings = []
        super().initialize(argv)  # type: ignore[no-untyped-call]
        # What the kernel built to start (modules, policy, classifier, masker) lives as long as the
        # process: moved out of the cyclic GC's sight, full collections (IPython runs one when it
        # resets at exit) and the interpreter's teardown skip it. Shutdown takes ~40 ms less.
        gc.freeze()

    def init_path(self) -> None:
        """Under ``python -I`` (how the server starts governed kernels) the working directory goes
        last on ``sys.path``: a notebook's own modules still import, but a file a cell wrote there
        cannot replace a module the kernel (or the next kernel) imports, as it could in front."""
        if not sys.flags.isolated:
            super().init_path()  # type: ignore[no-untyped-call]
        elif "" not in sys.path:
            sys.path.append("")

    def init_iopub(self, context: Any) -> None:
        """ipykernel's, except that with IPC channels the forked processes' pipe is IPC too (no TCP
        listener: :mod:`governed_kernel.iopub_pipe`)."""
        if self.transport != "ipc":
            super().init_iopub(context)  # type: ignore[no-untyped-call]
            return
        import zmq

        self.iopub_socket = context.socket(zmq.XPUB)
        self.iopub_socket.linger = 1000
        secure = getattr(self, "_apply_curve_server_options", None)
        if secure is not None:
            secure(self.iopub_socket)
        self.iopub_port = self._bind_socket(self.iopub_socket, self.iopub_port)  # type: ignore[no-untyped-call]
        self.log.debug("iopub PUB Channel on port: %i", self.iopub_port)
        self.configure_tornado_logger()  # type: ignore[no-untyped-call]
        self.iopub_thread = IpcPipeIOPubThread(
            self.iopub_socket, f"ipc://{self.ip}-fork", pipe=True, session=self.session
        )
        self.iopub_thread.start()  # type: ignore[no-untyped-call]
        self.iopub_socket = self.iopub_thread.background_socket

    def _session_default(self) -> MaskingSession:
        return MaskingSession(parent=self)

    @property
    def masking_session(self) -> MaskingSession:
        if not isinstance(self.session, MaskingSession):  # fail closed: never run unmasked
            kind = type(self.session).__name__
            raise RuntimeError(f"the kernel session must be a MaskingSession, not {kind}")
        return self.session

    def init_io(self) -> None:
        stream_class = import_item(str(self.outstream_class))
        if not (isinstance(stream_class, type) and issubclass(stream_class, MaskingOutStream)):
            raise RuntimeError(f"outstream_class must be a MaskingOutStream, not {self.outstream_class}")
        self.masking_session  # noqa: B018  (checked before any output can be produced)
        super().init_io()  # type: ignore[no-untyped-call]

    def init_kernel(self) -> None:
        if self.history == "memory":
            self.config.HistoryManager.hist_file = ":memory:"
        self.ignored_settings = pinned_overrides(self.config, type(self))
        self.kernel_class = GovernedKernel  # whatever the configuration said (see the trait)
        super().init_kernel()  # type: ignore[no-untyped-call]
        if not isinstance(self.kernel, GovernedKernel):  # fail closed: never run ungoverned
            raise RuntimeError(f"the kernel must be a GovernedKernel, not {type(self.kernel).__name__}")
        if self.ignored_settings:
            record_ignored_settings(self.kernel, self.ignored_settings, self.log)
        refuse_debugger(self.kernel)
        mask_log_handlers(self.masking_session, [self.log, logging.getLogger("tornado"), logging.getLogger()])

    def init_shell(self) -> None:
        super().init_shell()  # type: ignore[no-untyped-call]
        shell = self.shell
        if shell is None:
            return
        session = self.masking_session
        display.install(shell, session)
        history.install(shell, lambda: session.masker)
        comm_ids.install(lambda: session.masker)
        shell.events.register("post_run_cell", lambda _result: session.ledger.run_finishers())
        pin_completion(shell)


def pin_completion(shell: Any) -> None:
    """Completion and inspection never run the user's code: a ``complete_request`` is not a cell, so it
    is not classified or approved. IPython's guarded evaluation is pinned to ``limited``: it reads
    names and evaluates only operations of built-in types known to have no side effects (dict keys
    for ``d['``, a DataFrame's columns), never a method a user's class defines; ``unsafe`` and
    ``dangerous`` (which call anything) cannot be set. jedi is off: its interpreter mode reads live
    objects (properties, descriptors). Pinned after the profile's config is loaded, and kept so."""
    completer = shell.Completer
    completer.evaluation = "limited"
    completer.use_jedi = False
    completer.observe(_refuse_change, names=["evaluation", "use_jedi"])


def _refuse_change(change: Any) -> None:
    owner, name = change["owner"], change["name"]
    pinned = {"evaluation": "limited", "use_jedi": False}[name]
    if change["new"] != pinned:
        owner.set_trait(name, pinned)


PINNED_SETTINGS = ("kernel_class",)
"""Settings of the kernel app that user-writable configuration must not change (the governed kernel)."""


def pinned_overrides(config: Any, app_class: type) -> list[str]:
    """``Section.setting = value`` for every pinned setting found in ``config`` for ``app_class`` or
    one of its bases (``IPKernelApp.kernel_class`` in an IPython profile)."""
    sections = [cls.__name__ for cls in app_class.__mro__]
    found = []
    for section in sections:
        values = config.get(section, {}) if section in config else {}
        for name in PINNED_SETTINGS:
            if name in values:
                found.append(f"{section}.{name} = {values[name]!r}"[:300])
    return found


def record_ignored_settings(kernel: GovernedKernel, settings: list[str], log: Any) -> None:
    """Log the ignored settings and put a ``kernel.config_ignored`` record in the audit buffer: it
    goes with the first cell's start record (or at shutdown)."""
    log.warning("governed kernel: ignored configuration that would replace the governed kernel: %s",
                "; ".join(settings))  # fmt: skip
    governor = kernel.governor
    record = {
        "event_type": "kernel.config_ignored",
        "event_id": new_event_id(),
        "outcome": "failure",
        "claimed_user": governor.claimed_user,
        "notebook": governor._mask(governor.notebook)[:1024],
        "code": "",
        "cell_hash": "",
        "details": governor._mask_data({"os_user": governor.os_user, "ignored": settings}),
    }
    try:
        governor.buffer.append([record])
    except OSError:
        log.exception("governed kernel: could not buffer the record of the ignored configuration")


def refuse_debugger(kernel: Any) -> None:
    """Answer every ``debug_request`` with a failed DAP response; debugpy is never started."""

    async def debug_request(stream: Any, ident: Any, parent: dict[str, Any]) -> None:
        request = parent.get("content") or {}
        content = {
            "type": "response",
            "request_seq": request.get("seq", 0),
            "success": False,
            "command": request.get("command", ""),
            "message": DEBUGGER_REFUSED,
            "body": {},
        }
        kernel.session.send(stream, "debug_reply", content, parent, ident)

    for handlers in (kernel.shell_handlers, kernel.control_handlers):
        if "debug_request" in handlers:
            handlers["debug_request"] = debug_request


class MaskingLogFormatter(logging.Formatter):
    """Formats with the handler's own formatter, then masks (log lines can quote messages)."""

    def __init__(self, inner: logging.Formatter | None, session: MaskingSession) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.session = session

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        try:
            return self.session.mask_text(text)
        except Exception:
            return f"[governed kernel] log record withheld: masking failed ({record.levelname})"


def mask_log_handlers(session: MaskingSession, loggers: list[logging.Logger]) -> None:
    """Wrap the formatter of every handler of ``loggers`` so kernel logs never carry a raw PAN."""
    for logger in loggers:
        for handler in logger.handlers:
            if not isinstance(handler.formatter, MaskingLogFormatter):
                handler.setFormatter(MaskingLogFormatter(handler.formatter, session))


launch_new_instance = GovernedKernelApp.launch_instance
