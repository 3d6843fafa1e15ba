"""The default ``dest_path`` is a folder of the user's own, mode 0700, never one
folder in the temporary directory that every user of the machine writes to."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

import pytest
import trio
import trio.testing

from triopycos import PycosError
from triopycos.testing import VirtualNetwork


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of the test's own, with no XDG_DATA_HOME (the usual setting)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    return home


async def default_dest_path() -> str:
    async with VirtualNetwork() as net, net.open_pycos() as pycos:
        return pycos.dest_path


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


async def test_the_default_is_private_and_in_the_users_home(
    home: Path, autojump_clock: trio.testing.MockClock
) -> None:
    where = await default_dest_path()
    assert where == str(home / ".local" / "share" / "triopycos" / "files")
    assert not where.startswith(tempfile.gettempdir() + os.sep + "triopycos")
    st = os.lstat(where)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.getuid()


async def test_xdg_data_home_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert await default_dest_path() == str(tmp_path / "data" / "triopycos" / "files")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # ignored, as XDG says
    monkeypatch.setenv("HOME", str(tmp_path))
    assert await default_dest_path() == str(tmp_path / ".local" / "share" / "triopycos" / "files")


async def test_without_a_home_a_per_user_folder_in_the_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "nonexistent"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir(mode=0o1777)
    where = await default_dest_path()
    assert where == str(tmp_path / "tmp" / f"triopycos-{os.getuid()}")
    assert mode(where) == 0o700


async def test_an_open_folder_is_made_private_again(
    home: Path, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    folder = home / ".local" / "share" / "triopycos" / "files"
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    assert await default_dest_path() == str(folder)
    assert mode(folder) == 0o700
    assert [r.levelno for r in caplog.records if "made it 0700" in r.getMessage()] == [
        logging.WARNING
    ]


async def test_a_folder_of_another_user_is_refused(
    home: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    folder = home / ".local" / "share" / "triopycos" / "files"
    folder.mkdir(parents=True, mode=0o700)
    owner = os.lstat(folder).st_uid
    monkeypatch.setattr(os, "getuid", lambda: owner + 1)  # as if another user made it
    with pytest.raises(PycosError, match=f"belongs to uid {owner}, not to this user"):
        await default_dest_path()


async def test_a_symlink_is_refused(
    home: Path, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    parent = home / ".local" / "share" / "triopycos"
    parent.mkdir(parents=True)
    (parent / "files").symlink_to(elsewhere)
    with pytest.raises(PycosError, match="is a symlink"):
        await default_dest_path()


async def test_a_dest_path_given_is_used_as_it_is(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    shared = tmp_path / "shared"
    async with VirtualNetwork() as net, net.open_pycos(dest_path=shared) as pycos:
        assert pycos.dest_path == str(shared)
    assert not shared.exists()  # made when the first file arrives, as before
