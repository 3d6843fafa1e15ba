"""The library's exception set, defined in ``values/`` (below ``protocol/``, which
sends and rebuilds them), and a helper for exception groups."""

from __future__ import annotations

from .values.errors import PeerLost, PycosError, RemoteError, ServiceError, SupervisorGaveUp

__all__ = [
    "PeerLost",
    "PycosError",
    "RemoteError",
    "ServiceError",
    "SupervisorGaveUp",
    "exception_leaves",
]


def exception_leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group`` and its nested groups, flattened."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(exception_leaves(exc))
        else:
            found.append(exc)
    return found
