"""The library's exception set: small and flat, like trio's.

Here, below ``protocol/``, because they travel: the codec rebuilds them when a peer
sends them (``RemoteError`` is what it makes of exceptions it does not know).
"""

from __future__ import annotations

__all__ = ["PeerLost", "PycosError", "RemoteError", "ServiceError", "SupervisorGaveUp"]


class PycosError(Exception):
    """Base class of errors raised by triopycos itself."""


class ServiceError(PycosError):
    """One of a node's own services failed; the message names the service and why."""

    def __init__(self, service: str, cause: BaseException) -> None:
        # Our own errors are sentences already ("cannot listen on ..."); anything
        # else is shown with its type.
        detail = str(cause) if isinstance(cause, PycosError) else repr(cause)
        super().__init__(f"triopycos service {service!r} failed: {detail}")
        self.service = service
        self.__cause__ = cause


class PeerLost(PycosError):
    """The ``type`` of a ``MonitorStatus`` sent when a monitored task's node became
    unreachable (its connection closed or went silent): its real exit is unknown."""


class SupervisorGaveUp(PycosError):
    """The ``type`` of a ``MonitorStatus`` of a ``Supervisor``'s task that gave up:
    its children ended more often than its restart intensity allows.  It ended
    them all first."""


class RemoteError(Exception):
    """An exception raised on a peer whose type is not known here.

    ``type_name`` is the remote exception's qualified type name, ``args`` its
    (decoded) arguments and ``traceback`` the remote traceback text, if any.
    """

    def __init__(self, type_name: str, args: tuple[object, ...] = (), traceback: str = "") -> None:
        super().__init__(type_name, *args)
        self.type_name = type_name
        self.remote_args = tuple(args)
        self.traceback = traceback

    def __str__(self) -> str:
        inner = ", ".join(repr(a) for a in self.remote_args)
        return f"{self.type_name}({inner})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteError):
            return NotImplemented
        return (self.type_name, self.remote_args, self.traceback) == (
            other.type_name,
            other.remote_args,
            other.traceback,
        )

    def __hash__(self) -> int:
        return hash((self.type_name, self.remote_args))
