"""Shared fixtures for the test suite.

Every test runs under the network guard (``tests/netguard.py``): in a test's trio
run, sockets may only bind, connect and send to 127.0.0.0/8 and ::1, and may not
broadcast or join multicast groups, unless the test is marked
``@pytest.mark.netns``.  See ``docs/testing.md``, "The network guard".
"""

from __future__ import annotations

import pytest
from netguard import NetGuardPlugin


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(NetGuardPlugin(), "triopycos-netguard")
