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
    # Monitors of this node's tasks and subscriptions to its channels that one peer
    # may ask this node to hold at once (TASK_MONITOR, an RPS call's monitors,
    # CHANNEL_SUBSCRIBE): more are refused (-1) and counted in
    # statistics().monitors_refused.
    max_monitors_per_peer: int = 65536
    # Connections opened at once to reach nodes this node is not peered with (a
    # reference to one of their tasks or channels was used), and of those, on behalf
    # of one peer (a monitor's status or a channel message for a monitor or
    # subscriber it asked for).  More are refused and counted in
    # statistics().dials_refused (requests of this node's own code wait instead).
    max_dials: int = 32
    max_dials_per_peer: int = 4
    # Results of tasks started by this node's RPS calls, pushed by each serving node
    # and kept for finish(): entries and bytes (encoded) per serving node.
    max_results_per_peer: int = 65536
    max_result_bytes_per_peer: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_mailbox is not None and (
            type(self.max_mailbox) is not int or self.max_mailbox < 1
        ):
            raise ValueError(f"max_mailbox must be None or an int >= 1, not {self.max_mailbox!r}")
        if type(self.max_parked_requests) is not int or self.max_parked_requests < 0:
            raise ValueError(
                f"max_parked_requests must be an int >= 0, not {self.max_parked_requests!r}"
            )
        if type(self.max_monitors_per_peer) is not int or self.max_monitors_per_peer < 0:
            raise ValueError(
                f"max_monitors_per_peer must be an int >= 0, not {self.max_monitors_per_peer!r}"
            )
        for name in (
            "max_dials",
            "max_dials_per_peer",
            "max_results_per_peer",
            "max_result_bytes_per_peer",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be an int >= 1, not {value!r}")
        if not self.hello_timeout > 0:
            raise ValueError(f"hello_timeout must be > 0, not {self.hello_timeout}")
        if self.max_handshakes < 1 or self.max_handshakes_per_address < 1:
            raise ValueError("max_handshakes and max_handshakes_per_address must be >= 1")
