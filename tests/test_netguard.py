"""The network guard (tests/netguard.py) and the node-process helper (tests/procs.py).

Refused destinations are TEST-NET addresses only (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32).  Every test here also runs under a tripwire one
layer below the guard: if the guard ever let a refused call through to trio's
real socket methods (or a host name through to the system resolver), the
tripwire raises instead of making the system call, and the test fails.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import struct
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest
import trio
from netguard import (
    RULE,
    GuardedSocket,
    NetworkRuleFailure,
    NetworkRuleViolation,
    current_guard,
    expect_refusal,
    is_allowed_host,
    sockopt_refusal,
)
from procs import NODE_ENV, NodeProcessTimeout, open_node_process
from trio._socket import _SocketType

pytest_plugins = ["pytester"]

TESTS_DIR = Path(__file__).resolve().parent


def _ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback_works(), reason="no IPv6 loopback here")


# --------------------------------------------------------------------------------------
# The tripwire: a second, independent layer below the guard
# --------------------------------------------------------------------------------------


def _loopback_or_local(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    assert isinstance(address, tuple)
    try:
        return ipaddress.ip_address(str(address[0])).is_loopback
    except ValueError:
        return False  # a name: the guard hands on numeric addresses only


@pytest.fixture(autouse=True)
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    hits: list[str] = []

    def hit(what: str) -> AssertionError:
        hits.append(what)
        return AssertionError(f"tripwire: {what} reached trio's real socket")

    def guarded_method(name: str, address_index: int) -> None:
        original: Callable[..., Any] = getattr(_SocketType, name)

        async def method(self: _SocketType, *args: Any) -> Any:
            address = args[address_index] if -len(args) <= address_index < len(args) else None
            if address is not None and not _loopback_or_local(address):
                raise hit(f"{name} to {address!r}")
            return await original(self, *args)

        monkeypatch.setattr(_SocketType, name, method)

    guarded_method("bind", 0)
    guarded_method("connect", 0)
    guarded_method("sendto", -1)
    guarded_method("sendmsg", 3)

    original_setsockopt = _SocketType.setsockopt

    def setsockopt(self: _SocketType, level: int, optname: int, *rest: Any) -> None:
        value = rest[0] if rest else None
        if sockopt_refusal(level, optname, value) is not None:
            raise hit(f"setsockopt({level}, {optname}, {value!r})")
        original_setsockopt(self, level, optname, *rest)

    monkeypatch.setattr(_SocketType, "setsockopt", setsockopt)

    original_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        flags = args[3] if len(args) > 3 else kwargs.get("flags", 0)
        numeric = bool(flags & socket.AI_NUMERICHOST)
        if not numeric and host is not None:
            raise hit(f"getaddrinfo({host!r}) with a system lookup")
        return original_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    yield hits
    assert not hits, f"refused calls reached the system: {hits}"


def udp(family: socket.AddressFamily = socket.AF_INET) -> trio.socket.SocketType:
    return trio.socket.socket(family, socket.SOCK_DGRAM)


# --------------------------------------------------------------------------------------
# The address rule, as a pure function
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.0.0.5", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("::1%lo", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("localhost", False),  # names are resolved before they are checked
        ("192.0.2.1", False),
        ("255.255.255.255", False),
        ("224.0.0.1", False),
        ("::ffff:192.0.2.1", False),
        ("fe80::1%eth0", False),
        ("2001:db8::1", False),
    ],
)
def test_is_allowed_host(host: str, allowed: bool) -> None:
    assert is_allowed_host(host) is allowed


# --------------------------------------------------------------------------------------
# Every way to get a trio socket goes through the guard
# --------------------------------------------------------------------------------------


@pytest.fixture
async def fixture_socket() -> AsyncIterator[trio.socket.SocketType]:
    # Async fixtures run in the test's trio run; the guard is installed before them.
    with udp() as sock:
        yield sock


async def test_async_fixtures_get_guarded_sockets(
    fixture_socket: trio.socket.SocketType,
) -> None:
    assert isinstance(fixture_socket, GuardedSocket)
    assert current_guard() is not None


async def test_open_tcp_listeners_stream_and_accept_are_guarded() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener:
        assert isinstance(listener.socket, GuardedSocket)
        port = listener.socket.getsockname()[1]
        async with await trio.open_tcp_stream("127.0.0.1", port) as client:
            assert isinstance(client.socket, GuardedSocket)
            async with await listener.accept() as server:
                assert isinstance(server.socket, GuardedSocket)
                await client.send_all(b"ping")
                assert await server.receive_some(4) == b"ping"


async def test_serve_tcp_is_guarded() -> None:
    async def echo(stream: trio.SocketStream) -> None:
        assert isinstance(stream.socket, GuardedSocket)
        async with stream:
            await stream.send_all(await stream.receive_some(100))

    async with trio.open_nursery() as nursery:
        listeners: list[trio.SocketListener] = await nursery.start(
            partial(trio.serve_tcp, echo, 0, host="127.0.0.1")
        )
        assert all(isinstance(listener.socket, GuardedSocket) for listener in listeners)
        port = listeners[0].socket.getsockname()[1]
        async with await trio.open_tcp_stream("localhost", port) as client:
            await client.send_all(b"hello")
            assert await client.receive_some(100) == b"hello"
        nursery.cancel_scope.cancel()


async def test_dup_is_guarded() -> None:
    with udp() as sock, sock.dup() as copy:
        assert isinstance(copy, GuardedSocket)
        with expect_refusal("198.51.100.7:9"):
            await copy.sendto(b"x", ("198.51.100.7", 9))


@hypothesis.settings(max_examples=5, deadline=None)
@hypothesis.given(port=st.integers(1, 65535))
async def test_hypothesis_examples_are_guarded(port: int) -> None:
    with udp() as sock:
        assert isinstance(sock, GuardedSocket)
        with expect_refusal(f"198.51.100.7:{port}"):
            await sock.sendto(b"x", ("198.51.100.7", port))


@pytest.mark.netns
async def test_netns_tests_are_not_guarded() -> None:
    # No traffic here: only which socket class and resolver the run has.
    assert current_guard() is None
    with trio.socket.socket() as sock:
        assert not isinstance(sock, GuardedSocket)
    assert trio.socket.set_custom_hostname_resolver(None) is None


# --------------------------------------------------------------------------------------
# Loopback works
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5"])
async def test_udp_on_ipv4_loopback(host: str) -> None:
    with udp() as receiver, udp() as sender:
        await receiver.bind((host, 0))
        await sender.bind(("127.0.0.1", 0))
        await sender.sendto(b"one", receiver.getsockname())
        await sender.sendto(b"two", 0, receiver.getsockname())
        await sender.sendmsg([b"three"], [], 0, receiver.getsockname())
        assert [(await receiver.recvfrom(10))[0] for _ in range(3)] == [b"one", b"two", b"three"]
        await sender.connect(receiver.getsockname())
        await sender.send(b"four")
        assert (await receiver.recvfrom(10))[0] == b"four"


@needs_ipv6
async def test_udp_and_tcp_on_ipv6_loopback() -> None:
    with udp(socket.AF_INET6) as receiver, udp(socket.AF_INET6) as sender:
        await receiver.bind(("::1", 0))
        await sender.sendto(b"v6", receiver.getsockname())
        assert (await receiver.recvfrom(10))[0] == b"v6"
    listeners = await trio.open_tcp_listeners(0, host="::1")
    async with listeners[0] as listener:
        port = listener.socket.getsockname()[1]
        async with await trio.open_tcp_stream("::1", port):
            pass


async def test_localhost_is_answered_without_the_system_resolver() -> None:
    results = await trio.socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    assert {entry[4][0] for entry in results} == {"127.0.0.1", "::1"}
    flags = socket.NI_NUMERICSERV
    assert await trio.socket.getnameinfo(("127.0.0.1", 80), flags) == ("127.0.0.1", "80")


async def test_harmless_socket_options_are_allowed() -> None:
    with udp() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)


# --------------------------------------------------------------------------------------
# Everything else is refused, before any system call
# --------------------------------------------------------------------------------------


def assert_rule_message(refusal_messages: list[str], *expected: str) -> None:
    assert refusal_messages, "no refusal recorded"
    for message in refusal_messages:
        assert message.startswith("network rule: refusing ")
        assert RULE in message
    for text in expected:
        assert any(text in message for message in refusal_messages), (text, refusal_messages)


async def test_violation_is_an_identifiable_oserror() -> None:
    with udp() as sock, expect_refusal() as refusal:
        await sock.sendto(b"x", ("192.0.2.255", 9705))
    exc = refusal.exception
    assert isinstance(exc, NetworkRuleViolation)
    assert isinstance(exc, OSError)
    assert exc.errno is None  # never mistaken for a retryable errno
    assert str(exc) == (
        "network rule: refusing sendto to 192.0.2.255:9705 (tests may only use "
        "127.0.0.0/8 and ::1, see docs/testing.md 'The network guard')"
    )


@pytest.mark.parametrize(
    ("family", "host", "shown"),
    [
        (socket.AF_INET, "0.0.0.0", "bind to 0.0.0.0:0"),
        (socket.AF_INET, "", "bind to 0.0.0.0:0"),
        (socket.AF_INET, "192.0.2.1", "bind to 192.0.2.1:0"),
        (socket.AF_INET6, "::", "bind to [::]:0"),
    ],
)
async def test_bind_outside_loopback_is_refused(
    family: socket.AddressFamily, host: str, shown: str
) -> None:
    with udp(family) as sock:
        with expect_refusal() as refusal:
            await sock.bind((host, 0))
        assert_rule_message(refusal.messages, shown)
        assert sock.getsockname()[1] == 0  # still unbound: no bind() happened


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
async def test_connect_outside_loopback_is_refused(kind: socket.SocketKind) -> None:
    with trio.socket.socket(socket.AF_INET, kind) as sock:
        with expect_refusal() as refusal:
            await sock.connect(("192.0.2.1", 9))
        assert_rule_message(refusal.messages, "connect to 192.0.2.1:9")
        with pytest.raises(OSError):
            sock.getpeername()  # not connected: no connect() happened


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        (("203.0.113.255", 9705), "sendto to 203.0.113.255:9705"),
        (("255.255.255.255", 9705), "sendto to 255.255.255.255:9705"),
        (("<broadcast>", 9705), "sendto to 255.255.255.255:9705"),
        (("224.0.0.1", 9705), "sendto to 224.0.0.1:9705"),
    ],
)
async def test_sendto_outside_loopback_is_refused(address: tuple[str, int], shown: str) -> None:
    with udp() as sock:
        with expect_refusal() as refusal:
            await sock.sendto(b"x", address)
        assert_rule_message(refusal.messages, shown)
        with expect_refusal() as refusal:
            await sock.sendto(b"x", 0, address)
        assert_rule_message(refusal.messages, shown)


async def test_sendmsg_outside_loopback_is_refused() -> None:
    with udp() as sock, expect_refusal() as refusal:
        await sock.sendmsg([b"x"], [], 0, ("198.51.100.7", 9705))
    assert_rule_message(refusal.messages, "sendmsg to 198.51.100.7:9705")


@needs_ipv6
@pytest.mark.parametrize("host", ["2001:db8::1", "ff02::1", "::ffff:192.0.2.1"])
async def test_ipv6_outside_loopback_is_refused(host: str) -> None:
    with udp(socket.AF_INET6) as sock, expect_refusal() as refusal:
        await sock.sendto(b"x", (host, 9705))
    assert_rule_message(refusal.messages, f"sendto to [{host}]:9705")


@pytest.mark.parametrize("value", [1, struct.pack("i", 1)])
async def test_so_broadcast_is_refused(value: int | bytes) -> None:
    with udp() as sock:
        with expect_refusal() as refusal:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, value)
        assert_rule_message(refusal.messages, "setsockopt SO_BROADCAST")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 0


async def test_multicast_membership_is_refused() -> None:
    group = socket.inet_aton("239.255.0.1")
    with udp() as sock:
        with expect_refusal() as refusal:
            sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group + socket.inet_aton("127.0.0.1")
            )
        assert_rule_message(refusal.messages, "IP_ADD_MEMBERSHIP for group 239.255.0.1")
        with expect_refusal() as refusal:
            sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("192.0.2.2")
            )
        assert_rule_message(refusal.messages, "IP_MULTICAST_IF for interface 192.0.2.2")


@needs_ipv6
async def test_ipv6_multicast_membership_is_refused() -> None:
    mreq = socket.inet_pton(socket.AF_INET6, "ff02::1") + struct.pack("@I", 0)
    with udp(socket.AF_INET6) as sock:
        with expect_refusal() as refusal:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        assert_rule_message(refusal.messages, "IPV6_JOIN_GROUP for group ff02::1")


async def test_open_tcp_stream_outside_loopback_is_refused() -> None:
    with expect_refusal() as refusal:
        await trio.open_tcp_stream("192.0.2.1", 9)
    # trio wraps connect errors in a plain OSError; the violation is its cause.
    assert type(refusal.exception) is OSError
    assert_rule_message(refusal.messages, "connect to 192.0.2.1:9")


async def test_open_tcp_listeners_on_the_wildcard_is_refused() -> None:
    with expect_refusal() as refusal:
        await trio.open_tcp_listeners(0)
    assert_rule_message(refusal.messages, "bind to")


async def test_serve_tcp_on_the_wildcard_is_refused() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        raise AssertionError("unreachable")  # pragma: no cover

    with expect_refusal() as refusal:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(trio.serve_tcp, handler, 0))
    assert_rule_message(refusal.messages, "bind to")


async def test_host_names_are_refused_without_a_lookup() -> None:
    with expect_refusal() as refusal:
        await trio.open_tcp_stream("example.com", 80)
    assert_rule_message(refusal.messages, "resolve host name 'example.com'")
    with udp() as sock, expect_refusal() as refusal:
        await sock.sendto(b"x", ("no-such-host.invalid", 9705))
    assert_rule_message(refusal.messages, "resolve host name 'no-such-host.invalid'")
    if socket.gethostname() != "localhost":  # the default node's name, in pycos
        with expect_refusal():
            await trio.socket.getaddrinfo(socket.gethostname(), 80)
    with expect_refusal() as refusal:
        await trio.socket.getnameinfo(("192.0.2.1", 80), 0)
    assert_rule_message(refusal.messages, "reverse lookup of 192.0.2.1:80")


async def test_expect_refusal_demands_a_refusal() -> None:
    with pytest.raises(NetworkRuleFailure, match="nothing was refused"), expect_refusal():
        pass
    with (
        udp() as sock,
        pytest.raises(NetworkRuleFailure, match="do not match"),
        expect_refusal("some other address"),
    ):
        await sock.sendto(b"x", ("192.0.2.1", 9))
    with pytest.raises(KeyError), expect_refusal():
        raise KeyError("not a refusal")


# --------------------------------------------------------------------------------------
# A swallowed violation still fails the test
# --------------------------------------------------------------------------------------

INNER_CONFTEST = """
from netguard import NetGuardPlugin

