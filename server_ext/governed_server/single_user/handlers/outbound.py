"""The outbound guard's handlers: jupyter_server's and JupyterLab's file routes, masking what they serve.

Each class subclasses the handler it replaces and keeps all of its logic; what changes is what the
parent reads or writes:

- handlers that read through the contents manager (the contents API and its checkpoints,
  nbconvert, ``FilesHandler``) see it through :class:`GuardedContents`, which masks every model it
  returns (``OutboundGuard.mask_model``), checks saves (409 over card numbers the client only ever
  saw masked) and keeps the save ledger;
- tornado static handlers (``/files/``, kernelspec resources) serve the masked bytes of the file
  (:class:`MaskedStaticMixin`: size, ranges, ETag and 304s all from those bytes);
- JSON and converted output (nbconvert, workspaces, settings) is masked in ``finish``.

:func:`guard_routes` puts these classes in place of the originals in the server's routing table, in
every router (so the base URL, each route's arguments and every extension's copy of a route stay
as they were) and returns the table for :mod:`governed_server.single_user.routes` to judge.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator
from typing import Any, ClassVar, Protocol, TypeVar

import nbformat
from anyio.to_thread import run_sync
from jupyter_client.jsonutil import json_default
from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import AuthenticatedFileHandler
from jupyter_server.files.handlers import FilesHandler
from jupyter_server.kernelspecs.handlers import KernelSpecResourceHandler
from jupyter_server.nbconvert.handlers import NbconvertFileHandler, NbconvertPostHandler
from jupyter_server.services.contents.handlers import CheckpointsHandler, ContentsHandler
from jupyterlab_server.settings_handler import SettingsHandler
from jupyterlab_server.workspaces_handler import WorkspacesHandler
from tornado import web

from governed_kernel.masking import MaskReport, mask_file_bytes
from governed_server.single_user.outbound import (
    MIB,
    Fingerprint,
    MaskedFile,
    OutboundGuard,
    OutboundRefused,
    save_refusal,
)
from governed_server.single_user.routes import Route, walk

log = logging.getLogger("governed_server")
T = TypeVar("T")
THREAD_ABOVE = 1 * MIB
"""Content larger than this is masked in a worker thread, off the event loop."""


class OutboundHost(Protocol):
    """What a guarded handler needs of the extension (``settings["governed_server"]``)."""

    outbound_guard: OutboundGuard | None

    def record_outbound_event(
        self, user: str, route: str, path: str, kinds: dict[str, int], *, refused: bool = False
    ) -> None: ...


async def _finish(result: Any) -> Any:
    """Await what a parent's handler method returned (tornado types them as maybe-awaitable)."""
    if result is not None:
        return await result
    return None


def _size(model: Any) -> int:
    size = model.get("size") if isinstance(model, dict) else None
    return size if isinstance(size, int) else 0


def _http_error(status: int, message: str) -> web.HTTPError:
    """An HTTPError whose message reaches the client as is (APIHandler sends ``log_message``
    unformatted; tornado's log formats it: a literal ``%`` is doubled for that)."""
    return web.HTTPError(status, message.replace("%", "%%"))


def _refused(error: OutboundRefused) -> web.HTTPError:
    return _http_error(error.status, error.message)


class OutboundMixin:
    """What every guarded handler shares: the guard, the user, the audit record."""

    outbound_route: ClassVar[str] = ""
    settings: dict[str, Any]
    current_user: Any

    @property
    def governed_app(self) -> OutboundHost | None:
        return self.settings.get("governed_server")

    @property
    def outbound(self) -> OutboundGuard:
        guard: OutboundGuard | None = getattr(self.governed_app, "outbound_guard", None)
        if guard is None:  # the extension is half set up: serve nothing rather than unmasked
            raise web.HTTPError(503, "not served: the server's outbound guard is not running")
        return guard

    @property
    def outbound_user(self) -> str:
        return str(getattr(self.current_user, "username", None) or "unknown")

    async def off_loop(self, size: int, work: Callable[[], T]) -> T:
        """Run ``work`` in a worker thread when the content is large (the event loop serves others)."""
        return await run_sync(work) if size > THREAD_ABOVE else work()

    def record_masked(self, path: str, report: MaskReport, detail: str = "") -> None:
        """Log and audit that content left this route masked (never the digits)."""
        guard = self.outbound
        shown = guard.masked_path(path.strip("/"))
        where = f"{self.outbound_route}{' ' + detail if detail else ''}"
        log.info("governed_server outbound guard: %s %s served masked to %s (%s)",
                 where, shown, self.outbound_user, report.summary())  # fmt: skip
        app = self.governed_app
        if app is not None:
            app.record_outbound_event(self.outbound_user, where, shown, dict(report.kinds))


