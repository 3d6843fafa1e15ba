"""The command line's parsers, progress bar and parser wiring, in-process (the
commands themselves run as processes in test_cli.py)."""

from __future__ import annotations

import argparse
import io
import tomllib
from pathlib import Path

import pytest

import triopycos.cli
from triopycos.cli._exit import CommandFailed, ExitCode
from triopycos.cli._main import _outcome, build_parser
from triopycos.cli._options import (
    SECRET_ENV,
    parse_location,
    parse_size,
    read_secret,
    resolve,
    tls_files,
)
from triopycos.cli._progress import ProgressBar, render, size_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9706", ("127.0.0.1", 9706)),
        ("127.0.0.1", ("127.0.0.1", 9705)),
        (" 127.0.0.2:1 ", ("127.0.0.2", 1)),
        ("localhost:80", ("localhost", 80)),
        ("node-7.example.org", ("node-7.example.org", 9705)),
        ("[::1]:9706", ("::1", 9706)),
        ("[::1]", ("::1", 9705)),
        ("::1", ("::1", 9705)),
        ("fe80::1%lo", ("fe80::1%lo", 9705)),
        ("[2001:db8::7]:65535", ("2001:db8::7", 65535)),
    ],
)
def test_locations(text: str, expected: tuple[str, int]) -> None:
    assert parse_location(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no host"),
        (":9705", "no host"),
        ("127.0.0.1:", "no port"),
        ("127.0.0.1:abc", "not a number"),
        ("127.0.0.1:0", "not a number 1..65535"),
        ("127.0.0.1:65536", "not a number 1..65535"),
        ("127.0.0.1:-1", "not a number"),
        ("[::1]x", "in brackets"),
        ("[::1]:", "no port"),
        ("[::1", "in brackets"),
        ("[host]:1", "not an IPv6 address"),
        ("a:b:c", "not an IPv6 address"),
        ("two words", "not a host name"),
        ("http://x", "not a number"),
        ("a/b:1", "not a host name"),
    ],
)
def test_bad_locations_are_usage_errors(text: str, why: str) -> None:
    with pytest.raises(CommandFailed) as failed:
        parse_location(text)
    assert failed.value.code == ExitCode.USAGE
    assert why in failed.value.message and repr(text.strip()) in failed.value.message


async def test_numeric_addresses_resolve_to_themselves() -> None:
    location = await resolve("::1", 9705)
    assert (location.addr, location.port) == ("::1", 9705)
    assert str(await resolve("127.0.0.1", 1)) == "127.0.0.1:1"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1000", 1000),
        ("64K", 64 * 1024),
        ("64k", 64 * 1024),
        ("10M", 10 << 20),
        ("10MiB", 10 << 20),
        ("10mb", 10 << 20),
        ("2G", 2 << 30),
        ("1T", 1 << 40),
        ("7B", 7),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "-1", "1.5M", "10X", "M"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(CommandFailed) as failed:
        parse_size(text)
    assert failed.value.code == ExitCode.USAGE


def secret_args(**given: object) -> argparse.Namespace:
    return argparse.Namespace(**({"secret": None, "secret_file": None} | given))


def test_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert read_secret(secret_args()) == ""
    monkeypatch.setenv(SECRET_ENV, "from-env")
    assert read_secret(secret_args()) == "from-env"
    assert read_secret(secret_args(secret="given")) == "given"
    file = tmp_path / "secret"
    file.write_text("from-file\nsecond line ignored\n")
    assert read_secret(secret_args(secret_file=str(file))) == "from-file"
    with pytest.raises(CommandFailed) as failed:
        read_secret(secret_args(secret_file=str(tmp_path / "missing")))
    assert failed.value.code == ExitCode.USAGE and "secret file" in failed.value.message


def test_tls_files() -> None:
    def args(**given: object) -> argparse.Namespace:
        return argparse.Namespace(**({"cert": None, "key": None, "ca": None} | given))

    assert tls_files(args()) == (None, None, None)
    assert tls_files(args(cert="c", key="k", ca="a")) == ("c", "k", "a")
    for lone in ({"key": "k"}, {"ca": "a"}):
        with pytest.raises(CommandFailed, match="need --cert"):
            tls_files(args(**lone))


