"""pycos's ``netpycos`` on triopycos: importing it makes the scheduler a network node
with the spec's defaults (``udp_port=9705``, discovery on, this host's address), as
``import pycos.netpycos`` does in pycos.  It also has all of pycos's names (pycos's
netpycos starts with ``from pycos import *``), so ``import pycos.netpycos as pycos``
works too."""

from __future__ import annotations

from . import (
    RPS,
    AsyncDBCursor,
    AsyncSocket,
    AsyncThreadPool,
    CategorizeMessages,
    Channel,
    Condition,
    Event,
    HotSwapException,
    Location,
    Lock,
    Logger,
    MonitorStatus,
    PeerStatus,
    RLock,
    Semaphore,
    Singleton,
    Struct,
    Task,
    _scheduler,
    deserialize,
    logger,
    serialize,
)
from ._scheduler import Pycos

__all__ = [
    "RPS",
    "RTI",
    "AsyncDBCursor",
    "AsyncSocket",
    "AsyncThreadPool",
    "CategorizeMessages",
    "Channel",
    "Condition",
    "Event",
    "HotSwapException",
    "Location",
    "Lock",
    "Logger",
    "MonitorStatus",
    "PeerStatus",
    "Pycos",
    "RLock",
    "Semaphore",
    "Singleton",
    "Struct",
    "Task",
    "deserialize",
    "logger",
    "serialize",
]

RTI = RPS  # pycos's older name for remote procedure services

if _scheduler.network_defaults is None:
    if _scheduler.Pycos._instance is not None:
        _scheduler.log.warning(
            "pycos.netpycos imported after a local scheduler started: it stays local"
        )
    _scheduler.network_defaults = {}