class GuardedContents:
    """The contents manager as a guarded handler sees it (everything else passes through)."""

    def __init__(self, manager: Any, handler: ContentsMixin) -> None:
        self._manager = manager
        self._handler = handler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)

    async def get(self, path: str, content: bool = True, type: str | None = None, **kwargs: Any) -> Any:
        model = await ensure_async(self._manager.get(path, content=content, type=type, **kwargs))
        return await self._handler.outbound_model(model, path)

    async def save(self, model: dict[str, Any], path: str = "") -> Any:
        await self._handler.check_save(path)
        result = await ensure_async(self._manager.save(model, path))
        self._handler.saved(path, result)
        return await self._handler.outbound_model(result, path)

    async def new(self, model: dict[str, Any] | None = None, path: str = "") -> Any:
        await self._handler.check_save(path)
        result = await ensure_async(self._manager.new(model, path))
        self._handler.saved(path, result)
        return await self._handler.outbound_model(result, path)

    async def copy(self, from_path: str, to_path: str | None = None) -> Any:
        result = await ensure_async(self._manager.copy(from_path, to_path))
        return await self._handler.outbound_model(result, str(result.get("path", "")))

    async def update(self, model: dict[str, Any], path: str) -> Any:
        result = await ensure_async(self._manager.update(model, path))
        self._handler.outbound.ledger.move(path, str(result.get("path", path)))
        return await self._handler.outbound_model(result, str(result.get("path", path)))

    async def delete(self, path: str) -> None:
        await ensure_async(self._manager.delete(path))
        self._handler.outbound.ledger.forget(None, path)

    async def list_checkpoints(self, path: str) -> Any:
        return self._handler.outbound_data(await ensure_async(self._manager.list_checkpoints(path)), path)

    async def create_checkpoint(self, path: str) -> Any:
        return self._handler.outbound_data(await ensure_async(self._manager.create_checkpoint(path)), path)


def _plain_json(data: Any) -> Any:
    """``data`` as the handler will write it (datetimes as ISO strings), so it can be masked."""
    return json.loads(json.dumps(data, default=json_default))


class ContentsMixin(OutboundMixin):
    """Handlers that read through the contents manager get :class:`GuardedContents`."""

    notebook_nodes: ClassVar[bool] = False
    """Hand masked notebooks back as nbformat's NotebookNode (nbconvert needs them)."""

    @property
    def contents_manager(self) -> Any:
        return GuardedContents(self.settings["contents_manager"], self)

    async def outbound_model(self, model: Any, path: str) -> Any:
        """``model`` masked; a model that masking changed is recorded, and read-only."""
        if not isinstance(model, dict) or model.get("content") is None:
            return model
        guard = self.outbound
        try:
            masked, report = await self.off_loop(_size(model), lambda: guard.mask_model(model))
        except OutboundRefused as error:
            log.error("governed_server outbound guard: %s %s not served: %s",
                      self.outbound_route, guard.masked_path(path), error.message)  # fmt: skip
            raise _refused(error) from None
        if not report:
            guard.ledger.record(self.outbound_user, path, Fingerprint.of(model))
            return model
        guard.ledger.forget(self.outbound_user, path)  # this user now holds a masked copy
        self.record_masked(path, report)
        if self.notebook_nodes and masked.get("type") == "notebook":  # exporters read attributes
            masked = {**masked, "content": nbformat.from_dict(masked["content"])}  # type: ignore[no-untyped-call]
        return masked

    def outbound_data(self, data: Any, path: str) -> Any:
        try:
            masked, report = self.outbound.mask_data(_plain_json(data))
        except OutboundRefused as error:
            raise _refused(error) from None
        if report:
            self.record_masked(path, report)
        return masked

    async def check_save(self, path: str) -> None:
        """409 when saving over ``path`` would overwrite card numbers this user only saw masked."""
        manager = self.settings["contents_manager"]
        if not await ensure_async(manager.file_exists(path)):
            return  # a new path (Save As): nothing to lose
        guard, user = self.outbound, self.outbound_user
        meta = await ensure_async(manager.get(path, content=False))
        if guard.ledger.matches(user, path, Fingerprint.of(meta)):
            return  # as this user last wrote it or read it unmasked
        try:
            disk = await ensure_async(manager.get(path, content=True))
        except web.HTTPError:  # e.g. a notebook that is not valid JSON: judge its bytes
            disk = await ensure_async(manager.get(path, content=True, type="file"))
        try:
            _, report = await self.off_loop(_size(disk), lambda: guard.mask_model(disk))
        except OutboundRefused as error:
            raise _refused(error) from None
        if not report:
            return
        shown = guard.masked_path(path.strip("/"))
        log.warning("governed_server outbound guard: refused a save by %s over %s (%s on disk)",
                    user, shown, report.summary())  # fmt: skip
        app = self.governed_app
        if app is not None:
            app.record_outbound_event(user, f"{self.outbound_route} save", shown, dict(report.kinds),
                                      refused=True)  # fmt: skip
        raise _http_error(409, save_refusal(shown))

    def saved(self, path: str, result: Any) -> None:
        if isinstance(result, dict):
            self.outbound.ledger.record(self.outbound_user, path, Fingerprint.of(result))


