"""Transports: how a node opens and accepts byte streams (TCP here; TLS and the
virtual network implement the same interface)."""

from ._base import Transport
from .tcp import TCPTransport
from .tls import TLSTransport

__all__ = ["TCPTransport", "TLSTransport", "Transport"]
