"""A small jupyter_server extension that adds a route serving files raw (``/raw/<path>``).

It stands for any extension that serves file content without the outbound guard: a tornado
``StaticFileHandler`` subclass on the server's root dir. Used by ``test_route_check.py``.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web


class RawFileHandler(JupyterHandler, web.StaticFileHandler):
    """Serves any file under the root dir as it is on disk."""

    @web.authenticated
    def get(self, path: str, include_body: bool = True) -> Any:  # type: ignore[override]
        return web.StaticFileHandler.get(self, path, include_body=include_body)

    @web.authenticated
    def head(self, path: str) -> Any:  # type: ignore[override]
        return web.StaticFileHandler.get(self, path, include_body=False)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "fake_file_route"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    pattern = url_path_join(serverapp.base_url, r"/raw/(.*)")
    serverapp.web_app.add_handlers(".*$", [(pattern, RawFileHandler, {"path": serverapp.root_dir})])