class GuardedContentsHandler(ContentsMixin, ContentsHandler):
    """``/api/contents/<path>``: models masked (notebooks, text, base64); saves checked."""

    outbound_route = "contents API"


class GuardedCheckpointsHandler(ContentsMixin, CheckpointsHandler):
    """``/api/contents/<path>/checkpoints``: what a contents manager says about them, masked."""

    outbound_route = "contents checkpoints"


class GuardedContentsFilesHandler(ContentsMixin, FilesHandler):
    """``/files/`` when the contents manager is not on disk (jupyter_server's ``FilesHandler``)."""

    outbound_route = "files"


class MaskedOutputMixin(OutboundMixin):
    """Converted output (nbconvert) masked as text before it is written."""

    outbound_path: str = ""

    def finish(self, chunk: Any = None) -> Any:
        if isinstance(chunk, str) and chunk:
            try:
                chunk, report = self.outbound.masker.mask_text(chunk)
            except Exception as error:  # fail closed: no output rather than unmasked output
                log.error("governed_server outbound guard: %s output dropped: masking failed (%s)",
                          self.outbound_route, type(error).__name__)  # fmt: skip
                raise _http_error(500, OutboundGuard.masking_failed(error)) from None
            if report:
                self.record_masked(self.outbound_path, report, "output")
        return super().finish(chunk)  # type: ignore[misc]


class GuardedNbconvertFileHandler(MaskedOutputMixin, ContentsMixin, NbconvertFileHandler):
    """``/nbconvert/<format>/<path>``: the notebook masked before conversion, the output after."""

    outbound_route = "nbconvert"
    notebook_nodes = True

    @web.authenticated
    @authorized
    async def get(self, format: str, path: str) -> Any:
        self.outbound_path = path
        return await _finish(super().get(format, path))


class GuardedNbconvertPostHandler(MaskedOutputMixin, NbconvertPostHandler):
    """``POST /nbconvert/<format>``: the posted notebook masked before conversion, the output after."""

    outbound_route = "nbconvert"

    def get_json_body(self) -> Any:
        body = super().get_json_body()
        if isinstance(body, dict) and isinstance(body.get("content"), dict):
            name = str(body.get("name") or "notebook.ipynb")
            self.outbound_path = name
            model = {"type": "notebook", "format": "json", "name": name, "content": body["content"]}
            try:
                masked, report = self.outbound.mask_model(model)
            except OutboundRefused as error:
                raise _refused(error) from None
            if report:
                self.record_masked(name, report, "posted notebook")
                body = {**body, "content": masked["content"]}
        return body


class MaskedStaticMixin(OutboundMixin):
    """A tornado static handler serving the masked bytes of the file (see ``OutboundGuard.masked_file``).

    tornado computes ``Content-Length``, ``Content-Range`` (single ranges; others are served whole)
    and 304s from :meth:`get_content_size`, :meth:`get_content` and :meth:`compute_etag`: all three
    read the same masked bytes, so a range never cuts the original file.
    """

    outbound_file: MaskedFile | None = None
    root: str
    path: str
    request: Any

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        path: str | None = super().validate_absolute_path(root, absolute_path)  # type: ignore[misc]
        if path is not None:
            self.outbound_file = self._masked(path)
        return path

    def _masked(self, path: str) -> MaskedFile:
        guard = self.outbound
        try:
            return guard.masked_file(path)
        except OutboundRefused as error:
            log.error("governed_server outbound guard: %s %s not served: %s",
                      self.outbound_route, guard.masked_path(self.path), error.message)  # fmt: skip
            raise _refused(error) from None
        except OSError as error:
            reason = type(error).__name__
            raise web.HTTPError(403, "not served: the file could not be read (%s)", reason) from None

    def _served(self) -> MaskedFile:
        if self.outbound_file is None:  # tornado asked before validating: never read the file raw
            raise web.HTTPError(500, "not served: the outbound guard did not see this file")
        return self.outbound_file

    def get_content_size(self) -> int:
        return len(self._served().data)

    def get_content(
        self, abspath: str, start: int | None = None, end: int | None = None
    ) -> Generator[bytes, None, None]:
        data = self._served().data
        stop = len(data) if end is None else end
        position = 0 if start is None else start
        while position < stop:
            yield data[position : min(stop, position + 64 * 1024)]
            position += 64 * 1024

    def compute_etag(self) -> str | None:
        return f'"{self._served().etag}"'

    async def prewarm(self, url_path: str) -> None:
        """Mask a large file in a worker thread before tornado asks for it (errors come later,
        in order, from the synchronous path)."""
        try:
            absolute = self.get_absolute_path(self.root, self.parse_url_path(url_path))  # type: ignore[attr-defined]
            guard = self.outbound
            if guard.cached_file(absolute) is None:
                await run_sync(lambda: guard.masked_file(absolute))
        except Exception:
            return

    def record_served(self, include_body: bool) -> None:
        served = self.outbound_file
        status = self.get_status()  # type: ignore[attr-defined]
        if served is None or not served.changed or not include_body or status not in (200, 206):
            return
        detail = []
        if self.request.headers.get("Range"):
            detail.append(f"range {self.request.headers['Range'][:40]}")
        if self.get_argument("download", None):  # type: ignore[attr-defined]
            detail.append("download")
        # A viewer's ranges and revalidations of one masked file are one record (per minute).
        if self.outbound.first_time(
            (self.outbound_user, self.outbound_route, self.path, served.etag, *detail)
        ):
            self.record_masked(self.path, served.report, ", ".join(detail))


