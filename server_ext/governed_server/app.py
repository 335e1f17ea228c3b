"""The ``governed_server`` ExtensionApp: configuration traits, service wiring, kernel credentials and jail."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
from collections import Counter
from pathlib import Path
from typing import Any, cast

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from sqlalchemy.engine import make_url
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, List, Unicode, default

from governed_kernel import KERNEL_NAME
from governed_kernel._version import __version__
from governed_kernel.masking import Masker
from governed_kernel.resources import POLICY_ENV, default_policy_path
from governed_server import EXTENSION_NAME, ids
from governed_server.events import register_schemas
from governed_server.names import HUB_SERVICE_ENV, SERVICE_URL_ENV, TOKEN_ENV, USER_ENV
from governed_server.offload import offload
from governed_server.paths import default_db_url, default_store_dir
from governed_server.service.governance import GovernanceService, ServiceSettings
from governed_server.service.handlers import API_PREFIX, default_handlers
from governed_server.service.hub_watch import WATCH_INTERVAL_S, revoke_stopped
from governed_server.service.notifier import Notifier, NotifierSettings
from governed_server.single_user.guard import GuardedKernelConnection
from governed_server.single_user.handlers.outbound import guard_routes, guarded_classes
from governed_server.single_user.handlers.own_kernels import ownership_handlers
from governed_server.single_user.handlers.proxy import proxy_handlers
from governed_server.single_user.hardening import (
    Hardening,
    refuse_gateway_kernels,
    refuse_terminals,
    restrict_kernels,
    terminals_on,
)
from governed_server.single_user.inbound_gate import InboundRegistry
from governed_server.single_user.kernel_jail import JAIL_MODES, JailSettings, KernelJail, ServerPaths
from governed_server.single_user.outbound import DEFAULT_CACHE_MB, DEFAULT_MAX_FILE_MB, MIB, OutboundGuard
from governed_server.single_user.ownership import KernelOwners
from governed_server.single_user.process_guard import make_undumpable
from governed_server.single_user.remote import RemoteService
from governed_server.single_user.remote_events import EventRelay
from governed_server.single_user.routes import classify, refusal

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

    allow_ungoverned_kernels = Bool(
        False,
        help=(
            "Offer other installed kernels (python3...) beside governed-python. Off: only the governed "
            "kernel can be started. On: those kernels run with no policy, in-kernel masking or record "
            "of their own (the server still records and masks their websocket traffic); reported as "
            "weakened by health and `jupyter governance info`."
        ),
    ).tag(config=True)

    allow_terminals = Bool(
        False,
        help=(
            "Allow terminals (a shell with no policy, masking or record). Off: every terminal route "
            "answers 403, even if ServerApp.terminals_enabled is set. Reported as weakened."
        ),
    ).tag(config=True)

    allow_gateway = Bool(
        False,
        help=(
            "Start kernels in gateway mode (GatewayClient.url): their traffic bypasses this server's "
            "guards. Off: a gateway-mode server starts no kernel. Reported as weakened."
        ),
    ).tag(config=True)

    witness_grace_seconds = Float(
        30.0,
        min=0.0,
        help=(
            "How long after a kernel answered a forwarded cell its own record of it may still arrive; "
            "later, the missing record is an integrity alert (integrity.witness_missing)."
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

    jail = CaselessStrEnum(
        list(JAIL_MODES),
        default_value="bubblewrap",
        help=(
            "How governed kernels are kept away from the store, key, checkpoints, tokens and the "
            "server's runtime files: 'bubblewrap' (a mount and pid namespace per kernel, docs/jail.md) "
            "or 'none'. Without a working jail, enforce mode refuses governed kernels unless "
            "allow_unjailed_kernels is True."
        ),
    ).tag(config=True)

    bwrap_path = Unicode("bwrap", help="The bubblewrap program (a name looked up on PATH, or a path).").tag(
        config=True
    )

    allow_unjailed_kernels = Bool(
        False,
        help=(
            "Start governed kernels even where the jail is not available (bubblewrap missing, or no "
            "namespaces in this container), accepting that code in a notebook can then read the "
            "store, the signing key and the server's tokens. Health and `jupyter governance info` "
            "report it."
        ),
    ).tag(config=True)

    jail_hidden_paths = List(
        Unicode(),
        help=(
            "More files or directories the jail hides from kernels (the store, key, checkpoints, "
            "Jupyter config, data and runtime dirs are hidden already)."
        ),
    ).tag(config=True)

    jail_readonly_paths = List(
        Unicode(), help="More paths kernels may read but not change (code the server or kernels load)."
    ).tag(config=True)

    jail_writable_paths = List(
        Unicode(),
        help=(
            "More paths kernels may write, besides the server's root dir and the home directory (a "
            "shared data folder). Everything else is read-only in the jail."
        ),
    ).tag(config=True)

    jail_env_allow = List(
        Unicode(),
        help=(
            "More environment variables passed to governed kernels (names, or patterns with '*'). "
            "Kernels get an allow list, not the server's environment: PATH, HOME, locale, IPYTHONDIR, "
            "the governed variables; server secrets (GOVERNED_DB_URL, JUPYTERHUB_API_TOKEN, "
            "JUPYTER_TOKEN...) are never passed."
        ),
    ).tag(config=True)

    jail_kernels_dir = Unicode(
        help=(
            "Where each governed kernel gets its directory (connection file, IPC sockets). Default: "
            "'governed' in the server's runtime dir. Keep it short: socket paths are limited to 107 "
            "characters."
        ),
    ).tag(config=True)

    hub_service = Bool(
        False,
        help=(
            "This server is the governance service of a JupyterHub (set by `jupyter governance serve "
            "--hub`): kernel credentials of a single-user server are revoked when the Hub reports "
            "that server stopped."
        ),
    ).tag(config=True)

    hub_service_url = Unicode(
        help=(
            "Client mode (a single-user server under JupyterHub): the URL of the shared governance "
            "service, e.g. http://127.0.0.1:8890/services/governance/. This server then keeps no store "
            "and no key: it registers each kernel with the service and sends its records there. "
            "Default: $GOVERNED_HUB_SERVICE_URL (set by governed_server.hub.configure)."
        ),
    ).tag(config=True)

    notify_webhook_url = Unicode(
        help=(
            "Approvers' notifications: a webhook (Slack-compatible JSON: ids, users, rules and a link "
            "to the panel; never code) called when a request is created, decided or expired, with "
            "retries; failures are audit records (notify.failed). Empty: none."
        ),
    ).tag(config=True)

    notify_webhook_secret = Unicode(
        help="Signs each webhook body: X-Governance-Signature: sha256=<HMAC-SHA256 of the body>."
    ).tag(config=True)

    notify_attempts = Int(
        5, min=1, help="Webhook deliveries tried per notification (1 s, 2 s, 4 s... apart, at most 30 s)."
    ).tag(config=True)

    notify_link_base = Unicode(
        help="The Hub's public origin for the webhook's link (https://hub.example.com); empty: a path."
    ).tag(config=True)

    service_wait_seconds = Float(
        60.0,
        min=0.0,
        help=(
            "Client mode: how long a request waits for an unreachable governance service (with a "
            "notice in the cell) before it is refused. Nothing is forwarded unrecorded meanwhile."
        ),
    ).tag(config=True)

    client_spool_path = Unicode(
        help=(
            "Client mode: the file (0600, in a 0700 directory) where this server keeps what its guards "
            "recorded until the governance service has stored it; kept across restarts. Default: "
            "<Jupyter data dir>/governed_server/spool/<server name or 'default'>.jsonl."
        )
    ).tag(config=True)

    @default("client_spool_path")
    def _default_client_spool_path(self) -> str:
        from jupyter_core.paths import jupyter_data_dir

        name = os.environ.get("JUPYTERHUB_SERVER_NAME") or "default"
        return str(Path(jupyter_data_dir()) / "governed_server" / "spool" / f"{name}.jsonl")

    @default("hub_service_url")
    def _default_hub_service_url(self) -> str:
        return os.environ.get(HUB_SERVICE_ENV, "")

    @property
    def client_mode(self) -> bool:
        return bool(self.hub_service_url)

    def service_api_url(self) -> str:
        """The shared service's API (client mode)."""
        return self.hub_service_url.rstrip("/") + API_PREFIX + "/"

    service: GovernanceService | None = None
    event_relay: EventRelay | None = None
    kernel_jail: KernelJail | None = None
    unavailable_reason: str = ""
    guard_masker: Masker | None = None
    outbound_guard: OutboundGuard | None = None
    kernel_owners: KernelOwners | None = None
    _background: set[asyncio.Task[None]]
    inbound: InboundRegistry

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
        self._background = set()
        self.settings["governed_server"] = self
        serverapp = self.serverapp
        assert serverapp is not None, "initialize_settings runs after the extension is linked to a server"
        if self.set_default_kernel and not self._default_kernel_configured(serverapp.config):
            serverapp.kernel_manager.default_kernel_name = KERNEL_NAME
        self.start_service()
        self.start_jail()
        ids.install(serverapp.kernel_manager, self.service.masker if self.service else Masker())
        self.install_ownership()
        self.inbound = InboundRegistry(kernel_gone=self._kernel_gone)
        self.inbound.install(serverapp.kernel_manager)
        self.install_guard()
        self.install_outbound()
        self.harden()

    def harden(self) -> None:
        """The hardened defaults (``hardening``), relaxed only by explicit settings."""
        serverapp = self.serverapp
        assert serverapp is not None
        self.hardening = Hardening()
        restrict_kernels(
            serverapp.kernel_spec_manager, self.hardening, allow_ungoverned=self.allow_ungoverned_kernels
        )
        if not self.guard_websocket:
            self.hardening.note(
                "websocket_guard", "off",
                weak="kernel websockets are not guarded (GovernedServerApp.guard_websocket is False)",
            )  # fmt: skip
        else:
            self.hardening.note("websocket_guard", "on")
        if not self.guard_file_routes:
            self.hardening.note(
                "file_routes",
                "unmasked",
                weak="file routes serve unmasked (GovernedServerApp.guard_file_routes)",
            )
        if serverapp.gateway_config.gateway_enabled:
            if self.allow_gateway:
                self.hardening.note("gateway", "on", weak="gateway kernels bypass this server's guards")
            else:
                refuse_gateway_kernels(serverapp.kernel_manager)
                self.hardening.note("gateway", "kernels refused")
        serverapp.io_loop.add_callback(self.check_terminals)

    def check_terminals(self) -> None:
        """Once every extension has added its routes: terminals refused unless allowed."""
        serverapp = self.serverapp
        assert serverapp is not None
        if not terminals_on(serverapp):
            self.hardening.note("terminals", "off")
        elif self.allow_terminals:
            self.hardening.note(
                "terminals", "on", weak="terminals are allowed (GovernedServerApp.allow_terminals)"
            )
        else:
            refused = refuse_terminals(serverapp.web_app)
            self.hardening.note("terminals", f"refused ({refused} routes answer 403)")

    def hardening_report(self) -> dict[str, Any]:
        """For health: what is in effect and what weakens it (the jail's weakness included)."""
        hardening = getattr(self, "hardening", None) or Hardening()
        weakened = list(hardening.weakened)
        jail = self.jail_report()
        if jail.get("jail_kernels") == "unjailed":
            weakened.append(
                "governed kernels run without the jail (GovernedServerApp.allow_unjailed_kernels)"
            )
        return {"hardening": dict(hardening.state), "weakened": weakened}

    def roles_rule(self) -> str:
        """Where approvers' and auditors' authority comes from (identity.RoleResolver.has_role)."""
        if self.hub_service:
            return (
                "policy and Hub scope, both needed (approver: custom:governance:approve, auditor: "
                "custom:governance:audit); GET /governance/api/me shows hub_scopes_missing"
            )
        return "policy (users, and groups from the identity provider or GovernedServerApp.groups)"

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
            # Not an explicit relaxation (that is guard_websocket=False): the guard goes in anyway.
            self.log.warning("governed_server: %s is configured as the kernel websocket class; it is "
                             "replaced by the guarded one (set GovernedServerApp.guard_websocket=False "
                             "to keep it, unguarded)", current)  # fmt: skip
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
        what = f"recording the guard event for kernel {kernel_id}"
        self._in_background(what, self.service.record_guard_event, kernel_id, msg_type, kinds)

    def start_service(self) -> None:
        """Build the service; on failure keep serving health with the reason (fail closed, not crashed)."""
        if self.client_mode:
            self.start_remote_service()
            return
        settings = ServiceSettings(
            policy_path=self.policy_file,
            db_url=self.db_url,
            checkpoint_dir=Path(self.checkpoint_dir).expanduser(),
            signing_key_path=Path(self.signing_key_path).expanduser(),
            groups=dict(self.groups),
            server_id=self.server_id,
            sqlite_sync_interval=self.sqlite_sync_interval,
            witness_grace_seconds=self.witness_grace_seconds,
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
        if self.notify_webhook_url:
            webhook = NotifierSettings(
                self.notify_webhook_url,
                self.notify_webhook_secret,
                self.notify_link_base,
                attempts=self.notify_attempts,
            )
            self.service.notifier = Notifier(webhook, self.service.record_notify_failure)
        policy = self.service.policy
        self.log.info(
            "governed_server %s: policy %s (%s, %s), store %s",
            __version__, self.policy_file, policy.version[:19], policy.mode, self.service.store.url,
        )  # fmt: skip
        PeriodicCallback(self._expire_pending, EXPIRY_CHECK_MS).start()
        PeriodicCallback(self._settle_witnesses, EXPIRY_CHECK_MS).start()
        interval_ms = policy.audit.checkpoint_interval_minutes * 60_000
        PeriodicCallback(self._checkpoint, interval_ms).start()
        if self.hub_service:
            PeriodicCallback(self._watch_hub, WATCH_INTERVAL_S * 1000).start()

    def _watch_hub(self) -> None:
        if self.service is not None:
            self._in_background(
                "revoking the kernels of stopped servers", revoke_stopped, self.service.credentials
            )

    def start_remote_service(self) -> None:
        """Client mode: the shared service governs; tried again every few seconds until it answers."""
        event_logger = getattr(self.serverapp, "event_logger", None)
        if event_logger is not None:
            register_schemas(event_logger)
            ws_url = self.service_api_url().replace("http", "ws", 1) + "events"
            self.event_relay = EventRelay(ws_url, event_logger)
        self.connect_remote_service()
        PeriodicCallback(self._reconnect_remote, EXPIRY_CHECK_MS).start()
        PeriodicCallback(self._settle_witnesses, 1_000).start()  # also renews leases when due

    def connect_remote_service(self) -> None:
        try:
            remote = RemoteService(
                api_url=self.service_api_url(), hub_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""),
                username=self.kernel_user, policy_path=self.policy_file, server_id=self.server_id,
                spool_path=Path(self.client_spool_path).expanduser(),
            )  # fmt: skip
        except Exception as error:
            self.service = None
            self.unavailable_reason = str(error) or type(error).__name__
            self.log.error(
                "governed_server: the governance service is not reachable: %s", self.unavailable_reason
            )
            return
        # Same names as the local service for everything the guards use (governed_server.single_user.remote).
        self.service = cast(GovernanceService, remote)
        self.unavailable_reason = ""
        self.log.info(
            "governed_server %s (client mode): governed by %s, policy %s (%s)",
            __version__, self.hub_service_url, remote.policy.version[:19], remote.policy.mode,
        )  # fmt: skip

    def _reconnect_remote(self) -> None:
        if self.service is None:
            self.connect_remote_service()

    def _in_background(self, what: str, function: Any, *args: Any) -> None:
        """Run a store call in a store thread; a failure is logged (the next period retries)."""
        if self.service is None:
            return

        async def run() -> None:
            try:
                await offload(function, *args)
            except Exception:
                self.log.exception("governed_server: %s failed", what)

        task = asyncio.ensure_future(run())
        self._background.add(task)  # kept until done: the loop holds only weak references to tasks
        task.add_done_callback(self._background.discard)

    def start_jail(self) -> None:
        """Protect the server process and find out, once, whether kernels can be jailed here."""
        problem = make_undumpable()
        if problem:
            self.log.warning("governed_server: %s", problem)
        settings = JailSettings(
            mode=self.jail.lower(),
            bwrap_path=self.bwrap_path,
            allow_unjailed=self.allow_unjailed_kernels,
            hidden=tuple(self.jail_hidden_paths),
            readonly=tuple(self.jail_readonly_paths),
            writable=tuple(self.jail_writable_paths),
            env_allow=tuple(self.jail_env_allow),
            kernels_dir=self.jail_kernels_dir,
        )
        self.kernel_jail = KernelJail(settings, self.server_paths())
        self.kernel_jail.announce(self.policy_mode())

    def server_paths(self) -> ServerPaths:
        """What the jail hides and protects, from this server's real settings."""
        from jupyter_core.paths import jupyter_config_path, jupyter_data_dir

        from governed_server.demo import default_demo_dir

        serverapp = self.serverapp
        assert serverapp is not None
        try:
            url = make_url(self.db_url)
            store = Path(str(url.database)).expanduser() if url.get_backend_name() == "sqlite" else None
        except Exception:
            store = None
        root_dirs = [Path(serverapp.root_dir)]
        kernel_root = getattr(serverapp.kernel_manager, "root_dir", "")
        if kernel_root and Path(kernel_root) != root_dirs[0]:
            root_dirs.append(Path(kernel_root))
        server_files = [serverapp.keyfile, serverapp.cookie_secret_file, serverapp.info_file,
                        serverapp.browser_open_file, getattr(serverapp, "config_file", ""),
                        os.environ.get("JUPYTERHUB_SSL_KEYFILE", "")]  # fmt: skip
        config_dirs = {serverapp.config_dir, *jupyter_config_path(), *serverapp.config_file_paths}
        return ServerPaths(
            runtime_dir=Path(serverapp.runtime_dir),
            root_dirs=tuple(root_dirs),
            config_dirs=tuple(Path(p) for p in sorted(config_dirs) if p),
            data_dirs=tuple(Path(p) for p in sorted({serverapp.data_dir, jupyter_data_dir()}) if p),
            store_file=store,
            signing_key=Path(self.signing_key_path).expanduser(),
            checkpoint_dir=Path(self.checkpoint_dir).expanduser(),
            policy_file=self.policy_file,
            server_files=tuple(Path(p) for p in server_files if p),
            demo_dirs=(default_demo_dir(),),
        )

    def policy_mode(self) -> str:
        """The policy's mode; ``enforce`` when the service is not running (fail closed)."""
        return self.service.policy.mode if self.service is not None else "enforce"

    def jail_report(self) -> dict[str, Any]:
        if self.kernel_jail is None:
            return {"jail": "none: not started", "jail_risk_accepted": False, "jail_kernels": "refused"}
        return self.kernel_jail.report(self.policy_mode())

    def _expire_pending(self) -> None:
        if self.service is not None:
            self._in_background("expiring pending approvals", self.service.expire_due)

    def _kernel_gone(self, kernel_id: str) -> None:
        if self.service is not None:
            self.service.witnesses.kernel_gone(kernel_id)

    def _settle_witnesses(self) -> None:
        if self.service is not None:
            self._in_background("recording the witness findings", self.service.settle_witnesses)

    def _checkpoint(self) -> None:
        if self.service is not None and not self.client_mode:
            self._in_background("writing the audit checkpoint", self.service.audit.checkpoint)

    async def stop_extension(self) -> None:
        if self.event_relay is not None:
            self.event_relay.close()
        if self.service is not None:
            self.service.close()

    # -- kernels ---------------------------------------------------------------------------------

    def kernel_environment(self, kernel_id: str, username: str) -> dict[str, str]:
        """Environment for a governed kernel: where the API is and its own fresh credential."""
        if self.service is None:
            return {}
        token = self.service.credentials.mint(kernel_id, username)
        return {
            SERVICE_URL_ENV: self.service_api_url() if self.client_mode else self.service_url(),
            TOKEN_ENV: token,
            USER_ENV: username,
            # The kernel classifies with the policy the service enforces (versions must match).
            POLICY_ENV: str(self.policy_file),
        }

    def kernel_env_names(self) -> list[str]:
        """Variables a governed kernel needs beyond the allow list: the policy's masking key."""
        if self.service is None:
            return []
        key_env = self.service.masker.config.token_key_env
        return [key_env] if key_env else []

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
        if self.hub_service and self.serverapp is not None:
            # Here, once the extension's settings are in the web app: as jupyterhub-singleuser does,
            # tornado's own XSRF check (before authentication: too early for Hub tokens) is off;
            # jupyter_server checks again after authentication, the Hub's way.
            self.serverapp.web_app.settings["xsrf_cookies"] = False
        if self.client_mode:
            self.handlers.extend(proxy_handlers())
            self.handlers.extend(ownership_handlers())
            return
        self.handlers.extend(default_handlers())
        self.handlers.extend(ownership_handlers())