def pytest_configure(config):
    config.pluginmanager.register(NetGuardPlugin(), "netguard")
"""

INNER_TESTS = """
import socket

import hypothesis
import hypothesis.strategies as st
import pytest
import trio

from netguard import expect_refusal


async def swallow(awaitable):
    try:
        await awaitable
    except OSError:
        pass


async def test_swallowed_sendto():
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await swallow(sock.sendto(b"x", ("192.0.2.255", 9705)))


def test_swallowed_in_a_sync_helper_run():
    pass  # sync tests have no trio run: nothing to guard, nothing recorded


@pytest.fixture
async def listener_on_the_wildcard():
    await swallow(trio.open_tcp_listeners(0))
    yield


async def test_swallowed_in_fixture_setup(listener_on_the_wildcard):
    pass


@pytest.fixture
async def connects_at_teardown():
    yield
    with trio.socket.socket() as sock:
        await swallow(sock.connect(("198.51.100.7", 9)))


async def test_swallowed_in_fixture_teardown(connects_at_teardown):
    pass


async def test_other_failure_gets_a_note():
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await swallow(sock.sendto(b"x", ("203.0.113.9", 9705)))
    assert 1 == 2


@hypothesis.settings(max_examples=3, deadline=None, database=None)
@hypothesis.given(st.integers(1, 100))
async def test_swallowed_in_hypothesis(n):
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await swallow(sock.sendto(b"x", ("198.51.100.8", n)))