def test_secret_options_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["node", "--secret", "a", "--secret-file", "b"])
    assert exited.value.code == ExitCode.USAGE
    assert "not allowed with" in capsys.readouterr().err


def test_every_command_is_there_with_its_options() -> None:
    parser = build_parser()
    node = parser.parse_args(
        ["node", "--name", "n", "--node", "127.0.0.1", "--node", "::1", "--tcp-port", "0",
         "--udp-port", "9999", "--secret-file", "s", "--cert", "c", "--key", "k",
         "--dest-path", "d", "--max-file-size", "10M", "--no-discover", "--peer", "h:1",
         "--peer", "h:2"]
    )  # fmt: skip
    assert node.node == ["127.0.0.1", "::1"] and node.peer == ["h:1", "h:2"]
    assert node.discover is False and node.max_file_size == "10M" and node.tcp_port == 0
    assert parser.parse_args(["node"]).discover is False  # the default: no discovery
    assert parser.parse_args(["node", "--discover"]).discover is True
    assert parser.parse_args(["peers"]).location == "127.0.0.1:9705"
    status = parser.parse_args(["status", "h:1", "--json", "--timeout", "3"])
    assert status.json and status.timeout == 3.0 and status.node == "127.0.0.1"
    ping = parser.parse_args(["ping", "h", "-c", "2", "-i", "0"])
    assert (ping.count, ping.interval) == (2, 0.0)
    send = parser.parse_args(["send-file", "h", "f", "--dir", "d", "--overwrite"])
    assert (send.file, send.dir, send.overwrite) == ("f", "d", True)
    assert parser.parse_args(["demo"]).timeout == 60.0


def test_the_console_script_is_main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module, _, name = project["project"]["scripts"]["triopycos"].partition(":")
    assert (module, name) == ("triopycos.cli", "main")
    assert triopycos.cli.main is getattr(__import__(module, fromlist=[name]), name)


def test_outcome_digs_into_groups() -> None:
    failed = CommandFailed(ExitCode.UNREACHABLE, "x")
    group = BaseExceptionGroup("g", [ValueError(), ExceptionGroup("inner", [failed])])
    assert _outcome(group) is failed
    interrupted = KeyboardInterrupt()
    assert _outcome(BaseExceptionGroup("g", [failed, interrupted])) is interrupted
    other = ExceptionGroup("g", [ValueError()])
    assert _outcome(other) is other


# -- the progress bar ------------------------------------------------------------------


def test_size_text() -> None:
    assert size_text(0) == "0 B"
    assert size_text(1023) == "1023 B"
    assert size_text(1536) == "1.5 KiB"
    assert size_text(4 << 20) == "4.0 MiB"
    assert size_text(3 << 40) == "3072.0 GiB"


def test_render() -> None:
    assert render(0, 100, width=10) == "[..........]   0%  0 B of 100 B"
    assert render(50, 100, width=10) == "[#####.....]  50%  50 B of 100 B"
    assert render(999, 1000, width=10) == "[#########.]  99%  999 B of 1000 B"
    assert render(100, 100, width=10) == "[##########] 100%  100 B of 100 B"
    assert render(0, 0, width=4) == "[####] 100%  0 B of 0 B"  # an empty file is all sent


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_elsewhere_is_a_line_per_quarter() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, prefix="f ")
    for sent in range(0, 1001, 50):
        bar(sent, 1000)
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split("]")[1].split("%")[0].strip() for line in lines] == [
        "0",
        "25",
        "50",
        "75",
        "100",
    ]
    assert all(line.startswith("f [") for line in lines)


def test_progress_on_a_terminal_redraws_one_line_at_most_ten_times_a_second() -> None:
    now = [0.0]
    out = Terminal()
    bar = ProgressBar(out, clock=lambda: now[0])
    for sent in range(0, 1000, 10):  # 100 updates in 0.5 s
        bar(sent, 1000)
        now[0] += 0.005
    bar(1000, 1000)  # the end is always drawn
    bar.close()
    text = out.getvalue()
    draws = text.count("\r")
    assert 5 <= draws <= 7
    assert text.endswith("\x1b[K\n") and "100%" in text.rsplit("\r", 1)[1]
    assert "\n" not in text[:-1]  # one line, redrawn
