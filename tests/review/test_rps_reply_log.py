"""Review: the caller of a remote RPS logs a failed call's reply with ``%s``
(``_rps.py``, ``RPS.__call__``: "call of %r failed: %s").  The reply is the serving
peer's value: an exception whose text holds newlines and terminal codes forges log
lines, and any other value is formatted whole (issue 16, item 4: peer-supplied
text in logs is escaped)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from triopycos import RPS, Task
from triopycos.protocol.messages import Kind
from triopycos.testing import VirtualNetwork


async def test_a_failed_rps_reply_is_logged_escaped(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def service() -> None:
        pass

    async with (
        VirtualNetwork(seed=1) as net,
        net.open_pycos(name="server") as server,
        net.open_pycos(name="client") as client,
    ):

        async def register() -> int:
            return RPS(service).register()

        assert await server.spawn(register).finish() == 0

        # A hostile (authenticated) server answers calls with text of its choice.
        def hostile(conn: Any, message: list[Any]) -> None:
            conn.reply(message[1], ValueError("nope\n2099-01-01 CRITICAL forged \x1b[2J"))

        server._remote._handlers[Kind.RPS_CALL] = hostile

        async def caller(task: Task) -> object:
            rps = await RPS.locate("service", server.location, timeout=5)
            assert rps is not None
            return await rps()

        caplog.set_level(logging.WARNING, logger="triopycos")
        assert await client.spawn(caller).finish() is None
        lines = [r.getMessage() for r in caplog.records if "call of" in r.getMessage()]
        assert lines
        for line in lines:
            assert "\n" not in line and "\x1b" not in line, repr(line)
