"""The governed kernel against a service behind TLS (https:// and wss://), as behind a TLS-terminating
proxy in a JupyterHub deployment.

A small TCP proxy terminates TLS with a self-signed certificate (trusted through ``SSL_CERT_FILE``,
which both the stream client and httpx read) and forwards bytes to the plain service, so the
WebSocket upgrade passes through unchanged. It records what each connection asked for, to show that
the audit records went over the stream (``wss://``), not the HTTP fallback.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from governance_service import GovernanceService, write_test_policy  # type: ignore[import-not-found]
from pipeline_helpers import GovernedKernel, cell_records, unique  # type: ignore[import-not-found]


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class TlsProxy:
    """TLS on the outside, plain TCP to ``backend`` on the inside; one thread per direction."""

    def __init__(self, backend: tuple[str, int], cert: Path, key: Path) -> None:
        self.backend = backend
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[str] = []
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
            first = client.recv(65536)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        self.requests.append(
            first.split(b"\r\n", 1)[0].decode("latin-1")
            + (" upgrade" if b"Upgrade: websocket" in first else "")
        )
        upstream = socket.create_connection(self.backend)
        upstream.sendall(first)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except (OSError, ssl.SSLError):
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self._closing = True
        self.listener.close()


@pytest.fixture(scope="module")
def tls_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GovernanceService, TlsProxy, Path]]:
    root = tmp_path_factory.mktemp("tls")
    service = GovernanceService(root=root, policy_path=write_test_policy(root / "policy.yaml")).start()
    cert, key = self_signed(root)
    host, port = service.url.split("//", 1)[1].rstrip("/").split(":")
    proxy = TlsProxy((host, int(port)), cert, key)
    try:
        yield service, proxy, cert
    finally:
        proxy.close()
        service.stop()


def tls_env(service: GovernanceService, proxy: TlsProxy, cert: Path, **extra: str) -> dict[str, str]:
    env: dict[str, str] = dict(service.kernel_env("alice", **extra))
    env["GOVERNED_SERVICE_URL"] = f"https://localhost:{proxy.port}/governance/api/"
    env["SSL_CERT_FILE"] = str(cert)
    return env


def test_audit_records_go_over_wss_through_a_tls_proxy(tls_service: Any) -> None:
    service, proxy, cert = tls_service
    kernel = GovernedKernel(tls_env(service, proxy, cert))
    marker = unique("tls-")
    try:
        for n in range(3):
            assert kernel.execute(f"print({marker!r}, {n})").status == "ok"
    finally:
        kernel.shutdown()
    records = cell_records(service, marker, until=6)
    assert [r["event_type"] for r in records] == ["cell.start", "cell.end"] * 3
    streams = [line for line in proxy.requests if "kernel/audit/stream" in line and line.endswith("upgrade")]
    assert streams, proxy.requests  # the records went over wss://, not the HTTP fallback


def test_http_fallback_over_https_also_works(tls_service: Any) -> None:
    service, proxy, cert = tls_service
    kernel = GovernedKernel(tls_env(service, proxy, cert, GOVERNED_AUDIT_STREAM="0"))
    marker = unique("tls-http-")
    try:
        assert kernel.execute(f"print({marker!r})").status == "ok"
    finally:
        kernel.shutdown()
    assert [r["event_type"] for r in cell_records(service, marker, until=2)] == ["cell.start", "cell.end"]


def test_an_untrusted_certificate_stops_cells_with_a_clear_error(tls_service: Any, tmp_path: Path) -> None:
    """Without the certificate in the trust store the kernel must not run cells (fail closed)."""
    service, proxy, _ = tls_service
    env = tls_env(service, proxy, tmp_path / "nothing.pem")
    other, _ = self_signed(tmp_path)  # a certificate, but not the proxy's
    env["SSL_CERT_FILE"] = str(other)
    kernel = GovernedKernel(env)
    ran = tmp_path / "ran"
    try:
        result = kernel.execute(f"open({str(ran)!r}, 'w').write('x')")
        assert result.status == "error", result.reply
        assert not ran.exists()
        assert "CERTIFICATE_VERIFY_FAILED" in result.reply["evalue"], result.reply
        assert "was not run" in result.reply["evalue"]
    finally:
        kernel.shutdown()
