"""The network guard: a pytest plugin that makes a network-rule slip fail loudly.

The rule: tests send traffic only to 127.0.0.0/8 and ::1 (and, in tests marked
``@pytest.mark.netns``, inside network namespaces the test created itself).  They
never broadcast or multicast on the machine's real interfaces.

How it works (see also ``docs/testing.md``, "The network guard"):

* Every trio test run gets a :class:`NetGuard`.  Before pytest-trio starts any
  async fixture or the test itself, the guard installs a custom socket factory
  (:func:`trio.socket.set_custom_socket_factory`) and a custom hostname resolver
  (:func:`trio.socket.set_custom_hostname_resolver`).  Both are per-``trio.run``
  state, so they must be set inside the run: the plugin wraps the ``run=``
  function of the test's ``pytest.mark.trio`` marker (the documented
  pytest-trio hook for choosing the runner) so the guard is installed by the
  run's first task.  Hypothesis tests, for which pytest-trio ignores the marker's
  ``run=``, get the guard installed at the start of each example instead.
* Sockets from the factory are :class:`GuardedSocket`: trio's own socket class
  with ``bind``, ``connect``, ``sendto``, ``sendmsg`` and ``setsockopt``
  checked first.  Addresses are resolved exactly as trio would resolve them and
  the *numeric* result is checked and then handed on, so what reaches the system
  call is what was checked.  Refusals happen before any system call.
* The resolver answers numeric hosts and ``localhost`` without asking the system
  resolver, and refuses every other host name: a DNS query may itself leave the
  machine, and a name cannot be checked before it is resolved.
* A refusal raises :class:`NetworkRuleViolation` (an :class:`OSError`, so code
  that reports socket errors reports it) and is recorded on the guard.  Because
  library code catching ``OSError`` may swallow it, the test fails at the end
  of its trio run (or, as a last resort, at teardown) for every recorded
  violation that the test did not explicitly expect with :func:`expect_refusal`.

Out of scope: raw stdlib sockets (``socket.socket``), trio sockets built with
``trio.socket.from_stdlib_socket``/``fromfd``/``socket(fileno=...)``, and sync
tests that call ``trio.run`` themselves.  Node processes started by tests get a
loopback node from ``tests/procs.py``.
"""

from __future__ import annotations

import ipaddress
import re
import socket as stdlib_socket
import sys
import traceback
from collections.abc import Awaitable, Callable, Generator, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import pluggy
import pytest
import trio

# Subclassing trio's concrete socket class is the documented way to customise
# sockets (trio.abc.SocketFactory); the class itself is private, so a trio
# upgrade that renames it makes this import fail loudly rather than silently.
from trio._socket import _SocketType

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "RULE",
    "GuardedResolver",
    "GuardedSocket",
    "GuardedSocketFactory",
    "NetGuard",
    "NetGuardPlugin",
    "NetworkRuleFailure",
    "NetworkRuleViolation",
    "Violation",
    "current_guard",
    "expect_refusal",
    "is_allowed_host",
]

T = TypeVar("T")

RULE = "tests may only use 127.0.0.0/8 and ::1, see docs/testing.md 'The network guard'"

_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")

