"""TLS between nodes: both sides authenticated; the secret handshake runs inside."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from nodes import connection

from triopycos import Task, open_pycos
from triopycos.transport.tls_stream import TLSStream

LIMIT = 10


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def leaf(ca: trustme.CA, tmp_path: Path, name: str) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1", "::1")
    certfile, keyfile = tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


def tls_node(name: str, **kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "name": name,
        "node": "127.0.0.1",
        "tcp_port": 0,
        "discover_peers": False,
        "secret": "s",
    }
    return open_pycos(**(args | kwargs))


async def echo(task: Task) -> Any:
    task.register("echo")
    return await task.receive()


async def test_nodes_with_certificates_from_one_ca_peer(ca: trustme.CA, tmp_path: Path) -> None:
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    a_cert, a_key = leaf(ca, tmp_path, "a")
    b_cert, b_key = leaf(ca, tmp_path, "b")
    with trio.fail_after(LIMIT):
        async with (
            tls_node("a", certfile=a_cert, keyfile=a_key, cafile=str(cafile)) as a,
            tls_node("b", certfile=b_cert, keyfile=b_key, cafile=str(cafile)) as b,
        ):
            a.spawn(echo)
            assert await b.peer(a.location) == 0

            async def client() -> int:
                r = await Task.locate("echo", a.location, timeout=5)
                assert r is not None
                return await r.deliver("over tls", timeout=5)

            assert await b.spawn(client).finish() == 1
            conn = connection(b)
            assert isinstance(conn.stream, TLSStream)


async def test_the_spec_recipe_one_self_signed_keycert_file(tmp_path: Path) -> None:
    # pycos's recipe: one self-signed certificate with its key in one PEM file
    # (sskeycert.pem), copied to every peer and passed as certfile alone.
    ca = trustme.CA()
    both = tmp_path / "sskeycert.pem"
    both.write_bytes(ca.private_key_pem.bytes() + ca.cert_pem.bytes())
    with trio.fail_after(LIMIT):
        async with tls_node("a", certfile=str(both)) as a, tls_node("b", certfile=str(both)) as b:
            assert await b.peer(a.location) == 0


async def test_a_peer_without_a_matching_certificate_cannot_peer(
    ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    a_cert, a_key = leaf(ca, tmp_path, "a")
    stranger_cert, stranger_key = leaf(trustme.CA(), tmp_path, "stranger")
    with trio.fail_after(LIMIT):
        async with (
            tls_node("a", certfile=a_cert, keyfile=a_key, cafile=str(cafile)) as a,
            tls_node(
                "stranger", certfile=stranger_cert, keyfile=stranger_key, cafile=str(cafile)
            ) as stranger,
            tls_node("plain") as plain,
        ):
            assert await stranger.peer(a.location) == -1
            assert await plain.peer(a.location) == -1  # no TLS at all
            assert a.peers() == []
            assert a.statistics().handshakes_failed >= 2


async def test_bad_tls_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="need a certfile"):
        async with tls_node("x", keyfile="k.pem"):
            pass
    with pytest.raises(FileNotFoundError):
        async with tls_node("x", certfile=str(tmp_path / "missing.pem")):
            pass
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        async with tls_node("x", certfile=str(garbage)):
            pass


async def test_the_secret_handshake_still_runs_inside_tls(ca: trustme.CA, tmp_path: Path) -> None:
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    a_cert, a_key = leaf(ca, tmp_path, "a")
    b_cert, b_key = leaf(ca, tmp_path, "b")
    with trio.fail_after(LIMIT):
        async with (
            tls_node("a", certfile=a_cert, keyfile=a_key, cafile=str(cafile)) as a,
            tls_node("b", certfile=b_cert, keyfile=b_key, cafile=str(cafile), secret="other") as b,
        ):
            assert await b.peer(a.location) == -1  # right certificate, wrong secret
            assert a.statistics().handshakes_failed == 1
