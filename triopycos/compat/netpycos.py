"""pycos's ``netpycos`` on triopycos: importing it makes the scheduler a network node
with the spec's defaults (``udp_port=9705``, discovery on, this host's address), as
``import pycos.netpycos`` does in pycos."""

from __future__ import annotations

from .. import _node
from .._channel import Channel
from .._location import Location
from .._rps import RPS
from .._status import MonitorStatus, PeerStatus
from .._task import Task
from . import _scheduler
from ._scheduler import Pycos

__all__ = ["RPS", "RTI", "Channel", "Location", "MonitorStatus", "PeerStatus", "Pycos", "Task"]

RTI = RPS  # pycos's older name for remote procedure services

if _scheduler.network_defaults is None:
    if _scheduler.Pycos._instance is not None:
        _node.log.warning("pycos.netpycos imported after a local scheduler started: it stays local")
    _scheduler.network_defaults = {}
