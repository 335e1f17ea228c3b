"""The server's side of the kernel jail: what to hide, keep read-only and pass on, from its real settings.

:mod:`governed_server.single_user.jail` turns lists into a bubblewrap command; this module makes the lists for
one server (its store, key, checkpoints, runtime files, config and data dirs, the demo's folder),
prepares what a kernel needs before it starts (its own directory for the connection file and IPC
sockets, an IPython profile it can read but not change), and decides when a governed kernel must
not start at all (no jail in enforce mode, unless a setting accepts the risk).

:func:`secret_paths` is the one list of what the jail hides: add new secrets there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import site
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from governed_kernel.resources import POLICY_ENV
from governed_server.names import SERVICE_URL_ENV, TOKEN_ENV, USER_ENV
from governed_server.single_user.jail import JailLayout, canonical, jail_environment, python_isolated
from governed_server.single_user.jail_probe import BUBBLEWRAP, INSTALL_HINT, JailState, disabled, probe

log = logging.getLogger("governed_server")

JAIL_MODES = (BUBBLEWRAP, "none")
KERNELS_DIR_NAME = "governed"
"""``<runtime dir>/governed/<id>/``: one directory per kernel (short: IPC socket paths are limited)."""
SOCKET_PATH_MAX = 107
"""Longest AF_UNIX socket path Linux accepts (``sun_path`` is 108 bytes with its NUL)."""
IPC_BASENAME = "k"
"""The kernel's IPC sockets are ``<kernel dir>/k-<n>``."""
HISTORY_DIR_NAME = "governed-history"
"""Writable directory in the (read-only) IPython profile for the kernels' masked history."""

DEFAULT_ENV_ALLOW: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_*", "TZ", "TERM",
    "IPYTHONDIR", "JPY_SESSION_NAME", "MPLBACKEND",
    "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
)  # fmt: skip
"""What a kernel inherits from the server's environment besides the governed variables."""

GOVERNED_KERNEL_ENV: tuple[str, ...] = (
    SERVICE_URL_ENV, TOKEN_ENV, USER_ENV, POLICY_ENV,
    "GOVERNED_AUDIT_STREAM", "GOVERNED_AUDIT_BATCH", "GOVERNED_APPROVAL_TIMEOUT", "GOVERNED_MASKING_NATIVE",
)  # fmt: skip
"""The governed kernel's own settings (the first four are injected by the server for each kernel)."""

FILE_VARIABLES: tuple[str, ...] = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
"""Variables naming files the kernel reads: kept readable even where the jail hides (a CA in /tmp)."""

CONTAINER_SECRETS: tuple[str, ...] = ("/run/secrets", "/var/run/secrets")
"""Docker and Kubernetes secrets (a pod's service-account token)."""


class JailRefused(RuntimeError):
    """A governed kernel must not start: the jail is missing in enforce mode (message says what to do)."""


@dataclass(frozen=True)
class JailSettings:
    """The operator's choices (``GovernedServerApp.jail*`` traits)."""

    mode: str = BUBBLEWRAP
    bwrap_path: str = "bwrap"
    allow_unjailed: bool = False
    hidden: tuple[str, ...] = ()
    readonly: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    env_allow: tuple[str, ...] = ()
    kernels_dir: str = ""


@dataclass(frozen=True)
class ServerPaths:
    """Where this server keeps what kernels must not reach, and what it and the kernels load."""

    runtime_dir: Path
    root_dirs: tuple[Path, ...]
    config_dirs: tuple[Path, ...] = ()
    data_dirs: tuple[Path, ...] = ()
    store_file: Path | None = None
    signing_key: Path | None = None
    checkpoint_dir: Path | None = None
    policy_file: Path | None = None
    server_files: tuple[Path, ...] = ()
    """Single files: the TLS private key, the cookie secret, the config file named on the command line."""
    demo_dirs: tuple[Path, ...] = ()


