"""The transport layer: how a node opens and accepts byte streams and UDP sockets.

* ``_base``: the interface the services are written against (``Transport``,
  ``DatagramSocket``); TCP (``tcp``), TLS around another transport (``tls``), UDP
  (``udp``) implement it, and so does the virtual network of ``triopycos.testing``.
* ``errors``: the one place where transport errors are mapped to what the services
  catch (they never catch ``OSError``).
* ``tls_stream``: the TLS stream of peer connections (``TLSStream``), with the same
  fast paths as a plain socket.
* ``_nowait``: the peer connection's fast paths on plain sockets (a write that
  cannot wait, a leaner read).
* ``_thread_socket``: reading a plain socket from a worker thread (file content).
* ``_address``: whom a stream connects us to.
"""

from ._address import remote_address
from ._base import DatagramSocket, Transport
from ._nowait import NowaitSend, Receive, nowait_sender, receiver
from ._thread_socket import ThreadSocket, thread_socket
from .errors import os_error_reason
from .tcp import TCPTransport
from .tls import TLSTransport
from .udp import UDPSocket

__all__ = [
    "DatagramSocket",
    "NowaitSend",
    "Receive",
    "TCPTransport",
    "TLSTransport",
    "ThreadSocket",
    "Transport",
    "UDPSocket",
    "nowait_sender",
    "os_error_reason",
    "receiver",
    "remote_address",
    "thread_socket",
]
