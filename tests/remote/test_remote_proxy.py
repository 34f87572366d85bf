"""Clients behind a proxy: ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``NO_PROXY`` as curl reads them.

The proxy is a small forward proxy run by the test on loopback: it takes absolute-form
requests and ``CONNECT`` tunnels, records what it saw, and maps the made-up host name
``envserver.test`` to 127.0.0.1 (the clients themselves never resolve a proxied name).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import select
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from agentgpt.envhost import EnvServer
from agentgpt.remote import RemoteEnv
from agentgpt.remote.errors import RemoteEnvError
from agentgpt.remote.transport import HttpTransport, proxy_for
from agentgpt.service.testing import serve_in_thread

KEY = "proxy-test-key"
NAME = "envserver.test"

_PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def _clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


class _Proxy(socketserver.ThreadingTCPServer):
    """A forward proxy: pipes each client connection to the origin its first request names."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, refuse_connect: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.refuse_connect = refuse_connect
        self.heads: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        client: socket.socket = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        head_text, _, rest = head.partition(b"\r\n\r\n")
        self.server.heads.append(head_text.decode("latin-1"))
        method, target, _ = head_text.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method == "CONNECT":
            if self.server.refuse_connect:
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((_resolve(host), int(port)))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            first = rest
        else:
            origin = target.split("://", 1)[1].split("/", 1)[0]
            host, _, port = origin.rpartition(":")
            upstream = socket.create_connection((_resolve(host), int(port)))
            first = head  # absolute-form targets are valid HTTP/1.1: pass them on
        with upstream:
            if first:
                upstream.sendall(first)
            _pipe(client, upstream)


def _resolve(host: str) -> str:
    return "127.0.0.1" if host == NAME else host


def _pipe(a: socket.socket, b: socket.socket) -> None:
    peers = {a: b, b: a}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 30.0)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            peers[sock].sendall(data)


@contextlib.contextmanager
def _proxy(**kwargs) -> Iterator[_Proxy]:
    server = _Proxy(**kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for ``envserver.test`` (and 127.0.0.1) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
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
                [x509.DNSName(NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _play(env: RemoteEnv) -> None:
    obs, _ = env.reset(seed=3)
    assert obs.shape == (4,)
    obs, reward, *_ = env.step(np.int64(1))
    assert reward == 1.0


def test_http_goes_through_the_proxy_with_its_credentials(
    env_server, monkeypatch, transport_kind
) -> None:
    """HTTP requests go to the proxy in absolute form; a stream through a tunnel."""
    port = _port(env_server(api_keys=[KEY]))
    with _proxy() as proxy:
        host, proxy_port = proxy.server_address
        monkeypatch.setenv("HTTP_PROXY", f"http://user:pa%3Ass@{host}:{proxy_port}")
        with RemoteEnv(f"http://{NAME}:{port}", "CartPole-v1", KEY) as env:
            _play(env)
    first = proxy.heads[0].split("\r\n")
    if transport_kind == "http":
        assert first[0] == f"POST http://{NAME}:{port}/make HTTP/1.1"
    else:
        assert first[0] == f"CONNECT {NAME}:{port} HTTP/1.1" and len(proxy.heads) == 1
    auth = [line for line in first if line.lower().startswith("proxy-authorization:")]
    assert auth == ["Proxy-Authorization: Basic " + base64.b64encode(b"user:pa:ss").decode()]


def test_no_proxy_and_loopback_servers_are_reached_directly(env_server, monkeypatch) -> None:
    url = env_server(api_keys=[KEY])
    with _proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        with RemoteEnv(url, "CartPole-v1", KEY) as env:  # 127.0.0.1: never proxied
            _play(env)
        assert proxy_for(urlsplit(f"http://localhost:{_port(url)}")) is None
        assert proxy_for(urlsplit(f"http://[::1]:{_port(url)}")) is None
        monkeypatch.setenv("NO_PROXY", f"other.example,{NAME}")
        with pytest.raises(RemoteEnvError, match="cannot reach"):
            # Exempted, so resolved here, where the made-up name does not exist.
            RemoteEnv(f"http://{NAME}:{_port(url)}", "CartPole-v1", KEY, connect_timeout=5)
        assert proxy.heads == []


def test_https_goes_through_a_connect_tunnel_with_tls_to_the_server(
    tmp_path: Path, monkeypatch
) -> None:
    cert, key = _self_signed(tmp_path)
    server = EnvServer(api_keys=[KEY])  # its lifespan closes its envs when serving ends
    with serve_in_thread(server.app, tls_cert=cert, tls_key=key) as url, _proxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        port = _port(url)
        context = ssl.create_default_context(cafile=str(cert))
        transport = HttpTransport(f"https://{NAME}:{port}", KEY, tls_context=context)
        with RemoteEnv(f"https://{NAME}:{port}", "CartPole-v1", KEY, transport=transport) as env:
            _play(env)
        # One tunnel carried every request; the proxy saw none of them, only CONNECT.
        assert [head.split("\r\n")[0] for head in proxy.heads] == [
            f"CONNECT {NAME}:{port} HTTP/1.1"
        ]
        # Without the server's CA the client refuses the certificate, tunnel or not.
        with pytest.raises(RemoteEnvError, match="CERTIFICATE_VERIFY_FAILED"):
            RemoteEnv(f"https://{NAME}:{port}", "CartPole-v1", KEY)


def test_a_refused_tunnel_and_an_unusable_proxy_are_clear_errors(monkeypatch) -> None:
    with _proxy(refuse_connect=True) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        with pytest.raises(RemoteEnvError, match="proxy refused the tunnel: HTTP/1.1 403"):
            RemoteEnv(f"https://{NAME}:1", "CartPole-v1", KEY)
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ValueError, match="HTTPS_PROXY .* must be an http:// URL"):
        HttpTransport(f"https://{NAME}:1", KEY)
