"""Fixtures of the hardening tests: certificates, token files, a real redis-server, metric scrapes, log capture.

Every server here is real (in-process through ``tests.server.conftest.start_server`` or ``outpost serve`` as a
child process), every channel is a real gRPC channel, and Redis is a real ``redis-server`` on a free loopback port.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from server._auth import hash_token
from tests.server.conftest import RunningServer, make_settings, start_server

REDIS_BINARY = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token`` the way clients must send it."""
    return (("authorization", f"Bearer {token}"),)


def health_status(channel: grpc.Channel, service: str = "") -> int:
    """The grpc.health.v1 status of ``service`` (UNKNOWN when the call itself fails)."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    except grpc.RpcError:
        return int(health_pb2.HealthCheckResponse.UNKNOWN)
    return int(reply.status)


def wait_health(channel: grpc.Channel, status: int, timeout: float = 60.0) -> None:
    """Poll health until it reports ``status``; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        seen = health_status(channel)
        if seen == status:
            return
        time.sleep(0.1)
    names = health_pb2.HealthCheckResponse.ServingStatus
    raise AssertionError(f"health stayed {names.Name(seen)}, expected {names.Name(status)}")


# -- metrics ------------------------------------------------------------------------------------------------------
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of the /metrics endpoint as {(name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def sample(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and wanted <= set(lab))


# -- certificates ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    """PEM files of a test CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a CA that signed nothing here (a client trusting it must not accept the server)

    def channel_credentials(self, *, with_client_cert: bool, trust: Path | None = None) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=(trust or self.ca_cert).read_bytes(),
            private_key=self.client_key.read_bytes() if with_client_cert else None,
            certificate_chain=self.client_cert.read_bytes() if with_client_cert else None,
        )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Outpost tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, usage: x509.ObjectIdentifier | None = None,
                 sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate | None = None, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate (SAN 127.0.0.1, localhost) and a client certificate, generated for this run."""
    out = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key, other_key = _key(), _key(), _key(), _key()
    ca = _certificate("Outpost test CA", ca_key, None, ca_key, ca=True)
    other = _certificate("Unrelated CA", other_key, None, other_key, ca=True)
    server = _certificate("outpost", server_key, ca, ca_key, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                          sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = _certificate("gateway-01", client_key, ca, ca_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(
        ca_cert=_write(out / "ca.pem", ca),
        server_cert=_write(out / "server.pem", server),
        server_key=_write(out / "server.key", key=server_key),
        client_cert=_write(out / "client.pem", client),
        client_key=_write(out / "client.key", key=client_key),
        other_ca_cert=_write(out / "other-ca.pem", other),
    )


# -- tokens ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tokens:
    """A token file with one scorer and one admin, and the tokens themselves (which only clients hold)."""

    path: Path
    scorer: str
    admin: str


@pytest.fixture(scope="session")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Tokens:
    """A TOML token file (hashes only) for principals 'gateway-sz' (scorer) and 'ops-alice' (admin)."""
    scorer = "tok-scorer-" + secrets.token_hex(16)
    admin = "tok-admin-" + secrets.token_hex(16)
    path = tmp_path_factory.mktemp("auth") / "tokens.toml"
    path.write_text(
        "# Outpost bearer tokens: only SHA-256 hashes are stored\n"
        f'[[tokens]]\nname = "gateway-sz"\nrole = "scorer"\nsha256 = "{hash_token(scorer)}"\n\n'
        f'[[tokens]]\nname = "ops-alice"\nrole = "admin"\nsha256 = "{hash_token(admin)}"\n',
        encoding="utf-8",
    )
    return Tokens(path=path, scorer=scorer, admin=admin)


@pytest.fixture(scope="session")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A default server (embedded state) shared by tests that use their own account ids."""
    server = start_server(make_settings(tmp_path_factory.mktemp("plain")))
    yield server
    server.stop()


# -- redis -----------------------------------------------------------------------------------------------------------
class RedisServer:
    """A real redis-server on a fixed loopback port that a test can kill and start again."""

    def __init__(self, workdir: Path, *, password: str = "") -> None:
        self.port = free_port()
        self.password = password
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [REDIS_BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
                "--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64):  # +PONG, or -NOAUTH with a password: either way it answers
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with code {self.proc.returncode}")
            time.sleep(0.05)
        raise AssertionError("redis-server did not start within 20 s")

    def kill(self) -> None:
        """SIGKILL: the dependency disappears without a goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server (append-only file, fsync always) on a free port, killed after the test."""
    if not os.path.exists(REDIS_BINARY):
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir, password="redis-pw-" + secrets.token_hex(8))
    server.start()
    yield server
    server.stop()


# -- outpost serve as a child process --------------------------------------------------------------------------------
class ServeProcess:
    """``outpost serve`` as a child process whose stdout and stderr go to files the test can read."""

    def __init__(self, workdir: Path, port: int, **env: str) -> None:
        self.port = port
        self.log_path = workdir / f"serve-{port}.log"
        self._log = self.log_path.open("wb")
        full_env = dict(os.environ, OUTPOST_ADDR=f"127.0.0.1:{port}", OUTPOST_DATA_DIR=str(workdir / "data"), **env)
        self.proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env=full_env,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_serving(self, channel: grpc.Channel, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early ({self.proc.returncode}): {self.output()[-3000:]}")
            if health_status(channel) == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.2)
        raise AssertionError("server did not become SERVING in time")

    def terminate(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()


@pytest.fixture
def serve_processes() -> Iterator[list[ServeProcess]]:
    """Child servers a test started; killed at the end if still running."""
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.close()


def rpc_code(call: Any) -> grpc.StatusCode:
    """The status code of a finished call made with ``with_call``, or of the error it raised."""
    try:
        call()
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK
