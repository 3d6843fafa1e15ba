"""Message kinds of an authenticated peer session.

Every application frame is one codec-encoded list whose first item is a ``Kind``.
Requests carry a request id chosen by the sender; the answer is a ``REPLY`` with the
same id. Ids are per connection and per direction, so both sides may use the same
numbers at once.

=================  ===============================================  ==================
kind               fields after the kind                             answer
=================  ===============================================  ==================
REPLY              request id, value                                 (is the answer)
TASK_SEND          task id, message                                  none (one-way)
TASK_DELIVER       request id, task id, message                      1 / 0
TASK_TERMINATE     task id                                           none
TASK_MONITOR       request id, task id, monitor (a Task)             0 / -1
TASK_FINISH        request id, task id, timeout or None              the task's value
TASK_ALIVE         request id, task id                               bool
LOCATE             request id, "task"/"channel"/"rps", name,         a reference or None
                   timeout or None
CHANNEL_SEND       channel name, message[, forwarded]                none
CHANNEL_DELIVER    request id, channel name, message, timeout, n     count
                   [, forwarded]
CHANNEL_SUBSCRIBE  request id, channel name, subscriber, timeout     0 / -1
CHANNEL_UNSUB      request id, channel name, subscriber, timeout     0 / -1
PING / PONG        (nothing)                                         PONG for PING
BYE                (nothing)                                         none: the sender
                                                                     is leaving
RPS_CALL           request id, RPS name, args, kwargs, monitors      the new Task, or an
                                                                     exception saying why
TASK_RESULT        task id, value                                    none: pushed to the
                                                                     caller of an RPS when
                                                                     the task it started ends
NODE_STATUS        request id                                        a map: the node's name,
                                                                     locations, registered
                                                                     names, peers, statistics
                                                                     and version (see
                                                                     ``_node_status.py``)
ECHO               request id                                        True (a round trip, for
                                                                     ``Pycos.ping``)
=================  ===============================================  ==================

``forwarded`` (only on a message one channel forwards to another): ``[send id, hops]``,
the id of the send it belongs to (bytes, at most ``MAX_SEND_ID``: the sending node's
id and a counter) and how many channels it has passed (1 to ``MAX_HOPS``); a channel
that has handled that send already drops it, so a cycle of subscriptions cannot loop
a message and each channel handles a send once (see ``_send_ids.py``).

A request that the receiver cannot serve (unknown task id, unknown kind, bad shape,
or a failure of the receiver's own) is answered with the request's failure value, or,
for one-way messages, dropped and logged; the session itself goes on. A frame that is
not a non-empty list is a protocol error of the peer, which closes the connection.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FAILURE_VALUES", "REQUEST_KINDS", "Kind"]


class Kind:
    """Message kinds: plain ints on the wire (and in the hot path)."""

    REPLY: Final = 0
    TASK_SEND: Final = 1
    TASK_DELIVER: Final = 2
    TASK_TERMINATE: Final = 3
    TASK_MONITOR: Final = 4
    TASK_FINISH: Final = 5
    TASK_ALIVE: Final = 6
    LOCATE: Final = 7
    CHANNEL_SEND: Final = 8
    CHANNEL_DELIVER: Final = 9
    CHANNEL_SUBSCRIBE: Final = 10
    CHANNEL_UNSUB: Final = 11
    PING: Final = 12
    PONG: Final = 13
    BYE: Final = 14
    RPS_CALL: Final = 15
    TASK_RESULT: Final = 16
    NODE_STATUS: Final = 17
    ECHO: Final = 18


# What a request answers when it cannot be served (and what the caller sees when the
# peer goes away before answering).
FAILURE_VALUES: dict[int, object] = {
    Kind.TASK_DELIVER: 0,
    Kind.TASK_MONITOR: -1,
    Kind.TASK_FINISH: None,
    Kind.TASK_ALIVE: False,
    Kind.LOCATE: None,
    Kind.CHANNEL_DELIVER: 0,
    Kind.CHANNEL_SUBSCRIBE: -1,
    Kind.CHANNEL_UNSUB: -1,
    Kind.RPS_CALL: None,
    Kind.NODE_STATUS: None,
    Kind.ECHO: False,
}

REQUEST_KINDS = frozenset(FAILURE_VALUES)