def secret_paths(paths: ServerPaths, extra: Iterable[str] = ()) -> Iterator[tuple[Path, str]]:
    """Everything the jail hides, each with why: the one list of the kernel's forbidden paths.

    A secret file's own directory is hidden when it is a directory of its own (SQLite's ``-wal``
    and ``-shm`` files come and go beside the database; a hidden file would not cover a new one);
    when that directory holds the analyst's files, only the files are.
    """
    roots = tuple(canonical(root) for root in paths.root_dirs)
    for directory in paths.data_dirs:
        yield directory, "Jupyter data dir (the store, key and demo folder by default; notebook_secret)"
    for directory in paths.config_dirs:
        yield directory, "Jupyter config dir (server config: tokens, database URLs)"
    yield paths.runtime_dir, "server runtime dir (jpserver-*.json with the token, cookie secret, kernels)"
    if paths.store_file is not None:
        for path in _own_dir_or_files(paths.store_file, roots, ("-wal", "-shm", "-journal")):
            yield path, "governance store (SQLite)"
    if paths.signing_key is not None:
        for path in _own_dir_or_files(paths.signing_key, roots, ()):
            yield path, "audit signing key"
    if paths.checkpoint_dir is not None:
        yield paths.checkpoint_dir, "audit checkpoints"
    for directory in paths.demo_dirs:
        yield directory, "demo folder (the demo people's tokens)"
    for file in paths.server_files:
        yield file, "server secret file"
    for secrets_dir in CONTAINER_SECRETS:
        yield Path(secrets_dir), "container secrets"
    for configured in extra:
        yield Path(configured).expanduser(), "GovernedServerApp.jail_hidden_paths"


def _own_dir_or_files(file: Path, roots: tuple[Path, ...], sidecars: Sequence[str]) -> list[Path]:
    directory = canonical(file).parent
    shared = directory == Path("/") or any(directory == r or directory in r.parents for r in roots)
    if not shared:
        return [directory]
    log.warning(
        "governed_server: %s shares its directory %s with the analyst's files; the jail hides the "
        "file only: give it a directory of its own",
        file, directory,
    )  # fmt: skip
    return [file, *(file.with_name(file.name + suffix) for suffix in sidecars)]


