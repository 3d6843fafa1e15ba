"""What a peer session gives its driver besides the node's messages (``session.py``):
replies to our requests, messages it dropped, runs of task messages; its states; and
the refusals of ``send``."""

from __future__ import annotations

import enum
from typing import Any, Generic, NamedTuple, TypeVar

__all__ = [
    "Answer",
    "Malformed",
    "MessageTooLarge",
    "SendRefused",
    "SessionClosed",
    "SessionEvent",
    "SessionState",
    "TaskMessages",
    "Undecodable",
]

W = TypeVar("W")


class SessionEvent:
    """An event of the session itself, not a message for the node: the driver's."""

    __slots__ = ()


class _Answer(NamedTuple, Generic[W]):
    waiter: W
    value: Any


class Answer(SessionEvent, _Answer[W]):
    """The reply to one of our requests: the ``waiter`` given to ``send_request``."""

    __slots__ = ()


class _Malformed(NamedTuple):
    kind: str  # the kind's name: "TASK_SEND", "kind 99", "unknown"
    reason: str


class Malformed(SessionEvent, _Malformed):
    """A message without the shape of its kind was dropped (a request among them was
    answered with its failure value).  ``reason`` quotes the peer only through
    ``printable.describe``."""

    __slots__ = ()


class _Undecodable(NamedTuple):
    reason: str


class Undecodable(SessionEvent, _Undecodable):
    """A frame that is not valid CBOR (or holds what the codec refuses) was dropped."""

    __slots__ = ()


class TaskMessages(NamedTuple):
    """The messages of consecutive task messages (``TaskSend``) for task ``task_id``,
    in order: one event for a run of them (``PeerSession.events(runs=True)``)."""

    task_id: int
    messages: list[Any]


class SessionState(enum.Enum):
    OPEN = "open"
    SAID_BYE = "said bye"
    PEER_LEFT = "peer left"
    CLOSED = "closed"
    ERROR = "error"


class SendRefused(Exception):
    """A message the session does not send (it changed nothing)."""


class SessionClosed(SendRefused):
    """Sending after a BYE, or after the session ended."""


class MessageTooLarge(SendRefused):
    """A message whose frame would exceed ``max_frame_size``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the frame limit of {limit} bytes")
        self.size = size
        self.limit = limit
