"""The ``governed_server`` ExtensionApp: configuration traits, service wiring, kernel credentials."""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from collections import Counter
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from sqlalchemy.engine import make_url
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Dict, Float, Int, List, Unicode, default

from governed_kernel import KERNEL_NAME
from governed_kernel._version import __version__
from governed_kernel.masking import Masker
from governed_kernel.resources import POLICY_ENV, default_policy_path
from governed_server import EXTENSION_NAME, ids
from governed_server.credentials import SERVICE_URL_ENV, TOKEN_ENV, USER_ENV
from governed_server.guard import GuardedKernelConnection
from governed_server.handlers import API_PREFIX, default_handlers
from governed_server.handlers.outbound import guard_routes, guarded_classes
from governed_server.handlers.own_kernels import ownership_handlers
from governed_server.outbound import DEFAULT_CACHE_MB, DEFAULT_MAX_FILE_MB, MIB, OutboundGuard
from governed_server.ownership import KernelOwners
from governed_server.paths import default_db_url, default_store_dir
from governed_server.routes import classify, refusal
from governed_server.service import GovernanceService, ServiceSettings

EXPIRY_CHECK_MS = 5_000


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

    checkpoint_dir = Unicode(
        help=(
            "Directory that receives a copy of every signed audit checkpoint, outside the database, so "
            "truncation can be proven. Default: 'checkpoints' beside the SQLite file, or in the "
            "governance data dir for PostgreSQL. In production: another machine or write-once storage."
        ),
    ).tag(config=True)

    signing_key_path = Unicode(
        help="Ed25519 private key that signs audit checkpoints (created on first use, mode 0600).",
    ).tag(config=True)

    sqlite_sync_interval = Float(
        0.1,
        min=0.0,
        help=(
            "SQLite store only: seconds within which a commit reaches the disk (group commit). Commits "
            "survive a crash of any process at once; a power cut or OS crash can lose at most this "
            "much of the newest records. 0 = fsync at every commit (slower cells). PostgreSQL follows "
            "its own synchronous_commit setting."
        ),
    ).tag(config=True)

    groups = Dict(
        value_trait=List(Unicode()),
        help=(
            "Group name → usernames, for policies that name groups when the identity provider does not "
            "report groups (JupyterHub does). Example: {'card-data-approvers': ['alice']}."
        ),
    ).tag(config=True)

    kernel_user = Unicode(
        help=(
            "The user a kernel acts for when it is started outside a user's request. Default: "
            "$JUPYTERHUB_USER, else the operating-system user running the server."
        ),
    ).tag(config=True)

    server_id = Unicode(help="Name of this server in audit records. Default: the host name.").tag(config=True)

    set_default_kernel = Bool(
        True,
        help=(
            "Make the governed kernel the server's default kernel, unless "
            "MappingKernelManager.default_kernel_name is configured explicitly."
        ),
    ).tag(config=True)

    guard_websocket = Bool(
        True,
        help=(
            "Mask every kernel message again in the server, on its way to the browser (the data-path "
            "guard), unless ServerApp.kernel_websocket_connection_class is configured to another class."
        ),
    ).tag(config=True)

    guard_file_routes = Bool(
        True,
        help=(
            "The outbound guard: mask card numbers in file content on every route that serves it (the "
            "contents API, /files/, nbconvert, kernelspec resources, JupyterLab workspaces and settings), "
            "refuse saves over card numbers the client only saw masked, and, in enforce mode, refuse to "
            "start when another route serves files. False turns all of that off (a logged, explicit risk)."
        ),
    ).tag(config=True)

    accept_unguarded_routes = List(
        Unicode(),
        help=(
            "Routes that serve file content without the outbound guard, accepted explicitly so that an "
            "enforce-mode server starts anyway: each a route pattern as the start-up error prints it "
            "(with or without the base URL) or a handler class name ('package.module.Class'). What "
            "those routes serve is NOT masked."
        ),
    ).tag(config=True)

    outbound_max_file_mb = Int(
        DEFAULT_MAX_FILE_MB,
        min=1,
        help=(
            "Largest file (MiB) that file routes mask and serve; a larger one is refused (413) rather "
            "than served unmasked. Masking holds the file and its masked copy in memory."
        ),
    ).tag(config=True)

    outbound_cache_mb = Int(
        DEFAULT_CACHE_MB,
        min=0,
        help="Memory (MiB) for masked files kept between requests (ranges, revalidation); 0: none.",
    ).tag(config=True)

    approval_wait_seconds = Float(
        25.0, help="Longest single long-poll of a kernel waiting for a decision."
    ).tag(config=True)

    service: GovernanceService | None = None
    unavailable_reason: str = ""
    guard_masker: Masker | None = None
    outbound_guard: OutboundGuard | None = None
    kernel_owners: KernelOwners | None = None

    @default("policy_path")
    def _default_policy_path(self) -> str:
        return str(default_policy_path())

    @default("db_url")
    def _default_db_url(self) -> str:
        return default_db_url()

    @default("checkpoint_dir")
    def _default_checkpoint_dir(self) -> str:
        try:
            url = make_url(self.db_url)
        except Exception:
            return str(default_store_dir() / "checkpoints")
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return str(Path(str(url.database)).expanduser().parent / "checkpoints")
        return str(default_store_dir() / "checkpoints")

    @default("signing_key_path")
    def _default_signing_key_path(self) -> str:
        return str(default_store_dir() / "audit-signing-key.pem")

    @default("kernel_user")
    def _default_kernel_user(self) -> str:
        return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()

    @default("server_id")
    def _default_server_id(self) -> str:
        return socket.gethostname()

    @property
    def policy_file(self) -> Path:
        return Path(self.policy_path).expanduser()

    def initialize_settings(self) -> None:
        self.settings["governed_server"] = self
        serverapp = self.serverapp
        assert serverapp is not None, "initialize_settings runs after the extension is linked to a server"
        if self.set_default_kernel and not self._default_kernel_configured(serverapp.config):
            serverapp.kernel_manager.default_kernel_name = KERNEL_NAME
        self.start_service()
        ids.install(serverapp.kernel_manager, self.service.masker if self.service else Masker())
        self.install_ownership()
        self.install_guard()
        self.install_outbound()

    def install_ownership(self) -> None:
        """Each person works in the kernels they started, unless the policy shares kernels."""
        serverapp = self.serverapp
        assert serverapp is not None
        named = getattr(serverapp.identity_provider, "is_named", None)
        self.kernel_owners = KernelOwners(named=named if callable(named) else None)
        # Read at each request: the policy in force decides (no service: not shared, fail closed).
        self.kernel_owners.share_kernels = lambda: bool(
            self.service is not None and self.service.policy.sessions.share_kernels
        )
        self.kernel_owners.install(serverapp.kernel_manager, serverapp.session_manager)

    def install_guard(self) -> None:
        """Route kernel websockets through the masking connection class (unless configured otherwise)."""
        if not self.guard_websocket:
            return
        # self.settings is copied over the server's settings after initialize_settings.
        current = self.settings.get("kernel_websocket_connection_class")
        if current is not None and current is not ZMQChannelsWebsocketConnection:
            self.log.warning("governed_server: %s is configured as the kernel websocket class; "
                             "the data-path guard is not installed", current)  # fmt: skip
            return
        self.settings["kernel_websocket_connection_class"] = GuardedKernelConnection
        self.guard_masker = self.service.masker if self.service is not None else Masker()

    def install_outbound(self) -> None:
        """Mask file content on every route that serves it (``handlers/outbound.py``).

        jupyter_server's routes are in the table already; extensions loaded after this one add
        theirs later, so the whole table is guarded and judged again by :meth:`check_routes`, which
        runs first thing on the event loop: before the server binds its port.
        """
        serverapp = self.serverapp
        assert serverapp is not None
        if not self.guard_file_routes:
            self.log.warning(
                "governed_server: GovernedServerApp.guard_file_routes is False: file content is served "
                "unmasked on every route (contents API, /files/, nbconvert...)"
            )
            return
        masker = self.service.masker if self.service is not None else Masker()
        self.outbound_guard = OutboundGuard(
            masker, max_file_bytes=self.outbound_max_file_mb * MIB, cache_bytes=self.outbound_cache_mb * MIB
        )
        guard_routes(serverapp.web_app)
        serverapp.io_loop.add_callback(self.check_routes)

    def check_routes(self) -> list[str]:
        """Guard and judge every route (all extensions loaded by now); in enforce mode an unguarded
        route that serves files stops the server before it listens. Returns the unguarded patterns."""
        serverapp = self.serverapp
        assert serverapp is not None
        routes = guard_routes(serverapp.web_app)
        verdicts = classify(routes, guarded_classes(), self.accept_unguarded_routes, serverapp.base_url)
        for verdict in verdicts:
            if verdict.status == "accepted":
                self.log.warning("governed_server: route %s (%s) serves %s UNMASKED: accepted by "
                                 "GovernedServerApp.accept_unguarded_routes", verdict.route.pattern,
                                 verdict.route.handler_name, verdict.why)  # fmt: skip
        unguarded = [v for v in verdicts if v.status == "unguarded"]
        counts = Counter(v.status for v in verdicts)
        self.log.info("governed_server outbound guard: %d file route(s) masked, %d asset route(s) allowed, "
                      "%d unguarded", counts["guarded"], counts["asset"], len(unguarded))  # fmt: skip
        if not unguarded:
            return []
        # Without a policy the mode is unknown: fail closed, as enforce.
        mode = self.service.policy.mode if self.service is not None else "enforce"
        message = refusal(unguarded, mode)
        if mode != "enforce":
            warning = message.replace("refusing to start", "warning")
            self.log.warning("%s\n(observe mode: starting anyway)", warning)
            return [v.route.pattern for v in unguarded]
        self.log.critical(message)
        self.refuse_to_start()
        return [v.route.pattern for v in unguarded]

    def refuse_to_start(self) -> None:
        """Stop before the port is bound: no request is ever served. Exit status 1."""
        serverapp = self.serverapp
        assert serverapp is not None
        for cleanup in ("remove_server_info_file", "remove_browser_open_files"):
            with contextlib.suppress(Exception):  # nothing written yet (e.g. an embedded server)
                getattr(serverapp, cleanup)()
        raise SystemExit(1)

    def record_outbound_event(
        self, user: str, route: str, path: str, kinds: dict[str, int], *, refused: bool = False
    ) -> None:
        """File content left masked (or a save was refused): the audit log says who, where, what kind."""
        if self.service is None:
            return
        try:
            self.service.record_outbound_event(user, route, path, kinds, refused=refused)
        except Exception:
            self.log.exception("governed_server: could not record the outbound guard event for %s", path)

    def record_guard_event(self, kernel_id: str, msg_type: str, kinds: dict[str, int]) -> None:
        """The guard had to mask a kernel's message: the kernel's own masking was bypassed."""
        if self.service is None:
            return
        try:
            self.service.record_guard_event(kernel_id, msg_type, kinds)
        except Exception:
            self.log.exception("governed_server: could not record the guard event for kernel %s", kernel_id)

    def start_service(self) -> None:
        """Build the service; on failure keep serving health with the reason (fail closed, not crashed)."""
        settings = ServiceSettings(
            policy_path=self.policy_file,
            db_url=self.db_url,
            checkpoint_dir=Path(self.checkpoint_dir).expanduser(),
            signing_key_path=Path(self.signing_key_path).expanduser(),
            groups=dict(self.groups),
            server_id=self.server_id,
            sqlite_sync_interval=self.sqlite_sync_interval,
        )
        event_logger = getattr(self.serverapp, "event_logger", None)
        try:
            self.service = GovernanceService(settings, event_logger=event_logger)
        except Exception as error:  # policy or store unusable: every governed action is refused
            self.service = None
            self.unavailable_reason = str(error) or type(error).__name__
            self.log.error(
                "governed_server: the governance service is NOT running: %s", self.unavailable_reason
            )
            return
        policy = self.service.policy
        self.log.info(
            "governed_server %s: policy %s (%s, %s), store %s",
            __version__, self.policy_file, policy.version[:19], policy.mode, self.service.store.url,
        )  # fmt: skip
        PeriodicCallback(self._expire_pending, EXPIRY_CHECK_MS).start()
        interval_ms = policy.audit.checkpoint_interval_minutes * 60_000
        PeriodicCallback(self._checkpoint, interval_ms).start()

    def _expire_pending(self) -> None:
        if self.service is not None:
            try:
                self.service.expire_due()
            except Exception:
                self.log.exception("governed_server: expiring pending approvals failed")

    def _checkpoint(self) -> None:
        if self.service is not None:
            try:
                self.service.audit.checkpoint()
            except Exception:
                self.log.exception("governed_server: writing the audit checkpoint failed")

    async def stop_extension(self) -> None:
        if self.service is not None:
            self.service.close()

    # -- kernels ---------------------------------------------------------------------------------

    def kernel_environment(self, kernel_id: str, username: str) -> dict[str, str]:
        """Environment for a governed kernel: where the API is and its own fresh credential."""
        if self.service is None:
            return {}
        token = self.service.credentials.mint(kernel_id, username)
        return {
            SERVICE_URL_ENV: self.service_url(),
            TOKEN_ENV: token,
            USER_ENV: username,
            # The kernel classifies with the policy the service enforces (versions must match).
            POLICY_ENV: str(self.policy_file),
        }

    def revoke_kernel(self, kernel_id: str) -> None:
        if self.service is not None:
            self.service.credentials.revoke(kernel_id)

    def service_url(self) -> str:
        serverapp = self.serverapp
        assert serverapp is not None
        base = str(serverapp.connection_url)
        return base.rstrip("/") + API_PREFIX + "/"

    @staticmethod
    def _default_kernel_configured(config: Any) -> bool:
        return any(
            "default_kernel_name" in config.get(section, {})
            for section in ("MappingKernelManager", "MultiKernelManager", "AsyncMappingKernelManager")
        )

    def initialize_handlers(self) -> None:
        self.handlers.extend(default_handlers())
        self.handlers.extend(ownership_handlers())
