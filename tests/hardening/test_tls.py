"""TLS and mutual TLS from settings, and the refusal of plaintext on a non-loopback address."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from outpost.v1 import outpost_pb2_grpc as pb_grpc

from server import OutpostApp, StartupError
from tests.hardening.conftest import Pki, rpc_code
from tests.server.conftest import RunningServer, make_settings, start_server, txn


def _score(channel: grpc.Channel, account: str) -> grpc.StatusCode:
    return rpc_code(lambda: pb_grpc.RiskScoringStub(channel).Score(txn(account), timeout=10))


@pytest.fixture(scope="module")
def tls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(make_settings(tmp_path_factory.mktemp("tls"), tls_cert=pki.server_cert,
                                        tls_key=pki.server_key))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(make_settings(tmp_path_factory.mktemp("mtls"), tls_cert=pki.server_cert,
                                        tls_key=pki.server_key, tls_client_ca=pki.ca_cert))
    yield server
    server.stop()


def test_tls_client_scores(tls_server: RunningServer, pki: Pki) -> None:
    """A client trusting the test CA scores over TLS."""
    creds = pki.channel_credentials(with_client_cert=False)
    with grpc.secure_channel(f"127.0.0.1:{tls_server.port}", creds) as channel:
        assert _score(channel, "acct-tls-1") == grpc.StatusCode.OK


def test_plaintext_client_is_refused_by_a_tls_server(tls_server: RunningServer) -> None:
    """A plaintext client gets no answer from a TLS server (UNAVAILABLE), so no data crosses in clear."""
    with grpc.insecure_channel(f"127.0.0.1:{tls_server.port}") as channel:
        assert _score(channel, "acct-tls-2") == grpc.StatusCode.UNAVAILABLE


def test_client_trusting_another_ca_refuses_the_server(tls_server: RunningServer, pki: Pki) -> None:
    """A client that does not trust the server's CA refuses the handshake (the certificate is really checked)."""
    creds = pki.channel_credentials(with_client_cert=False, trust=pki.other_ca_cert)
    with grpc.secure_channel(f"127.0.0.1:{tls_server.port}", creds) as channel:
        assert _score(channel, "acct-tls-3") == grpc.StatusCode.UNAVAILABLE


def test_mtls_accepts_a_client_certificate_signed_by_the_client_ca(mtls_server: RunningServer, pki: Pki) -> None:
    """With OUTPOST_TLS_CLIENT_CA set, a client presenting a certificate from that CA scores."""
    creds = pki.channel_credentials(with_client_cert=True)
    with grpc.secure_channel(f"127.0.0.1:{mtls_server.port}", creds) as channel:
        assert _score(channel, "acct-mtls-1") == grpc.StatusCode.OK


def test_mtls_refuses_a_client_without_certificate(mtls_server: RunningServer, pki: Pki) -> None:
    """With OUTPOST_TLS_CLIENT_CA set, a TLS client without a certificate is refused."""
    creds = pki.channel_credentials(with_client_cert=False)
    with grpc.secure_channel(f"127.0.0.1:{mtls_server.port}", creds) as channel:
        assert _score(channel, "acct-mtls-2") == grpc.StatusCode.UNAVAILABLE


def _construct(settings_dir: Path, addr: str, **overrides: object) -> None:
    async def build() -> None:
        OutpostApp(make_settings(settings_dir, addr=addr, **overrides))

    asyncio.run(build())


@pytest.mark.parametrize("addr", ["0.0.0.0:0", "[::]:0", "127.attacker.example:0"])
def test_plaintext_on_a_non_loopback_address_is_refused(tmp_path: Path, addr: str) -> None:
    """Plaintext on 0.0.0.0, [::] or a name that merely starts with '127.' is refused before binding."""
    with pytest.raises(StartupError, match="refusing plaintext"):
        _construct(tmp_path, addr)


def test_allow_plaintext_remote_is_the_explicit_way_out(tmp_path: Path) -> None:
    """OUTPOST_ALLOW_PLAINTEXT_REMOTE lifts the refusal (checked on a name that cannot be bound, so nothing opens)."""
    with pytest.raises(StartupError) as info:
        _construct(tmp_path, "no-such-host.invalid:0", allow_plaintext_remote=True)
    assert "refusing plaintext" not in str(info.value)
