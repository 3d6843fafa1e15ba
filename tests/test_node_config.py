"""A node's configuration is checked in one place (``NodeConfig.build``), which
``open_pycos`` and the compat facade's ``Pycos(...)`` share; ``statistics()`` is
composed from the snapshots of the node's parts."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from triopycos import Limits, NodeStatistics
from triopycos._node_config import NodeConfig
from triopycos._node_names import NameStatistics
from triopycos._node_network import NetworkStatistics
from triopycos._node_status import RemoteStatistics, compose_statistics
from triopycos._node_tasks import TaskStatistics
from triopycos.compat import _scheduler
from triopycos.services.discovery import DiscoveryStatistics
from triopycos.services.files import FileStatistics
from triopycos.services.peers import PeerServiceStatistics
from triopycos.transport import TCPTransport, TLSTransport


def test_defaults_and_normalization(tmp_path: Path) -> None:
    config = NodeConfig.build(node="127.0.0.1", max_file_size=0, dest_path_prefix=tmp_path)
    assert config.hosts == ("127.0.0.1",)
    assert config.max_file_size is None  # 0: no bound, as in pycos
    assert (config.dest_path, config.dest_path_is_default) == (str(tmp_path), False)
    assert config.limits == Limits()
    assert isinstance(config.transport, TCPTransport)
    assert config.announce_interval == 30.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.udp_port = 1  # type: ignore[misc]


def test_no_node_means_this_host_looked_up_at_start() -> None:
    config = NodeConfig.build()
    assert config.node is None and config.hosts == ()
    assert config.dest_path_is_default
    assert config.dest_path == os.path.join(os.environ["XDG_DATA_HOME"], "triopycos", "files")


def test_peer_timeout_and_connect_timeout_go_where_they_are_used() -> None:
    config = NodeConfig.build(
        node=["127.0.0.1", "::1"], peer_timeout=3.0, limits=Limits(connect_timeout=2.0)
    )
    assert config.hosts == ("127.0.0.1", "::1")
    assert config.limits.peer_timeout == 3.0
    assert isinstance(config.transport, TCPTransport)
    assert config.transport.connect_timeout == 2.0


def test_a_certfile_puts_the_transport_in_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    pem = tmp_path / "node.pem"
    ca.issue_cert("node").private_key_and_cert_chain_pem.write_to_path(str(pem))
    config = NodeConfig.build(node="127.0.0.1", certfile=str(pem))
    assert isinstance(config.transport, TLSTransport)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"socket_family": socket.AF_UNIX}, ValueError),
        ({"ext_ip_addr": ["10.0.0.1", "10.0.0.2"]}, ValueError),  # one node address
        ({"ext_ip_addr": "not an address"}, ValueError),
        ({"node": 5}, TypeError),
        ({"keyfile": "k.pem"}, TypeError),
        ({"node_id": b"short"}, ValueError),
        ({"peer_timeout": 0}, ValueError),
        ({"announce_interval": -1}, ValueError),
        ({"name": "x" * 10_000}, ValueError),
    ],
)
def test_bad_arguments_fail_when_building(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        NodeConfig.build(**kwargs)


# -- the compat facade builds the same configuration ----------------------------------


@pytest.fixture
def networked(monkeypatch: pytest.MonkeyPatch) -> None:
    """As after ``import pycos.netpycos``."""
    monkeypatch.setattr(_scheduler, "network_defaults", {})


@pytest.mark.usefixtures("networked")
def test_pycos_positional_arguments_in_pycos_order(tmp_path: Path) -> None:
    # pycos's Pycos() has ``notifier`` between keyfile and dest_path.
    config = _scheduler._config(
        9000, 0, "127.0.0.1", None, None, False, "n", False, "s", None, None,
        object(), str(tmp_path), 10,
    )  # fmt: skip
    assert config == NodeConfig.build(
        9000, 0, "127.0.0.1", None, None, False, "n", False, "s", None, None,
        str(tmp_path), 10, transport=config.transport,
    )  # fmt: skip
    assert (config.udp_port, config.name, config.dest_path, config.max_file_size) == (
        9000,
        "n",
        str(tmp_path),
        10,
    )


@pytest.mark.usefixtures("networked")
def test_pycos_keywords_and_our_extras() -> None:
    config = _scheduler._config(
        node="127.0.0.1", tcp_port=0, discover_peers=False, peer_timeout=4.0, notifier=None
    )
    assert config.hosts == ("127.0.0.1",) and config.limits.peer_timeout == 4.0
    assert not config.discover_peers


@pytest.mark.usefixtures("networked")
@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((), {"tcp_port": -1}, ValueError),  # the same check as open_pycos's
        ((), {"secret": b"bytes"}, TypeError),
        ((), {"no_such_argument": 1}, TypeError),
        ((9705,), {"udp_port": 9705}, TypeError),  # given twice
        (tuple(range(15)), {}, TypeError),  # one more than pycos takes
    ],
)
def test_pycos_bad_arguments_fail_as_open_pycos_s(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        _scheduler._config(*args, **kwargs)


def test_a_local_scheduler_takes_only_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scheduler, "network_defaults", None)
    config = _scheduler._config(udp_port=1, name="local", secret="ignored", tcp_port=5)
    assert (config.hosts, config.tcp_port, config.discover_peers) == (("127.0.0.1",), 0, False)
    assert (config.name, config.secret, config.udp_port) == ("local", "", 9705)


# -- statistics -------------------------------------------------------------------------


def test_statistics_are_composed_from_each_part_s_snapshot() -> None:
    stats = compose_statistics(
        TaskStatistics(tasks=1, daemon_tasks=2, tasks_started=3, messages_refused=4),
        NameStatistics(tasks=5, channels=6, rps=7),
        RemoteStatistics(monitors_refused=24, dials_refused=25, results_dropped=26),
        NetworkStatistics(
            peers=PeerServiceStatistics(
                peers=8,
                handshakes_pending=9,
                connections_accepted=10,
                connections_opened=11,
                handshakes_failed=12,
                handshakes_refused_busy=13,
                duplicate_connections=14,
                messages_refused=15,
                protocol_errors=16,
            ),
            files=FileStatistics(received=17, refused=18, deleted=19, active=20),
            discovery=DiscoveryStatistics(
                datagrams_received=21, datagrams_dropped=22, datagrams_sent=23
            ),
        ),
    )
    assert stats == NodeStatistics(
        tasks=1,
        daemon_tasks=2,
        tasks_started=3,
        registered_tasks=5,
        registered_channels=6,
        peers=8,
        handshakes_failed=12,
        handshakes_refused_busy=13,
        handshakes_pending=9,
        messages_refused=4 + 15,
        monitors_refused=24,
        dials_refused=25,
        results_dropped=26,
        protocol_errors=16,
        files_received=17,
        files_refused=18,
        datagrams_received=21,
        datagrams_dropped=22,
    )


def test_before_the_network_runs_its_counters_are_zero() -> None:
    stats = compose_statistics(
        TaskStatistics(), NameStatistics(), RemoteStatistics(), NetworkStatistics()
    )
    assert set(dataclasses.asdict(stats).values()) == {0}
