"""Which inbound connections may be in their handshake: a flood of half-open
connections must not keep real peers out.

Every accepted connection gets a slot at once; a connection is never refused at the
door.  When there is no room, a connection that is already waiting is closed instead
(evicted): one that has waited longest, so a newcomer always gets its turn, and a
real peer, which sends its hello and proof within a round trip or two, finishes
long before a flood has cycled through all the slots behind it.

Rules:

* At most ``max_pending`` slots, at most ``max_per_address`` of them for one source
  address.  An IPv6 source counts by its /64 network (``source_group``): one host
  is usually given a whole /64, so counting single IPv6 addresses would give a
  flooder as many "addresses" as it likes.  A newcomer whose address is at its cap
  evicts one of that address's own slots: one address cannot crowd out the others.
  Otherwise, when all slots are taken, the newcomer evicts one of the address
  holding the most slots.
* Among the slots of the address (or the addresses, when several hold the most), the
  oldest of the larger of two classes goes: those that have not said hello, and
  those that said hello and owe their proof (ties: the first class).  A flood sits
  in one class and outnumbers the real peers in it, so the flood is what gets
  evicted: silent connections go before a peer that said hello; connections that
  say hello and stall go before a peer that has just arrived and not been read yet.
  A real peer, which sends its hello at once and its proof one round trip later,
  is then evicted only if as many connections as the address may hold arrive
  within that round trip.
* A slot is released when its handshake ends, whichever way; an evicted slot is
  released at once, and its connection's cancel scope cancelled (its task closes it).

The first-bytes deadline (``Limits.hello_timeout``) is the slot's cancel scope's
deadline until the hello arrives; ``services.peers`` sets and lifts it.
"""

from __future__ import annotations

import ipaddress

import trio

__all__ = ["Admission", "Slot", "source_group"]


def source_group(address: str) -> str:
    """What the per-address cap counts for a connection from ``address``: an IPv4
    address itself (an IPv4-mapped IPv6 one as IPv4), an IPv6 address's /64."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address  # not an address (the virtual network's names): itself
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Slot:
    """One inbound connection in its handshake."""

    __slots__ = ("address", "evicted", "hello", "scope", "serial")

    def __init__(self, address: str, serial: int = 0) -> None:
        self.address = address
        self.serial = serial  # admission order: smaller is older
        self.scope = trio.CancelScope()
        self.hello = False
        self.evicted = False


class Admission:
    """The table of slots (see the module docstring)."""

    def __init__(self, max_pending: int, max_per_address: int) -> None:
        if max_pending < 1 or max_per_address < 1:
            raise ValueError("max_handshakes and max_handshakes_per_address must be >= 1")
        self.max_pending = max_pending
        self.max_per_address = max_per_address
        # Per address, its slots oldest first (dicts keep insertion order).
        self._by_address: dict[str, dict[Slot, None]] = {}
        self.pending = 0
        self.evicted = 0
        self._serial = 0

    def admit(self, address: str) -> Slot:
        """A slot for a new connection from ``address``, making room if needed."""
        address = source_group(address)
        own = self._by_address.get(address)
        if own is not None and len(own) >= self.max_per_address:
            self._evict(own)
        elif self.pending >= self.max_pending:
            most = max(map(len, self._by_address.values()))
            crowded = [slots for slots in self._by_address.values() if len(slots) == most]
            self._evict(*crowded)
        self._serial += 1
        slot = Slot(address, self._serial)
        self._by_address.setdefault(address, {})[slot] = None
        self.pending += 1
        return slot

    def release(self, slot: Slot) -> None:
        """The slot's handshake is over (or it was evicted): free it, once."""
        slots = self._by_address.get(slot.address)
        if slots is None or slot not in slots:
            return
        del slots[slot]
        if not slots:
            del self._by_address[slot.address]
        self.pending -= 1

    def per_address(self, address: str) -> int:
        return len(self._by_address.get(source_group(address), ()))

    def _evict(self, *groups: dict[Slot, None]) -> None:
        silent: list[Slot] = []
        spoke: list[Slot] = []
        for slots in groups:
            for slot in slots:
                (spoke if slot.hello else silent).append(slot)
        # Each list is oldest first within a group, not across groups: min by serial.
        victim = min(silent if len(silent) >= len(spoke) else spoke, key=lambda s: s.serial)
        self.release(victim)
        victim.evicted = True
        victim.scope.cancel()
        self.evicted += 1