# Names that always mean loopback (RFC 6761).  The resolver answers these itself.
_LOCALHOST_NAMES = frozenset(
    {"localhost", "localhost.", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
)

_THIS_FILE = str(Path(__file__).resolve())
_TRIO_DIR = str(Path(trio.__file__).resolve().parent)
_PYTEST_DIR = str(Path(pytest.__file__).resolve().parent.parent / "_pytest")
_PLUGGY_DIR = str(Path(pluggy.__file__).resolve().parent)


# --------------------------------------------------------------------------------------
# The exception and the record
# --------------------------------------------------------------------------------------


class NetworkRuleViolation(OSError):
    """A socket operation refused by the network guard.

    An :class:`OSError` so that code reporting socket errors reports it, with no
    ``errno`` so that code retrying on particular errnos never mistakes it for a
    transient error.  ``violation`` links to the record kept by the guard.
    """

    violation: Violation | None = None


class NetworkRuleFailure(AssertionError):
    """Raised to fail a test whose run recorded violations it did not expect."""


@dataclass(eq=False)
class Violation:
    """One refused operation, as recorded by the guard."""

    message: str
    where: str
    acknowledged: bool = False
    """True once the test caught it with :func:`expect_refusal`."""
    reported: bool = False
    """True once a failure naming it has been raised."""


def _caller_location(depth: int = 3) -> str:
    """Where the refused call was made: the innermost ``depth`` frames outside this
    file, trio and pytest/pluggy, innermost first."""
    skipped = (_THIS_FILE, _TRIO_DIR, _PYTEST_DIR, _PLUGGY_DIR)
    found: list[str] = []
    for frame in reversed(traceback.extract_stack()):
        if not str(Path(frame.filename).resolve()).startswith(skipped):
            found.append(f"{frame.filename}:{frame.lineno} in {frame.name}")
            if len(found) == depth:
                break
    return "\n        <- ".join(found) or "<unknown>"


# --------------------------------------------------------------------------------------
# Address and option checks (pure)
# --------------------------------------------------------------------------------------


def is_allowed_host(host: str) -> bool:
    """True if ``host`` is a numeric address in 127.0.0.0/8 or ::1.

    IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) count as their IPv4
    address; a scope (``::1%lo``) is ignored.  Names are never allowed here:
    resolve them first.
    """
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is None:
            return address == _LOOPBACK_V6
        address = address.ipv4_mapped
    return address in _LOOPBACK_V4


def format_address(family: int, address: object) -> str:
    """``host:port`` (``[host]:port`` for IPv6) for messages."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        shown = host if isinstance(host, str) else repr(host)
        if family == stdlib_socket.AF_INET6 or ":" in shown:
            return f"[{shown}]:{port}"
        return f"{shown}:{port}"
    return repr(address)


def _linux_constant(name: str, linux_value: int) -> int | None:
    value = getattr(stdlib_socket, name, None)
    if isinstance(value, int):
        return value
    return linux_value if sys.platform == "linux" else None


def _multicast_options() -> dict[tuple[int, int], str]:
    """(level, optname) -> name for every option that joins a multicast group or
    picks the interface multicast goes out of.  Leaving a group, TTL and loop
    options are harmless on their own (sending still needs a refused address)."""
    ip, ip6 = stdlib_socket.IPPROTO_IP, stdlib_socket.IPPROTO_IPV6
    wanted = [
        (ip, "IP_ADD_MEMBERSHIP", 35),
        (ip, "IP_ADD_SOURCE_MEMBERSHIP", 39),
        (ip, "IP_MULTICAST_IF", 32),
        (ip6, "IPV6_JOIN_GROUP", 20),  # == IPV6_ADD_MEMBERSHIP
        (ip6, "IPV6_ADD_MEMBERSHIP", 20),
        (ip6, "IPV6_MULTICAST_IF", 17),
    ]
    # Protocol-independent multicast API (RFC 3678), valid at both levels.
    for level in (ip, ip6):
        wanted += [(level, "MCAST_JOIN_GROUP", 42), (level, "MCAST_JOIN_SOURCE_GROUP", 46)]
    options: dict[tuple[int, int], str] = {}
    for level, name, linux_value in wanted:
        value = _linux_constant(name, linux_value)
        if value is not None:
            options.setdefault((level, value), name)
    return options


MULTICAST_OPTIONS = _multicast_options()


def _as_bytes(value: object) -> bytes | None:
    try:
        return bytes(memoryview(value))  # type: ignore[arg-type]
    except TypeError:
        return None


def _multicast_detail(name: str, value: object) -> str:
    """Best-effort description of the group or interface an option names."""
    raw = _as_bytes(value)
    if raw is None:
        return ""
    try:
        if name == "IP_ADD_MEMBERSHIP" and len(raw) >= 4:
            return f" for group {ipaddress.IPv4Address(raw[:4])}"
        if name == "IP_MULTICAST_IF" and len(raw) >= 4:
            return f" for interface {ipaddress.IPv4Address(raw[:4])}"
        if name in {"IPV6_JOIN_GROUP", "IPV6_ADD_MEMBERSHIP"} and len(raw) >= 16:
            return f" for group {ipaddress.IPv6Address(raw[:16])}"
    except ValueError:  # pragma: no cover - malformed structure
        pass
    return ""


def sockopt_refusal(level: int, optname: int, value: object) -> str | None:
    """What would be refused about ``setsockopt(level, optname, value)``, or None."""
    if level == stdlib_socket.SOL_SOCKET and optname == stdlib_socket.SO_BROADCAST:
        if isinstance(value, int):
            enabled = value != 0
        else:
            raw = _as_bytes(value)
            enabled = raw is not None and any(raw)
        return f"setsockopt SO_BROADCAST={value!r}" if enabled else None
    name = MULTICAST_OPTIONS.get((level, optname))
    if name is not None:
        return f"setsockopt {name}{_multicast_detail(name, value)}"
    return None


# --------------------------------------------------------------------------------------
# The guard: state for one test, the socket class, the factory and the resolver
# --------------------------------------------------------------------------------------

_current_guard: trio.lowlevel.RunVar[NetGuard | None] = trio.lowlevel.RunVar(
    "triopycos_netguard", default=None
)


def current_guard() -> NetGuard | None:
    """The guard installed in the current trio run, if any."""
    return _current_guard.get()


class NetGuard:
    """The guard for one test: installs itself in trio runs and keeps the record."""

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.violations: list[Violation] = []

    # -- installation ------------------------------------------------------------------

    def install(self) -> None:
        """Guard sockets created from now on in the current trio run."""
        trio.socket.set_custom_socket_factory(GuardedSocketFactory(self))
        trio.socket.set_custom_hostname_resolver(GuardedResolver(self))
        _current_guard.set(self)

    def wrap(self, async_fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        """``async_fn`` with the guard installed first (for use as a run's main)."""

        @wraps(async_fn)
        async def guarded(*args: Any, **kwargs: Any) -> T:
            self.install()
            return await async_fn(*args, **kwargs)

        return guarded

    # -- recording ---------------------------------------------------------------------

    def refuse(self, what: str) -> NetworkRuleViolation:
        """Record a refusal and return the exception to raise."""
        message = f"network rule: refusing {what} ({RULE})"
        violation = Violation(message=message, where=_caller_location())
        self.violations.append(violation)
        exc = NetworkRuleViolation(message)
        exc.violation = violation
        return exc

    def unreported(self) -> list[Violation]:
        return [v for v in self.violations if not v.acknowledged and not v.reported]

    def raise_unreported(self, when: str) -> None:
        """Fail (NetworkRuleFailure) if violations were neither expected nor reported."""
        __tracebackhide__ = True
        pending = self.unreported()
        if pending:
            for violation in pending:
                violation.reported = True
            raise NetworkRuleFailure(self.summary(pending, when))

    def note_unreported(self, exc: BaseException) -> None:
        """Add a note to ``exc`` naming recorded violations it does not already carry.

        Only for test failures (``Exception``); after a skip, xfail or interrupt the
        violations stay unreported and fail the test at teardown instead.
        """
        if not isinstance(exc, Exception):
            return
        pending = self.unreported()
        for violation in pending:
            violation.reported = True
        carried = {id(v) for v in _find_violations(exc)}
        if any(id(v) not in carried for v in pending):
            exc.add_note(self.summary(pending, "during this test"))

    @staticmethod
    def summary(violations: Iterable[Violation], when: str) -> str:
        found = list(violations)
        lines = [
            f"{len(found)} network rule violation(s) {when}, even if the code that got "
            "the error swallowed it (catch expected refusals with netguard.expect_refusal):"
        ]
        for violation in found:
            lines.append(f"  - {violation.message}\n      at {violation.where}")
        return "\n".join(lines)

    # -- checks ------------------------------------------------------------------------

    def check_sockopt(self, level: int, optname: int, value: object) -> None:
        refusal = sockopt_refusal(level, optname, value)
        if refusal is not None:
            raise self.refuse(refusal)


class GuardedSocket(_SocketType):
    """trio's socket, with every operation that names a destination checked first."""

    def __init__(self, sock: stdlib_socket.socket, guard: NetGuard) -> None:
        super().__init__(sock)
        self._guard = guard

    def _adopt(self, sock: trio.socket.SocketType) -> GuardedSocket:
        """Guard a trio socket that trio made without the factory (accept, dup)."""
        return GuardedSocket(stdlib_socket.socket(fileno=sock.detach()), self._guard)

    async def _checked(self, operation: str, address: Any, *, local: bool) -> Any:
        """``address`` resolved as trio resolves it, if allowed; else refuse."""
        family = self.family
        if hasattr(stdlib_socket, "AF_UNIX") and family == stdlib_socket.AF_UNIX:
            return address  # local by construction
        if family not in (stdlib_socket.AF_INET, stdlib_socket.AF_INET6):
            raise self._guard.refuse(f"{operation} on a {family!r} socket")
        try:
            resolved = await self._resolve_address_nocp(address, local=local)
        except NetworkRuleViolation:
            raise
        except OSError as exc:
            text = format_address(family, address)
            raise self._guard.refuse(f"{operation} to {text}: it does not resolve") from exc
        if not is_allowed_host(resolved[0]):
            shown = format_address(family, resolved)
            if resolved[0] != address[0]:
                shown += f" (from {format_address(family, address)})"
            raise self._guard.refuse(f"{operation} to {shown}")
        return resolved

    async def bind(self, address: Any) -> None:
        await super().bind(await self._checked("bind", address, local=True))

    async def connect(self, address: Any) -> None:
        await super().connect(await self._checked("connect", address, local=False))

    @overload
    async def sendto(self, data: Buffer, address: tuple[object, ...] | str | Buffer, /) -> int: ...

    @overload
    async def sendto(
        self, data: Buffer, flags: int, address: tuple[object, ...] | str | Buffer, /
    ) -> int: ...

    async def sendto(self, *args: Any) -> int:
        # Like trio: data[, flags], address.
        if len(args) not in (2, 3):
            raise TypeError(f"sendto() takes 2 or 3 positional arguments ({len(args)} given)")
        checked = await self._checked("sendto", args[-1], local=False)
        if len(args) == 3:
            return await super().sendto(args[0], args[1], checked)
        return await super().sendto(args[0], checked)

    if sys.platform != "win32":

        async def sendmsg(
            self,
            buffers: Iterable[Buffer],
            ancdata: Iterable[tuple[int, int, Buffer]] = (),
            flags: int = 0,
            address: Any | None = None,
            /,
        ) -> int:
            if address is not None:
                address = await self._checked("sendmsg", address, local=False)
            return await super().sendmsg(buffers, ancdata, flags, address)

    @overload
    def setsockopt(self, level: int, optname: int, value: int | Buffer) -> None: ...

    @overload
    def setsockopt(self, level: int, optname: int, value: None, optlen: int) -> None: ...

    def setsockopt(
        self,
        level: int,
        optname: int,
        value: int | Buffer | None,
        optlen: int | None = None,
    ) -> None:
        self._guard.check_sockopt(level, optname, value)
        if optlen is None:
            if value is None:
                raise TypeError("setsockopt: value must not be None without optlen")
            super().setsockopt(level, optname, value)
        else:
            if value is not None:
                raise TypeError("setsockopt: value must be None when optlen is given")
            super().setsockopt(level, optname, None, optlen)

    async def accept(self) -> tuple[trio.socket.SocketType, Any]:
        sock, address = await super().accept()
        return self._adopt(sock), address

    def dup(self) -> trio.socket.SocketType:
        return self._adopt(super().dup())


class GuardedSocketFactory(trio.abc.SocketFactory):
    """Makes :class:`GuardedSocket` for ``trio.socket.socket()``."""

    def __init__(self, guard: NetGuard) -> None:
        self.guard = guard

    def socket(
        self,
        family: stdlib_socket.AddressFamily | int = stdlib_socket.AF_INET,
        type: stdlib_socket.SocketKind | int = stdlib_socket.SOCK_STREAM,
        proto: int = 0,
    ) -> trio.socket.SocketType:
        return GuardedSocket(stdlib_socket.socket(family, type, proto), self.guard)


_GaiEntry = (
    tuple[
        Literal[stdlib_socket.AddressFamily.AF_INET],
        stdlib_socket.SocketKind,
        int,
        str,
        tuple[str, int],
    ]
    | tuple[
        Literal[stdlib_socket.AddressFamily.AF_INET6],
        stdlib_socket.SocketKind,
        int,
        str,
        tuple[str, int, int, int] | tuple[int, bytes],
    ]
)


class GuardedResolver(trio.abc.HostnameResolver):
    """Answers ``localhost`` with loopback addresses and refuses every other name.

    trio only calls a custom resolver for non-numeric hosts (numeric ones never
    leave ``trio.socket.getaddrinfo``), so no DNS query is ever made.
    """

    def __init__(self, guard: NetGuard) -> None:
        self.guard = guard

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[_GaiEntry]:
        await trio.lowlevel.checkpoint()
        name = (host or b"").decode("ascii", "replace")
        if name.lower() not in _LOCALHOST_NAMES:
            raise self.guard.refuse(
                f"to resolve host name {name!r}: a DNS query may leave the machine and a "
                "name cannot be checked before it is resolved; use a numeric address"
            )
        numeric = stdlib_socket.AI_NUMERICHOST
        candidates = {stdlib_socket.AF_INET6: "::1", stdlib_socket.AF_INET: "127.0.0.1"}
        results: list[_GaiEntry] = []
        for candidate_family, address in candidates.items():
            if family in (stdlib_socket.AF_UNSPEC, candidate_family):
                entries: list[Any] = stdlib_socket.getaddrinfo(
                    address, port, candidate_family, type, proto, flags | numeric
                )
                results += entries
        return results

    async def getnameinfo(
        self,
        sockaddr: tuple[str, int] | tuple[str, int, int, int],
        flags: int,
    ) -> tuple[str, str]:
        await trio.lowlevel.checkpoint()
        if not is_allowed_host(sockaddr[0]):
            family = stdlib_socket.AF_INET6 if ":" in sockaddr[0] else stdlib_socket.AF_INET
            raise self.guard.refuse(f"reverse lookup of {format_address(family, sockaddr)}")
        # Loopback addresses are answered numerically: no lookup at all.
        return stdlib_socket.getnameinfo(sockaddr, flags | stdlib_socket.NI_NUMERICHOST)


# --------------------------------------------------------------------------------------
# For tests that expect a refusal
# --------------------------------------------------------------------------------------


def _find_violations(exc: BaseException) -> list[Violation]:
    """Every recorded violation carried by ``exc``: itself, its cause/context chain,
    and the members of exception groups."""
    found: list[Violation] = []
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NetworkRuleViolation) and current.violation is not None:
            found.append(current.violation)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return found


@dataclass
class Refusal:
    """What :func:`expect_refusal` caught."""

    exception: BaseException | None = None
    violations: list[Violation] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        return [v.message for v in self.violations]


@contextmanager
def expect_refusal(match: str | None = None) -> Generator[Refusal, None, None]:
    """Expect the block to raise an exception carrying a guard refusal.

    The exception may be the :class:`NetworkRuleViolation` itself or anything
    whose cause/context chain or exception group holds one (``trio.open_tcp_stream``
    wraps connect errors in a plain ``OSError``).  The violations found are
    marked as expected, so they do not fail the test; ``match`` is searched for
    in their messages.  Any other outcome fails the test.
    """
    __tracebackhide__ = True
    refusal = Refusal()
    try:
        yield refusal
    except Exception as exc:
        violations = _find_violations(exc)
        if not violations:
            raise
        refusal.exception = exc
        refusal.violations = violations
        for violation in violations:
            violation.acknowledged = True
        if match is not None and not any(re.search(match, v.message) for v in violations):
            raise NetworkRuleFailure(
                f"refusal messages {refusal.messages!r} do not match {match!r}"
            ) from exc
        return
    raise NetworkRuleFailure("expected the network guard to refuse, but nothing was refused")


# --------------------------------------------------------------------------------------
# The pytest plugin
# --------------------------------------------------------------------------------------

GUARD_KEY = pytest.StashKey[NetGuard]()


def _is_unguarded(item: pytest.Item) -> bool:
    return item.get_closest_marker("netns") is not None


def _marker_run(item: pytest.Item) -> Callable[..., Any]:
    """The runner pytest-trio would use for ``item`` (mirrors pytest_trio.plugin)."""
    for marker in item.iter_markers("trio"):
        run: Callable[..., Any] | None = marker.kwargs.get("run")
        if run is not None:
            return run
    run_name = item.config.getini("trio_run")
    if run_name != "trio":
        raise pytest.UsageError(f"netguard: unsupported trio_run = {run_name!r}")
    return trio.run


class NetGuardPlugin:
    """Registered from ``tests/conftest.py``; one instance per pytest session."""

    def __init__(self) -> None:
        self.current_item: pytest.Item | None = None

    def guard_for(self, item: pytest.Item) -> NetGuard:
        guard = item.stash.get(GUARD_KEY, None)
        if guard is None:
            guard = item.stash[GUARD_KEY] = NetGuard(item.nodeid)
        return guard

    def _guarded_run(self, item: pytest.Item, run: Callable[..., T]) -> Callable[..., T]:
        """``run`` (trio.run) whose main function installs the item's guard first."""

        @wraps(run)
        def guarded_run(async_fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> T:
            __tracebackhide__ = True
            guard = self.guard_for(item)
            try:
                result = run(guard.wrap(async_fn), *args, **kwargs)
            except BaseException as exc:
                guard.note_unreported(exc)
                raise
            guard.raise_unreported("in this test's trio run")
            return result

        guarded_run.netguard_wrapped = True  # type: ignore[attr-defined]
        return guarded_run

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        # trylast: after pytest-trio's trio_mode marks async tests with
        # pytest.mark.trio(run=trio.run).  The marker inserted first wins.
        for item in items:
            if item.get_closest_marker("trio") is None or _is_unguarded(item):
                continue
            run = _marker_run(item)
            if getattr(run, "netguard_wrapped", False):
                continue
            item.add_marker(pytest.mark.trio(run=self._guarded_run(item, run)), append=False)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        # tryfirst wrapper: runs before pytest-trio's wrapper replaces the test.
        obj = getattr(item, "obj", None)
        hypothesis = getattr(obj, "hypothesis", None)
        if (
            hypothesis is not None
            and item.get_closest_marker("trio") is not None
            and not _is_unguarded(item)
        ):
            self._wrap_hypothesis_inner_test(item, hypothesis)
        return (yield)

    def _wrap_hypothesis_inner_test(self, item: pytest.Item, hypothesis: Any) -> None:
        # pytest-trio runs Hypothesis tests with plain trio.run (ignoring the
        # marker's run=), so install the guard at the start of each example.
        # The function object is shared between parametrized items, hence the
        # lookup of the current item at call time.
        inner = hypothesis.inner_test
        if getattr(inner, "netguard_wrapped", False) or getattr(
            inner, "_trio_test_runner_wrapped", False
        ):
            return
        plugin = self

        @wraps(inner)
        async def guarded_example(*args: Any, **kwargs: Any) -> None:
            __tracebackhide__ = True
            guard = plugin.guard_for(plugin.current_item or item)
            guard.install()
            await inner(*args, **kwargs)
            guard.raise_unreported("in this example")

        guarded_example.netguard_wrapped = True  # type: ignore[attr-defined]
        hypothesis.inner_test = guarded_example

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, object, object]:
        self.current_item = item
        if not _is_unguarded(item):
            self.guard_for(item)
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, object, object]:
        __tracebackhide__ = True
        try:
            result = yield
        finally:
            self.current_item = None
        guard = item.stash.get(GUARD_KEY, None)
        if guard is not None:
            guard.raise_unreported("not reported during the test")
        return result
