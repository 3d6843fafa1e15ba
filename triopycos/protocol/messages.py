"""Messages of an authenticated peer session: one small frozen class per kind.

Every application frame is one codec-encoded list: the kind (an int), then the
fields in the order of the table.  Requests carry a request id right after the
kind, chosen by the sender; the answer is a ``REPLY`` with the same id.  Ids are per
connection and per direction, so both sides may use the same numbers at once.

=================  ===================  ===============================================
kind               class                fields after the kind (and the request id)
=================  ===================  ===============================================
REPLY              ``Reply``            request id, value
TASK_SEND          ``TaskSend``         task id, message
TASK_DELIVER       ``TaskDeliver``      task id, message; answered 1 / 0
TASK_TERMINATE     ``TaskTerminate``    task id
TASK_MONITOR       ``TaskMonitor``      task id, monitor (a task); answered 0 / -1
TASK_FINISH        ``TaskFinish``       task id, timeout or None; answered with the
                                        task's value
TASK_ALIVE         ``TaskAlive``        task id; answered with a bool
LOCATE             ``Locate``           "task"/"channel"/"rps", name, timeout or None;
                                        answered with a reference or None
CHANNEL_SEND       ``ChannelSend``      channel name, message[, forwarded]
CHANNEL_DELIVER    ``ChannelDeliver``   channel name, message, timeout, n
                                        [, forwarded]; answered with a count
CHANNEL_SUBSCRIBE  ``ChannelSubscribe`` channel name, subscriber, timeout; 0 / -1
CHANNEL_UNSUB      ``ChannelUnsubscribe`` (the same); 0 / -1
PING / PONG        ``Ping`` / ``Pong``  (nothing); the session answers PING itself
BYE                ``Bye``              (nothing): the sender is leaving
RPS_CALL           ``RpsCall``          RPS name, args, kwargs, monitors[, links];
                                        answered with the new task, or an exception
                                        saying why
TASK_RESULT        ``TaskResult``       task id, value: pushed to the caller of an RPS
                                        when the task it started ends
NODE_STATUS        ``StatusRequest``    (nothing); answered with a map: the node's name,
                                        locations, registered names, peers, statistics
                                        and version (see ``_node_status.py``)
ECHO               ``Echo``             (nothing); answered True (``Pycos.ping``)
TASK_LINK          ``TaskLink``         task id, partner (a task of the sender's node):
                                        link them; answered 0 / -1
TASK_UNLINK        ``TaskUnlink``       task id, partner, exit (a ``MonitorStatus`` of
                                        the partner, or None): the link is gone; with an
                                        exit, because the partner ended
=================  ===================  ===============================================

``forwarded`` (only on a message one channel forwards to another): ``[send id,
hops]``, the id of the send it belongs to (bytes, at most ``MAX_SEND_ID``: the
sending node's id and a counter) and how many channels it has passed (1 to
``MAX_HOPS``); the classes hold them as ``sent`` (None: not forwarded) and ``hops``.
A channel that has handled that send already drops it, so a cycle of subscriptions
cannot loop a message and each channel handles a send once (see ``_send_ids.py``).

The classes are named tuples: frozen, with slots, and the cheapest objects to make
and read, which matters because one is made for every message on the hot path.
``KIND`` is the wire number; a request class has ``FAILURE``, its answer when it
cannot be served (and what the caller sees if the peer goes away first).  A
request's ``request_id`` is the peer's id on a request received; on one we send it
is 0, and the session numbers it.

Each class holds its wire form too: ``_parse`` checks a received list's shape
(raising ``MalformedMessage``; the checks of single values are in ``wire.py``) and
``_encode`` writes one, the envelope of the hot kinds by hand (``wire.py`` says why).
The classes live in ``message_base.py`` (the base classes and the session's own
messages), ``task_messages.py`` and ``node_messages.py`` (channels, names, RPS, the
node); this module is their table and their one import place (``TYPES``).
"""

from __future__ import annotations

from typing import Any, Final

from .message_base import (
    BYE,
    PING,
    PONG,
    Bye,
    Encode,
    IsReference,
    Message,
    OneWay,
    Ping,
    Pong,
    Reply,
    Request,
)
from .node_messages import (
    ChannelDeliver,
    ChannelSend,
    ChannelSubscribe,
    ChannelUnsubscribe,
    Echo,
    Locate,
    RpsCall,
    StatusRequest,
)
from .task_messages import (
    TaskAlive,
    TaskDeliver,
    TaskFinish,
    TaskLink,
    TaskMonitor,
    TaskResult,
    TaskSend,
    TaskTerminate,
    TaskUnlink,
)
from .wire import (
    LOCATABLE,
    MAX_HOPS,
    MAX_SEND_ID,
    TASK_ID_LIMIT,
    Kind,
    MalformedMessage,
    kind_name,
)

__all__ = [
    "BYE",
    "LOCATABLE",
    "MAX_HOPS",
    "MAX_SEND_ID",
    "PING",
    "PONG",
    "REQUEST_TYPES",
    "TASK_ID_LIMIT",
    "TYPES",
    "Bye",
    "ChannelDeliver",
    "ChannelSend",
    "ChannelSubscribe",
    "ChannelUnsubscribe",
    "Echo",
    "Encode",
    "IsReference",
    "Kind",
    "Locate",
    "MalformedMessage",
    "Message",
    "OneWay",
    "Ping",
    "Pong",
    "Reply",
    "Request",
    "RpsCall",
    "StatusRequest",
    "TaskAlive",
    "TaskDeliver",
    "TaskFinish",
    "TaskLink",
    "TaskMonitor",
    "TaskResult",
    "TaskSend",
    "TaskTerminate",
    "TaskUnlink",
    "kind_name",
]


TYPES: Final[dict[int, Any]] = {
    cls.KIND: cls
    for cls in (
        Reply,
        TaskSend,
        TaskDeliver,
        TaskTerminate,
        TaskMonitor,
        TaskFinish,
        TaskAlive,
        Locate,
        ChannelSend,
        ChannelDeliver,
        ChannelSubscribe,
        ChannelUnsubscribe,
        Ping,
        Pong,
        Bye,
        RpsCall,
        TaskResult,
        StatusRequest,
        Echo,
        TaskLink,
        TaskUnlink,
    )
}
#: The request classes by kind.
REQUEST_TYPES: Final[dict[int, type[Request]]] = {
    kind: cls for kind, cls in TYPES.items() if issubclass(cls, Request)
}
