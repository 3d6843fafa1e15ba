"""Who may be in a handshake: the admission table alone, then on the virtual network
under the autojump clock (the hello deadline, one address's flood)."""

from __future__ import annotations

import contextlib
import secrets

import cbor2
import pytest
import trio
import trio.testing

from triopycos import Limits
from triopycos.protocol.framing import encode_frame
from triopycos.protocol.handshake import PROTOCOL_VERSION
from triopycos.services.admission import Admission, Slot, source_group
from triopycos.testing import VirtualNetwork


def test_the_oldest_of_the_larger_class_makes_room() -> None:
    table = Admission(max_pending=4, max_per_address=4)
    first, second, third, fourth = (table.admit(f"10.0.0.{i}") for i in range(4))
    first.hello = True  # the only one that said hello: the silent ones go first
    table.admit("10.0.0.9")
    assert second.evicted and second.scope.cancel_called
    assert not first.evicted and not third.evicted and not fourth.evicted
    assert (table.pending, table.evicted) == (4, 1)


def test_a_flood_of_hellos_evicts_hellos_before_a_newcomer_is_read() -> None:
    table = Admission(max_pending=4, max_per_address=4)
    stalled = [table.admit("flood") for _ in range(3)]
    for slot in stalled:
        slot.hello = True  # they said hello and stall before the proof
    newcomer = table.admit("flood")  # not read yet
    table.admit("flood")
    assert stalled[0].evicted and not newcomer.evicted
    newcomer.hello = True  # read: it is now among the hellos, the youngest
    for _ in range(2):
        table.admit("flood").hello = True
    assert not newcomer.evicted and stalled[1].evicted and stalled[2].evicted


def test_a_silent_flood_never_evicts_a_peer_that_said_hello() -> None:
    table = Admission(max_pending=4, max_per_address=4)
    peer = table.admit("h")
    peer.hello = True
    flood = [table.admit("h") for _ in range(100)]
    assert not peer.evicted and sum(slot.evicted for slot in flood) == 97


def test_one_address_cannot_crowd_out_the_others() -> None:
    table = Admission(max_pending=4, max_per_address=2)
    other = table.admit("10.0.0.2")
    flood = [table.admit("10.0.0.1") for _ in range(10)]
    assert not other.evicted
    assert [slot.evicted for slot in flood] == [True] * 8 + [False] * 2
    assert table.per_address("10.0.0.1") == 2 and table.pending == 3


def test_when_full_the_address_with_most_slots_gives_one_up() -> None:
    table = Admission(max_pending=4, max_per_address=3)
    a1, a2, a3 = (table.admit("10.0.0.1") for _ in range(3))
    b1 = table.admit("10.0.0.2")
    table.admit("10.0.0.3")
    assert a1.evicted and not (a2.evicted or a3.evicted or b1.evicted)


def test_release_is_once() -> None:
    table = Admission(max_pending=2, max_per_address=2)
    slot = table.admit("h")
    table.release(slot)
    table.release(slot)
    table.release(Slot("never admitted"))
    assert table.pending == 0 and table.per_address("h") == 0


def test_bad_bounds() -> None:
    with pytest.raises(ValueError):
        Admission(0, 1)
    with pytest.raises(ValueError):
        Limits(max_handshakes_per_address=0)
    with pytest.raises(ValueError):
        Limits(hello_timeout=0)


def valid_hello() -> bytes:
    return encode_frame(
        cbor2.dumps(
            {
                "triopycos": PROTOCOL_VERSION,
                "id": secrets.token_bytes(16),
                "name": "stalls",
                "locations": [["10.0.0.99", 1]],
                "nonce": secrets.token_bytes(32),
                "purpose": "peer",
            }
        )
    )


async def closed_after(stream: trio.abc.Stream) -> float:
    """Seconds until the node closes ``stream`` (reading whatever it sends)."""
    start = trio.current_time()
    with contextlib.suppress(trio.BrokenResourceError):
        while await stream.receive_some(4096):
            pass
    return trio.current_time() - start


async def test_silence_is_closed_at_the_hello_deadline_a_hello_waits_for_the_handshake_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = Limits(hello_timeout=1.0, handshake_timeout=10.0)
    async with VirtualNetwork(seed=3) as net, net.open_pycos(name="a", limits=limits) as a:
        outsider = net.add_host().transport()
        silent = await outsider.open_stream(a.location.addr, a.location.port)
        assert await closed_after(silent) == pytest.approx(1.0, abs=0.01)
        stalls = await outsider.open_stream(a.location.addr, a.location.port)
        await stalls.send_all(valid_hello())  # and never its proof
        assert await closed_after(stalls) == pytest.approx(10.0, abs=0.01)
        assert a.statistics().handshakes_failed == 2


async def test_a_flood_from_one_address_leaves_other_addresses_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = Limits(max_handshakes=8, max_handshakes_per_address=4)
    async with (
        VirtualNetwork(seed=4) as net,
        net.open_pycos(name="a", limits=limits) as a,
        net.open_pycos(name="b", limits=limits) as b,
    ):
        attacker = net.add_host().transport()
        patient = net.add_host().transport()
        host, port = a.location.addr, a.location.port
        # A connection from elsewhere, waiting (silent, but within its deadline).
        waiting = await patient.open_stream(host, port)
        await trio.testing.wait_all_tasks_blocked()
        flood = []
        for _ in range(40):
            flood.append(await attacker.open_stream(host, port))
            await trio.testing.wait_all_tasks_blocked()
        stats = a.statistics()
        assert stats.handshakes_pending == 5 and stats.handshakes_refused_busy == 36
        assert await b.peer(a.location) == 0  # another address: it gets in
        assert await waiting.receive_some(4096)  # its challenge
        with trio.move_on_after(0.5) as still_open:
            await waiting.receive_some(4096)
        assert still_open.cancelled_caught  # not closed: it kept its slot
        assert a.statistics().handshakes_refused_busy == 36  # no one else was evicted
        for stream in [waiting, *flood]:
            await stream.aclose()


def test_ipv6_sources_count_by_their_64_network() -> None:
    # A host is usually given a whole /64: counted address by address, one flooder
    # would have 2**64 "addresses", each with its own cap.
    table = Admission(max_pending=64, max_per_address=2)
    first, second = table.admit("2001:db8::1"), table.admit("2001:db8::ffff:2")
    table.admit("2001:db8:0:0:abcd::3")  # the same /64: evicts one of its own
    assert first.evicted and not second.evicted
    assert table.per_address("2001:db8::9") == 2
    other = table.admit("2001:db8:0:1::1")  # the next /64 is another source
    assert not other.evicted and table.per_address("2001:db8:0:1::2") == 1
    assert source_group("::ffff:10.0.0.1") == "10.0.0.1" == source_group("10.0.0.1")
    assert source_group("fe80::1%eth0") == "fe80::/64"
    assert source_group("host-a") == "host-a"
