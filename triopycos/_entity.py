"""What tasks, channels and RPSs have in common: each lives on one node, and the same
class stands for references to one on another node.  Identity is (node id, ident):
the node's incarnation id and the task id or the registered name."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Self

from .protocol.codec import Ref
from .values import Location

if TYPE_CHECKING:
    from ._node import Pycos

__all__ = ["Entity"]


class Entity:
    __slots__ = ("_local", "_location", "_name", "_node", "_node_id")

    _kind: ClassVar[str]
    _node: Pycos
    _node_id: bytes
    _location: Location
    _name: str
    _local: bool

    def _bind(self, node: Pycos, name: str) -> None:
        """Make this a local entity of ``node``."""
        self._node = node
        self._node_id = node._node_id
        self._location = node.location
        self._name = name
        self._local = True

    @classmethod
    def _reference(cls, node: Pycos, ref: Ref) -> Self:
        """A reference, held on ``node``, to an entity of another node."""
        self = cls.__new__(cls)
        self._node = node
        self._node_id = ref.node_id
        self._location = ref.location
        self._name = ref.name
        self._local = False
        self._init_reference(ref)
        return self

    def _init_reference(self, ref: Ref) -> None:
        """Set what a subclass's references need besides the common fields."""

    def _ident(self) -> int | str:
        return self._name

    def _triopycos_ref_(self) -> Ref:
        return Ref(self._kind, self._node_id, self._ident(), self._name, self._location)

    @property
    def name(self) -> str:
        """The name: a task's function name, a channel's or RPS's given name."""
        return self._name

    @property
    def location(self) -> Location:
        """Location of the node it lives on."""
        return self._location

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Entity)
        return self._ident() == other._ident() and self._node_id == other._node_id

    def __hash__(self) -> int:
        return hash((self._node_id, self._ident()))
