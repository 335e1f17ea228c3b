"""The ``governed_server`` ExtensionApp: configuration traits and wiring of handlers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Unicode, default

from governed_kernel import KERNEL_NAME
from governed_kernel._version import __version__
from governed_kernel.resources import default_policy_path
from governed_server import EXTENSION_NAME
from governed_server.handlers import default_handlers
from governed_server.paths import default_db_url


class GovernedServerApp(ExtensionApp):
    """Serves the governance API under ``/governance/api/`` inside jupyter_server."""

    name = EXTENSION_NAME
    version = __version__
    description = "Governance API, store and data-path guard for the governed kernel."
    load_other_extensions = True

    policy_path = Unicode(
        help="Policy file (YAML). Default: $GOVERNED_POLICY, else the bundled policies/pci-dss.yaml.",
    ).tag(config=True)

    db_url = Unicode(
        help=(
            "SQLAlchemy URL of the governance store. Default: $GOVERNED_DB_URL, else an SQLite file "
            "in the Jupyter data dir (<jupyter data dir>/governance/governance.sqlite)."
        ),
    ).tag(config=True)

    set_default_kernel = Bool(
        True,
        help=(
            "Make the governed kernel the server's default kernel, unless "
            "MappingKernelManager.default_kernel_name is configured explicitly."
        ),
    ).tag(config=True)

    @default("policy_path")
    def _default_policy_path(self) -> str:
        return str(default_policy_path())

    @default("db_url")
    def _default_db_url(self) -> str:
        return default_db_url()

    def initialize_settings(self) -> None:
        self.settings["governed_server"] = self
        serverapp = self.serverapp
        assert serverapp is not None, "initialize_settings runs after the extension is linked to a server"
        if self.set_default_kernel and not self._default_kernel_configured(serverapp.config):
            serverapp.kernel_manager.default_kernel_name = KERNEL_NAME
        self.log.info("governed_server %s: policy %s", __version__, self.policy_path)

    @staticmethod
    def _default_kernel_configured(config: Any) -> bool:
        return any(
            "default_kernel_name" in config.get(section, {})
            for section in ("MappingKernelManager", "MultiKernelManager", "AsyncMappingKernelManager")
        )

    def initialize_handlers(self) -> None:
        self.handlers.extend(default_handlers())

    @property
    def policy_file(self) -> Path:
        return Path(self.policy_path).expanduser()