def user_dirs(home: Path) -> list[Path]:
    """The user site-packages and scripts folders, of this process and of ``home``: a ``.pth`` file
    or a ``jupyter`` script there runs in the next server (``-I`` keeps them out of the kernel)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = [Path(site.getusersitepackages()), Path(site.getuserbase()) / "bin"]
    found += [home / ".local" / "lib" / version / "site-packages", home / ".local" / "bin"]
    return found


def load_paths(paths: ServerPaths, ipython_dir: Path, home: Path, extra: Iterable[str] = ()) -> list[Path]:
    """What the server and the kernel load at start, kept read-only: the interpreter and every
    ``sys.path`` entry (site-packages, editable sources), the user site, the IPython profile dir,
    the policy file. Writable elsewhere (under a home or root dir), they would let a kernel change
    what the next kernel, or the next server, runs before any governance code does."""
    found: list[Path] = [Path(sys.executable)]
    found += [Path(p) for p in {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}]
    found += [Path(entry) for entry in sys.path if entry]
    found += user_dirs(home)
    found += profile_dirs(ipython_dir)
    if paths.policy_file is not None:
        found.append(paths.policy_file)
    found += [Path(p).expanduser() for p in extra]
    roots = {canonical(root) for root in paths.root_dirs}
    for entry in found:
        if canonical(entry) in roots:
            log.warning(
                "governed_server: the server loads code from %s, which is also where analysts work: "
                "kernels cannot write there (read-only in the jail). Start the server with the "
                "`jupyter lab` / `jupyter server` command rather than `python -m` in that folder.",
                entry,
            )
    return found


def profile_dirs(ipython_dir: Path) -> list[Path]:
    """The IPython profiles (``profile_*``): config files and ``startup/`` scripts that run in
    every kernel before any governance code. The IPython dir itself stays writable (IPython falls
    back to a temporary one, without the user's profile, when it is not), and a mount point (its
    profiles cannot be renamed away); a new profile there is never loaded (the kernelspec names
    none)."""
    return sorted(ipython_dir.glob("profile_*")) if ipython_dir.is_dir() else []


def ipython_dir_of(env: Mapping[str, str]) -> Path:
    """The IPython dir the kernel will use (``IPYTHONDIR``, else ``~/.ipython`` of its HOME)."""
    configured = env.get("IPYTHONDIR")
    if configured:
        return Path(configured).expanduser()
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".ipython"


def prepare_ipython_profile(ipython_dir: Path) -> Path:
    """Create the default profile (the kernel cannot: it is read-only in the jail) and its writable
    history directory; returns the history file."""
    from IPython.core.profiledir import ProfileDir

    profile = ProfileDir.create_profile_dir_by_name(str(ipython_dir), "default")  # type: ignore[no-untyped-call]
    history = Path(profile.location) / HISTORY_DIR_NAME
    history.mkdir(mode=0o700, exist_ok=True)
    return history / "history.sqlite"


@dataclass
class KernelLaunch:
    """How one governed kernel starts: command, environment, where its files go."""

    cmd: list[str]
    env: dict[str, str]
    kernel_dir: Path
    jailed: bool
    layout: JailLayout | None = None
    extra_popen: dict[str, Any] = field(default_factory=dict)


class KernelJail:
    """Decides, for every governed kernel a server starts, its jail, its environment and its files."""

    def __init__(self, settings: JailSettings, paths: ServerPaths, state: JailState | None = None) -> None:
        self.settings = settings
        self.paths = paths
        if state is None:
            state = (
                probe(settings.bwrap_path)
                if settings.mode == BUBBLEWRAP
                else disabled("the jail is turned off (GovernedServerApp.jail = 'none')")
            )
        self.state = state

    # -- when kernels may start --------------------------------------------------------------------

    def refusal(self, policy_mode: str) -> str | None:
        """Why a governed kernel must not start now (no jail, enforce mode, risk not accepted)."""
        if self.state.available or self.settings.allow_unjailed or policy_mode != "enforce":
            return None
        return (
            f"Governed kernels are not started: the kernel jail is not available ({self.state.reason}). "
            "Without it, code in a notebook could read the governance store, the audit signing key and "
            f"the server's tokens. To fix it, {INSTALL_HINT} and restart the server; or, accepting that "
            "risk, set GovernedServerApp.allow_unjailed_kernels = True."
        )

    def report(self, policy_mode: str) -> dict[str, Any]:
        """The jail's state for health and ``jupyter governance info``."""
        if self.state.available:
            kernels = "jailed"
        elif self.refusal(policy_mode) is not None:
            kernels = "refused"
        else:
            kernels = "unjailed"
        return {
            "jail": self.state.describe(),
            "jail_risk_accepted": bool(self.settings.allow_unjailed and not self.state.available),
            "jail_kernels": kernels,
        }

    def announce(self, policy_mode: str) -> None:
        """One log line at start saying how kernels will run."""
        if self.state.available:
            log.info("governed_server: governed kernels run in a bubblewrap jail (%s)", self.state.bwrap)
        elif self.refusal(policy_mode) is not None:
            log.error("governed_server: %s", self.refusal(policy_mode))
        elif self.settings.allow_unjailed:  # a deliberate setting (health and info report it)
            log.info(
                "governed_server: governed kernels run without the jail (%s); the risk is accepted by "
                "GovernedServerApp.allow_unjailed_kernels",
                self.state.reason,
            )
        else:
            log.warning(
                "governed_server: governed kernels run WITHOUT the jail (%s): allowed because the "
                "policy is in %s mode",
                self.state.reason, policy_mode,
            )  # fmt: skip

    # -- one kernel ---------------------------------------------------------------------------------

    def kernels_dir(self) -> Path:
        configured = self.settings.kernels_dir
        return Path(configured).expanduser() if configured else self.paths.runtime_dir / KERNELS_DIR_NAME

    def kernel_dir(self, kernel_id: str) -> Path:
        """``<kernels dir>/<12 hex digits of the id's hash>``: stable across restarts, short."""
        digest = hashlib.sha256(kernel_id.encode("utf-8")).hexdigest()[:12]
        return self.kernels_dir() / digest

    def prepare_kernel_dir(self, kernel_id: str) -> Path:
        """Create the kernel's directory (0700 in a 0700 parent), or explain why it cannot be used."""
        directory = self.kernel_dir(kernel_id)
        socket_path = directory / f"{IPC_BASENAME}-99"
        if len(str(socket_path)) > SOCKET_PATH_MAX:
            raise JailRefused(
                f"the kernel's IPC socket path {socket_path} is longer than the {SOCKET_PATH_MAX} "
                "characters the OS allows: set GovernedServerApp.jail_kernels_dir to a shorter directory"
            )
        for folder in (directory.parent, directory):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
        return directory

    def remove_kernel_dir(self, kernel_id: str) -> None:
        shutil.rmtree(self.kernel_dir(kernel_id), ignore_errors=True)

    def launch(
        self,
        cmd: Sequence[str],
        env: Mapping[str, str],
        *,
        kernel_dir: Path,
        cwd: str | None,
        env_names: Iterable[str] = (),
    ) -> KernelLaunch:
        """The command and environment of one governed kernel; jailed when the jail is available.

        ``env_names``: more variables to pass (the kernelspec's own ``env``, the policy's masking
        key variable). Outside the jail the environment is filtered and ``-I`` added all the same.
        """
        allowed = (*DEFAULT_ENV_ALLOW, *GOVERNED_KERNEL_ENV, *self.settings.env_allow, *env_names)
        jailed = self.state.available
        kernel_env = jail_environment(env, allowed, overrides={"TMPDIR": "/tmp"} if jailed else None)
        argv = python_isolated(cmd)
        popen: dict[str, Any] = {"umask": 0o077}  # IPC sockets and files the kernel makes: 0600
        if not jailed:
            return KernelLaunch(argv, kernel_env, kernel_dir, False, extra_popen=popen)
        ipython_dir = ipython_dir_of(kernel_env)
        history = prepare_ipython_profile(ipython_dir)
        argv.append(f"--HistoryManager.hist_file={history}")
        layout = self.layout(kernel_dir, cwd, kernel_env, ipython_dir, history.parent)
        if create_missing(layout, self.protected_dirs(kernel_env, ipython_dir)):
            layout = self.layout(kernel_dir, cwd, kernel_env, ipython_dir, history.parent)
        argv = layout.bwrap_argv(self.state.bwrap, argv)
        return KernelLaunch(argv, kernel_env, kernel_dir, True, layout=layout, extra_popen=popen)

    def protected_dirs(self, env: Mapping[str, str], ipython_dir: Path) -> list[Path]:
        """Directories the jail hides or keeps read-only, which the kernel could otherwise create
        where it may write (a missing ``~/.jupyter`` would take a config file the next server loads)."""
        paths = self.paths
        found = [*paths.config_dirs, *paths.data_dirs, paths.runtime_dir, ipython_dir]
        if paths.checkpoint_dir is not None:
            found.append(paths.checkpoint_dir)
        found += [file.parent for file in (paths.store_file, paths.signing_key) if file is not None]
        return found + user_dirs(_home(env)) + default_jupyter_dirs(_home(env))

    def layout(
        self, kernel_dir: Path, cwd: str | None, env: Mapping[str, str], ipython_dir: Path, history_dir: Path
    ) -> JailLayout:
        paths = self.paths
        home = _home(env)
        writable = [*paths.root_dirs, *(Path(p).expanduser() for p in self.settings.writable)]
        if canonical(home) != Path("/"):
            writable.append(home)
        readonly = load_paths(paths, ipython_dir, home, self.settings.readonly)
        readonly += [Path(env[name]) for name in FILE_VARIABLES if env.get(name)]
        hidden = [path for path, _why in secret_paths(paths, self.settings.hidden)]
        hidden += default_jupyter_dirs(home)  # a server started without JUPYTER_*_DIR would load them
        layout = JailLayout(
            kernel_dir=kernel_dir,
            workdir=Path(cwd or paths.root_dirs[0]),
            hidden=tuple(hidden),
            readonly=tuple(readonly),
            writable=(*writable, ipython_dir, history_dir),
        )
        if not layout.shows(layout.workdir):
            layout = JailLayout(
                kernel_dir,
                paths.root_dirs[0],
                layout.hidden,
                layout.readonly,
                layout.writable,
                layout.private,
            )
        return layout


def default_jupyter_dirs(home: Path) -> list[Path]:
    """Jupyter's config and data dirs under ``home`` when no ``JUPYTER_*_DIR`` variable moves them."""
    return [home / ".jupyter", home / ".local" / "share" / "jupyter"]


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def create_missing(layout: JailLayout, directories: Iterable[Path]) -> list[Path]:
    """Create (0700) each missing directory of ``directories`` that the kernel could write in
    ``layout``: the jail can only hide or protect what exists. Returns those created."""
    created = []
    for directory in directories:
        if directory.exists() or not layout.writes(directory):
            continue
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise JailRefused(f"cannot create {directory}, which the jail must protect: {error}") from None
        created.append(directory)
    return created
