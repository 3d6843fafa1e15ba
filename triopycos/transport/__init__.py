"""Transports: how a node opens and accepts byte streams (TCP here; TLS and the
virtual network implement the same interface)."""

from ._base import Transport
from .tcp import TCPTransport

__all__ = ["TCPTransport", "Transport"]
