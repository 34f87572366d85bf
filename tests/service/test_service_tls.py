"""HTTPS: a service served with a certificate, reached by the project's own client.

The certificate is made here: a throwaway certificate authority signs one for
``127.0.0.1`` and ``localhost``. The client trusts that authority through
``SSL_CERT_FILE``, which the standard ``ssl`` module reads when it loads its default
trust store.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress

import pytest

from agentgpt.remote.errors import RemoteEnvError
from agentgpt.remote.transport import HttpTransport
from agentgpt.service.app import service_app
from agentgpt.service.keys import ApiKeys
from agentgpt.service.testing import serve_in_thread

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

KEY = "tls-key"


def _pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(subject, issuer, public_key, signing_key, *, ca, names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """``(ca_file, cert_file, key_file)``: an authority and a server certificate it signed."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test authority", "test authority", ca_key.public_key(), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        "127.0.0.1",
        "test authority",
        server_key.public_key(),
        ca_key,
        ca=False,
        names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(_pem(server_key))
    return ca_file, cert_file, key_file


async def echo(owner, payload):
    return {"owner": owner, "payload": payload}


@pytest.fixture(scope="module")
def https_url(tls_files):
    _, cert_file, key_file = tls_files

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield

    app = service_app(
        post={"/echo": echo},
        get={},
        public={"/health": lambda: {"status": "ok"}},
        keys=ApiKeys([KEY]),
        max_body_bytes=1024,
        debug=False,
        lifespan=lifespan,
    )
    with serve_in_thread(app, tls_cert=cert_file, tls_key=key_file) as url:
        yield url


def test_the_client_talks_to_a_server_over_tls(https_url, tls_files, monkeypatch):
    assert https_url.startswith("https://127.0.0.1:")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))
    transport = HttpTransport(https_url, KEY, encoding="json")
    try:
        answer = transport.post("/echo", {"a": [1, 2]})
        assert answer["payload"] == {"a": [1, 2]}
        assert transport.post("/echo", {"b": 1})["payload"] == {"b": 1}  # kept alive
        assert transport.get("/health") == {"status": "ok"}
    finally:
        transport.close()


def test_a_client_that_does_not_trust_the_certificate_is_refused(https_url, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    transport = HttpTransport(https_url, KEY, encoding="json")
    try:
        with pytest.raises(RemoteEnvError, match="CERTIFICATE_VERIFY_FAILED"):
            transport.post("/echo", {})
    finally:
        transport.close()


def test_tls_needs_both_files(tls_files):
    with pytest.raises(ValueError, match="both"), serve_in_thread(object(), tls_cert=tls_files[1]):
        pass