async def test_swallowed_then_skipped():
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await swallow(sock.sendto(b"x", ("198.51.100.9", 9705)))
    pytest.skip("a skip does not hide the violation")


async def test_expected_refusal_passes():
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with expect_refusal("192.0.2.255:9705"):
            await sock.sendto(b"x", ("192.0.2.255", 9705))
"""


def test_swallowed_violations_fail_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        textwrap.dedent(
            """
            [pytest]
            trio_mode = true
            filterwarnings = error
            markers =
                netns: runs inside a network namespace the test created itself
            """
        )
    )
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=2, failed=5, skipped=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*network rule violation(s)*",
            "*network rule: refusing sendto to 192.0.2.255:9705 (tests may only use*",
        ]
    )
    output = result.stdout.str()
    assert "FAILED test_inner.py::test_swallowed_sendto" in output
    assert "FAILED test_inner.py::test_swallowed_in_fixture_setup" in output
    assert "refusing bind to 0.0.0.0:0" in output
    assert "FAILED test_inner.py::test_swallowed_in_fixture_teardown" in output
    assert "refusing connect to 198.51.100.7:9" in output
    assert "FAILED test_inner.py::test_other_failure_gets_a_note" in output
    assert "refusing sendto to 203.0.113.9:9705" in output
    assert "FAILED test_inner.py::test_swallowed_in_hypothesis" in output
    assert "refusing sendto to 198.51.100.8:" in output
    assert "ERROR test_inner.py::test_swallowed_then_skipped" in output
    assert "refusing sendto to 198.51.100.9:9705" in output
    assert "PASSED test_inner.py::test_expected_refusal_passes" in output


# --------------------------------------------------------------------------------------
# procs.open_node_process
# --------------------------------------------------------------------------------------

PRINT_NODE = f"import os; print('node=' + os.environ[{NODE_ENV!r}], flush=True)"


@pytest.mark.parametrize("node", ["127.0.0.1", "127.0.0.5", "::1"])
async def test_node_process_gets_the_loopback_node(node: str) -> None:
    async with open_node_process(["-c", PRINT_NODE], node=node) as proc:
        await proc.wait_for_output(f"node={node}")
        assert await proc.wait() == 0
    assert proc.stdout == f"node={node}\n"


async def test_node_process_default_node_is_loopback() -> None:
    async with open_node_process(["-c", PRINT_NODE]) as proc:
        assert await proc.wait() == 0
    assert proc.stdout == "node=127.0.0.1\n"


@pytest.mark.parametrize(
    ("node", "shown"),
    [
        ("192.0.2.1", "node '192.0.2.1' outside a network namespace"),
        ("0.0.0.0", "node '0.0.0.0' outside a network namespace"),
        ("localhost", "node 'localhost': give a numeric address"),
        ("2001:db8::1", "node '2001:db8::1' outside a network namespace"),
    ],
)
async def test_node_process_refuses_other_nodes(node: str, shown: str) -> None:
    with expect_refusal() as refusal:
        async with open_node_process(["-c", "pass"], node=node):
            raise AssertionError("unreachable")  # pragma: no cover
    assert_rule_message(refusal.messages, shown)


async def test_node_process_argument_checks() -> None:
    with pytest.raises(TypeError, match="sequence of arguments"):
        async with open_node_process("-c pass"):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="not a network namespace"):
        async with open_node_process(["-c", "pass"], netns=f"no-such-{uuid.uuid4().hex}"):
            pass  # pragma: no cover


async def test_node_process_is_stopped_at_the_end_of_the_block() -> None:
    code = "import time; print('up', flush=True); time.sleep(600)"
    async with open_node_process(["-c", code]) as proc:
        await proc.wait_for_output("up")
    assert proc.returncode == -signal.SIGTERM


def _gone(pid: int) -> bool:
    """The process no longer exists, or is a zombie (killed; waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


async def test_node_process_group_is_killed_and_output_kept() -> None:
    code = textwrap.dedent(
        """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print("child", child.pid, flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        child.wait()
        """
    )
    with pytest.raises(KeyError) as info:
        async with open_node_process(["-c", code]) as proc:
            await proc.wait_for_output("child ")
            await proc.wait_for_output("to stderr", stream="stderr")
            raise KeyError("boom")
    grandchild = int(proc.stdout.split()[1])
    with trio.fail_after(10):
        while True:  # polling /proc: nothing to wait on
            if _gone(grandchild):
                break
            await trio.sleep(0.05)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "child " in notes
    assert "to stderr" in notes


async def test_node_process_hard_timeout() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    with trio.fail_after(30), pytest.raises(NodeProcessTimeout, match=r"killed after 0\.5 s"):
        async with open_node_process(["-c", code], timeout=0.5) as proc:
            await proc.wait()
    assert proc.timed_out
    assert proc.returncode == -signal.SIGKILL


async def test_node_process_wait_for_output_reports_early_exit() -> None:
    async with open_node_process(["-c", "print('bye')"]) as proc:
        with pytest.raises(EOFError, match="'hello'"):
            await proc.wait_for_output("hello")


async def _ip(*args: str) -> None:
    await trio.run_process(["ip", *args], capture_stdout=True, capture_stderr=True)


@pytest.mark.netns
@pytest.mark.skipif(
    shutil.which("ip") is None or os.geteuid() != 0, reason="needs root and iproute2"
)
async def test_node_process_in_a_network_namespace() -> None:
    name = f"triopycos-test-{uuid.uuid4().hex[:8]}"
    try:
        await _ip("netns", "add", name)
    except Exception as exc:
        pytest.skip(f"cannot create a network namespace here: {exc!r}")
    try:
        # The address exists only inside the namespace this test created.
        await _ip("-n", name, "link", "set", "lo", "up")
        await _ip("-n", name, "addr", "add", "10.123.45.1/32", "dev", "lo")
        code = textwrap.dedent(
            f"""
            import os, socket
            node = os.environ[{NODE_ENV!r}]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((node, 0))
                print("bound", s.getsockname()[0], flush=True)
            """
        )
        async with open_node_process(["-c", code], node="10.123.45.1", netns=name) as proc:
            assert await proc.wait() == 0, proc.describe()
        assert proc.stdout == "bound 10.123.45.1\n"
    finally:
        with trio.CancelScope(shield=True):
            await _ip("netns", "del", name)


async def test_default_node_with_discovery_fails_with_the_guard_error() -> None:
    # Issue item: the default node (this host's address, found by resolving its name)
    # with discover_peers=True is stopped by the guard before any socket exists.
    from triopycos import PycosError, open_pycos

    with expect_refusal() as refusal:
        async with open_pycos():
            pass
    assert isinstance(refusal.exception, PycosError)
    assert "pass node=" in str(refusal.exception)
