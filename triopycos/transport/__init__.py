"""Transports: how a node opens and accepts byte streams (TCP here; TLS and the
virtual network implement the same interface)."""

from ._base import DatagramSocket, Transport, os_error_reason
from ._nowait import NowaitSend, Receive, nowait_sender, plain_socket_fd, receiver
from .tcp import TCPTransport
from .tls import TLSTransport
from .udp import UDPSocket

__all__ = [
    "DatagramSocket",
    "NowaitSend",
    "Receive",
    "TCPTransport",
    "TLSTransport",
    "Transport",
    "UDPSocket",
    "nowait_sender",
    "os_error_reason",
    "plain_socket_fd",
    "receiver",
]
