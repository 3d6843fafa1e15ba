"""``Limits``: the bounds on what peers and outsiders can make a node hold or wait
for (part of a node's configuration; every service reads its own fields)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """Bounds on what peers and outsiders can make a node hold or wait for."""

    handshake_timeout: float = 10.0
    # An inbound connection's hello (after TLS's own handshake, with TLS) must arrive
    # this soon: a connection that says nothing is closed early.  Room for a TLS
    # handshake and a hello over a slow link (several round trips of 300 ms or more).
    hello_timeout: float = 5.0
    # Inbound connections in their handshake at once, and from one source address.
    max_handshakes: int = 64
    max_handshakes_per_address: int = 32
    max_frame_size: int = 64 * 1024 * 1024
    max_outbox_bytes: int = 64 * 1024 * 1024
    connect_timeout: float = 10.0
    goodbye_timeout: float = 2.0
    peer_timeout: float = 15.0
    reconnect_attempts: int = 10
    reconnect_delay: float = 1.0
    # File transfer (services/files/): transfers received at once (more are
    # refused), bytes per chunk frame, and seconds each step may take.
    max_file_transfers: int = 4
    file_chunk_size: int = 1024 * 1024
    file_idle_timeout: float = 30.0
    # Messages waiting in one task's mailbox (None: no bound).  A send beyond it is
    # refused (-1; deliver gives 0; a peer's send is dropped) and counted in
    # statistics().messages_refused.  High enough for any program that keeps up
    # with its messages, bursts of hundreds of thousands included.
    max_mailbox: int | None = 1_000_000
    # Requests of one peer waiting here at once (a locate, finish, channel deliver or
    # subscription that waits): more are answered at once with their failure value.
    max_parked_requests: int = 4096

    def __post_init__(self) -> None:
        if self.max_mailbox is not None and (
            type(self.max_mailbox) is not int or self.max_mailbox < 1
        ):
            raise ValueError(f"max_mailbox must be None or an int >= 1, not {self.max_mailbox!r}")
        if type(self.max_parked_requests) is not int or self.max_parked_requests < 0:
            raise ValueError(
                f"max_parked_requests must be an int >= 0, not {self.max_parked_requests!r}"
            )
        if not self.hello_timeout > 0:
            raise ValueError(f"hello_timeout must be > 0, not {self.hello_timeout}")
        if self.max_handshakes < 1 or self.max_handshakes_per_address < 1:
            raise ValueError("max_handshakes and max_handshakes_per_address must be >= 1")
