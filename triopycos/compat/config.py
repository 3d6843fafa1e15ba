"""pycos's ``pycos.config`` settings, with pycos 4.12.2's values, for programs that
read or set them.  They change nothing here: triopycos's node has its own limits and
timeouts (``open_pycos``'s ``limits``, ``peer_timeout``), and never pickles."""

from __future__ import annotations

__all__ = [
    "IPV4_MULTICAST_GROUP",
    "IPV6_MULTICAST_GROUP",
    "MaxConnectionErrors",
    "MaxPulseInterval",
    "MinPulseInterval",
    "MsgTimeout",
    "NetPort",
    "PickleProtocolVersion",
]

PickleProtocolVersion: int | None = None
MsgTimeout = 10
MaxConnectionErrors = 10
IPV4_MULTICAST_GROUP = "239.255.97.5"
IPV6_MULTICAST_GROUP = "ff05::674f:48ba:b409:3171:9705"
NetPort = 9705
MinPulseInterval = MsgTimeout
MaxPulseInterval = 10 * MinPulseInterval