class GuardedFileHandler(MaskedStaticMixin, AuthenticatedFileHandler):  # type: ignore[misc]
    """``/files/<path>`` (and JupyterLab's Download, ``?download=1``): the masked file."""

    outbound_route = "files"

    @web.authenticated
    @authorized
    async def get(self, path: str, include_body: bool = True) -> None:  # type: ignore[override]
        await self.prewarm(path)
        await _finish(super().get(path, include_body=include_body))
        self.record_served(include_body)


class GuardedKernelSpecResourceHandler(MaskedStaticMixin, KernelSpecResourceHandler):
    """``/kernelspecs/<name>/<file>``: a user's kernelspec directory is a place a cell can write."""

    outbound_route = "kernelspec resources"

    @web.authenticated
    @authorized
    async def get(self, kernel_name: str, path: str, include_body: bool = True) -> None:  # type: ignore[override]
        await _finish(super().get(kernel_name, path, include_body=include_body))
        self.record_served(include_body)

    def finish(self, chunk: Any = None) -> Any:
        if isinstance(chunk, bytes) and self.outbound_file is None:  # a spec manager's own resource
            try:
                chunk, report = mask_file_bytes(chunk, self.path or "", self.outbound.masker)
            except Exception as error:
                raise _http_error(500, OutboundGuard.masking_failed(error)) from None
            if report:
                self.record_masked(self.path or "", report)
        return super().finish(chunk)


class MaskedJSONMixin(OutboundMixin):
    """A JSON API whose replies come from files a cell can write (workspaces, user settings)."""

    def finish(self, chunk: Any = None) -> Any:
        if isinstance(chunk, (str, bytes)) and chunk:
            try:
                data = json.loads(chunk)
            except ValueError:
                data = None
            if data is not None:
                try:
                    masked, report = self.outbound.mask_data(data)
                except OutboundRefused as error:
                    raise _refused(error) from None
                if report:
                    self.record_masked(self.request.path, report)  # type: ignore[attr-defined]
                    chunk = json.dumps(masked)
        return super().finish(chunk)  # type: ignore[misc]


class GuardedWorkspacesHandler(MaskedJSONMixin, WorkspacesHandler):
    """``/lab/api/workspaces``: workspace files (the kernel can write them), masked."""

    outbound_route = "lab workspaces"


class GuardedSettingsHandler(MaskedJSONMixin, SettingsHandler):
    """``/lab/api/settings``: user-settings files (the kernel can write them), masked."""

    outbound_route = "lab settings"


TWINS: dict[type[Any], type[Any]] = {
    ContentsHandler: GuardedContentsHandler,
    CheckpointsHandler: GuardedCheckpointsHandler,
    AuthenticatedFileHandler: GuardedFileHandler,
    FilesHandler: GuardedContentsFilesHandler,
    NbconvertFileHandler: GuardedNbconvertFileHandler,
    NbconvertPostHandler: GuardedNbconvertPostHandler,
    KernelSpecResourceHandler: GuardedKernelSpecResourceHandler,
    WorkspacesHandler: GuardedWorkspacesHandler,
    SettingsHandler: GuardedSettingsHandler,
}
"""Each file-serving handler class of jupyter_server and JupyterLab → the guarded class for it."""


def guarded_classes() -> set[type[Any]]:
    return set(TWINS.values())


def guard_routes(web_app: Any) -> list[Route]:
    """Put the guarded classes in place of the originals (exact classes only: a subclass may serve
    differently, so it is left for :func:`governed_server.single_user.routes.classify` to judge) and return
    the routing table in matching order."""
    routes: list[Route] = []
    for rule, route in walk(web_app.default_router):
        twin = TWINS.get(route.handler)
        if twin is not None:
            rule.target = twin
            route = Route(route.pattern, twin)
        routes.append(route)
    return routes
