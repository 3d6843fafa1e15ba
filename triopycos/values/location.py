"""``Location``: where a node's network services are (host address and TCP port)."""

# No `from __future__ import annotations`: the class prints as triopycos.Location
# (its __module__ is the package's), where `Final` is not a name, so only evaluated
# annotations keep typing.get_type_hints(Location) working.
from typing import Final

__all__ = ["Location"]


class Location:
    """A node's address: ``Location(host, tcp_port)``.

    Immutable, hashable and comparable by value, so it can be a dict key or travel
    inside messages.
    """

    __slots__ = ("addr", "port")

    addr: Final[str]  # type: ignore[misc]
    port: Final[int]  # type: ignore[misc]

    def __init__(self, host: str, tcp_port: int) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError(f"Location host must be a non-empty str, not {host!r}")
        if isinstance(tcp_port, bool) or not isinstance(tcp_port, int):
            raise TypeError(f"Location tcp_port must be an int, not {type(tcp_port).__name__}")
        if not 0 <= tcp_port <= 65535:
            raise ValueError(f"Location tcp_port out of range: {tcp_port}")
        object.__setattr__(self, "addr", host)
        object.__setattr__(self, "port", tcp_port)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Location is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Location):
            return NotImplemented
        return self.addr == other.addr and self.port == other.port

    def __hash__(self) -> int:
        return hash((self.addr, self.port))

    def __repr__(self) -> str:
        if ":" in self.addr:
            return f"[{self.addr}]:{self.port}"
        return f"{self.addr}:{self.port}"

    __str__ = __repr__
