"""``Ref``: what travels for a task, channel or RPS (tag ``TAG_REF``)."""

from __future__ import annotations

import dataclasses

from ...values.location import Location

__all__ = ["Ref"]


@dataclasses.dataclass(frozen=True, slots=True)
class Ref:
    """What travels for a task, channel or RPS: which node, which object, where.

    ``node_id`` is the node's random id (a restarted node has a new one, so old
    references to it go stale); ``ident`` is the object's id on that node.  The API
    objects give theirs with a ``_triopycos_ref_()`` method, and a node's codec turns
    a decoded one back into an object with its ``resolve_ref`` (see ``Codec``).
    """

    kind: str
    node_id: bytes
    ident: int | str
    name: str
    location: Location
