"""Which of the server's routes serve file content, and whether the outbound guard covers them.

The server is the boundary: every path out must be masked. jupyter_server's own file routes are
guarded by this project (``handlers/outbound.py``), but any extension can add a route that serves
files (a tornado ``StaticFileHandler``, a proxy to a local web server, a notebook renderer...).
At start the whole routing table is walked (:func:`walk`, in matching order, every extension's rules
included) and each route judged (:func:`classify`): guarded by us, a static asset handler of the
installation (allow list), unreachable behind an earlier guarded rule with the same pattern,
accepted explicitly by the operator, not a file route, or **unguarded**. In enforce mode one
unguarded route makes the server refuse to start (:func:`refusal`). Pure: no server needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tornado.routing import Router
from tornado.web import StaticFileHandler

ACCEPT_SETTING = "GovernedServerApp.accept_unguarded_routes"

ASSET_HANDLERS: dict[str, str] = {
    "jupyter_server.base.handlers.FileFindHandler": "static assets of the installation (/static/, lab "
    "static, labextensions)",
    "jupyter_server.base.handlers.PublicStaticFileHandler": "robots.txt and favicon",
    "jupyter_server.services.api.handlers.APISpecHandler": "jupyter_server's own API spec",
    "jupyterlab_server.themes_handler.ThemesHandler": "JupyterLab themes",
}
"""Handlers that serve only the installation's own static assets (exact classes, not subclasses).
They read directories the kernel must not be able to write (the kernel jail keeps the installation
and the Jupyter data dirs read-only); they are not masked (minified code must stay byte for byte)."""

KNOWN_FILE_SERVING: dict[str, str] = {
    "jupyter_server.services.contents.handlers.ContentsHandler": "the contents API",
    "jupyter_server.services.contents.handlers.CheckpointsHandler": "contents checkpoints",
    "jupyter_server.base.handlers.AuthenticatedFileHandler": "files from disk (/files/)",
    "jupyter_server.files.handlers.FilesHandler": "files through the contents manager (/files/)",
    "jupyter_server.nbconvert.handlers.NbconvertFileHandler": "notebooks converted by nbconvert",
    "jupyter_server.nbconvert.handlers.NbconvertPostHandler": "notebooks converted by nbconvert",
    "jupyter_server.kernelspecs.handlers.KernelSpecResourceHandler": "kernelspec resource files",
    "jupyterlab_server.workspaces_handler.WorkspacesHandler": "JupyterLab workspace files",
    "jupyterlab_server.settings_handler.SettingsHandler": "JupyterLab user-settings files",
    "jupyter_collaboration.handlers.YDocWebSocketHandler": "shared documents (real-time collaboration)",
    "jupyter_server_ydoc.handlers.YDocWebSocketHandler": "shared documents (real-time collaboration)",
    "jupyter_archive.handlers.DownloadArchiveHandler": "directories as archives",
    "voila.handler.VoilaHandler": "notebooks rendered by Voilà",
}
"""Classes (and their subclasses) known to serve file content. Ours subclass some of them."""

KNOWN_FILE_SERVING_PACKAGES: dict[str, str] = {
    "jupyter_server_proxy.": "whatever a local web server serves (a cell can start one on any file)",
    "jupyter_server_documents.": "shared documents",
    "nbdime.": "notebooks and their diffs",
    "jupyterlab_git.": "file content at git revisions",
    "voila.": "notebooks rendered by Voilà",
}
"""Packages whose routes serve file content (any handler class defined in them)."""

Status = Literal["guarded", "asset", "shadowed", "accepted", "unguarded", "other"]


@dataclass(frozen=True)
class Route:
    """One leaf rule of the routing table: its URL regex (without tornado's ``$``) and handler."""

    pattern: str
    handler: type[Any]

    @property
    def handler_name(self) -> str:
        return qualified_name(self.handler)


@dataclass(frozen=True)
class Verdict:
    route: Route
    status: Status
    why: str = ""


def qualified_name(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def walk(router: Any) -> Iterator[tuple[Any, Route]]:
    """Every leaf rule under ``router`` (tornado's Application.default_router) in matching order,
    as (the tornado Rule, a :class:`Route`); rules whose matcher has no path regex are skipped."""
    for rule in getattr(router, "rules", []):
        target = rule.target
        if isinstance(target, Router):
            yield from walk(target)
            continue
        regex = getattr(rule.matcher, "regex", None)
        if regex is None or not isinstance(target, type):
            continue
        pattern = regex.pattern[:-1] if regex.pattern.endswith("$") else regex.pattern
        yield rule, Route(pattern, target)


def file_serving_reason(cls: type[Any]) -> str | None:
    """Why ``cls`` serves file content (None when nothing says it does)."""
    name = qualified_name(cls)
    for prefix, why in KNOWN_FILE_SERVING_PACKAGES.items():
        if name.startswith(prefix):
            return why
    for base in cls.__mro__:
        known = KNOWN_FILE_SERVING.get(qualified_name(base))
        if known is not None:
            return known if base is cls else f"{known} (a subclass of {qualified_name(base)})"
    if issubclass(cls, StaticFileHandler):
        return "files from disk (a tornado StaticFileHandler)"
    return None


def classify(
    routes: Iterable[Route], guarded: Iterable[type[Any]], accepted: Iterable[str] = (), base_url: str = "/"
) -> list[Verdict]:
    """Judge each route, in matching order (see the module). ``guarded``: the exact handler classes
    that mask what they serve; ``accepted``: the operator's explicit list (patterns as printed, with
    or without the base URL, or handler class names)."""
    ours = set(guarded)
    accept = {entry.strip().removesuffix("$") for entry in accepted if entry.strip()}
    prefix = "/" + base_url.strip("/") if base_url.strip("/") else ""
    seen_guarded: set[str] = set()
    verdicts: list[Verdict] = []
    for route in routes:
        if route.handler in ours:
            seen_guarded.add(route.pattern)
            verdicts.append(Verdict(route, "guarded"))
            continue
        if route.handler_name in ASSET_HANDLERS:  # the exact class: a subclass has another name
            verdicts.append(Verdict(route, "asset", ASSET_HANDLERS[route.handler_name]))
            continue
        why = file_serving_reason(route.handler)
        if why is None:
            verdicts.append(Verdict(route, "other"))
        elif route.pattern in seen_guarded:
            verdicts.append(Verdict(route, "shadowed", why))
        elif accept & _names(route, prefix):
            verdicts.append(Verdict(route, "accepted", why))
        else:
            verdicts.append(Verdict(route, "unguarded", why))
    return verdicts


def _names(route: Route, prefix: str) -> set[str]:
    names = {route.pattern, route.handler_name}
    if prefix and route.pattern.startswith(prefix + "/"):
        names.add(route.pattern[len(prefix) :])
    return names


def refusal(unguarded: list[Verdict], mode: str) -> str:
    """The error that stops the server: each route, what it serves, and what to do."""
    lines = [
        f"governed_server: refusing to start (policy mode: {mode}): "
        f"{len(unguarded)} route(s) serve file content that the outbound guard does not mask:"
    ]
    for verdict in unguarded:
        route = verdict.route
        lines.append(f"  - {route.pattern}  ({route.handler_name}: {verdict.why})")
    example = ", ".join(repr(v.route.pattern) for v in unguarded)
    lines.append(
        "Disable the extension that adds them (jupyter server extension disable <name>), or accept "
        f"each one explicitly, knowing that what it serves is not masked: {ACCEPT_SETTING} = [{example}] "
        "in jupyter_server_config.py (a pattern as printed, or the handler class name)."
    )
    return "\n".join(lines)
