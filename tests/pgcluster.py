"""A private, throw-away PostgreSQL cluster for tests and benchmarks (real server, no system service).

``initdb`` into a temp dir, ``pg_ctl start`` with a unix socket in that dir and a free TCP port on
127.0.0.1, trust authentication for the ``postgres`` role, stopped and deleted by :meth:`stop`.
PostgreSQL refuses to run as root, so when this process is root the server runs as the ``postgres``
OS user (``runuser``). Reusable from any test directory::

    from pgcluster import PgCluster, find_pg_bin   # tests/ on sys.path (tests/conftest.py, bench/)
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` package "
    "(sudo apt-get install postgresql) or set GOVERNED_PG_BIN to their directory"
)


class PgUnavailable(RuntimeError):
    """The binaries are missing or the cluster would not start."""


def find_pg_bin() -> Path:
    """The directory holding initdb and pg_ctl (GOVERNED_PG_BIN, Debian's layout, or PATH)."""
    candidates: list[str] = []
    if os.environ.get("GOVERNED_PG_BIN"):
        candidates.append(os.environ["GOVERNED_PG_BIN"])
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates.extend(versions)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise PgUnavailable(INSTALL_HINT)


def _version_key(path: str) -> int:
    part = Path(path).parent.name
    return int(part) if part.isdigit() else 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One running cluster; :meth:`create_database` gives each test its own database."""

    def __init__(self, *, durable: bool = False, password: str | None = None) -> None:
        """``password``: the ``postgres`` role's, required on every connection (scram); without
        one, any local user may connect (trust), which is enough for tests of one OS user only."""
        self.bin = find_pg_bin()
        self.durable = durable
        self.password = password
        self.base = Path(tempfile.mkdtemp(prefix="gk-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self.running = False

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> PgCluster:
        if self._as_postgres:
            shutil.chown(self.base, user="postgres", group="postgres")
        auth = ["--auth=trust"]
        if self.password is not None:
            pwfile = self.base / "pwfile"
            pwfile.write_text(self.password)
            if self._as_postgres:
                shutil.chown(pwfile, user="postgres", group="postgres")
            pwfile.chmod(0o600)
            auth = ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        result = self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            *auth,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        if result.returncode != 0:
            raise PgUnavailable(f"initdb failed: {result.stderr.strip()}")
        options = f"-k {self.base} -p {self.port} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            # Tests only: the cluster is deleted at the end anyway.
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise PgUnavailable(f"pg_ctl start failed: {result.stderr.strip()}\n{log[-2000:]}")
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.running = False
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (plain ``postgresql://``, as operators write it)."""
        secret = f":{self.password}" if self.password is not None else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            password=self.password,
        ) as connection:
            connection.execute(sql.encode())

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
