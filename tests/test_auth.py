"""The proof key (scrypt of the secret, once per secret in a process) and the command
that prints a strong secret."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import pytest

from triopycos.cli import main
from triopycos.protocol import auth
from triopycos.protocol.auth import derive_key, new_secret


def test_the_key_is_scrypt_of_the_secret_with_the_documented_parameters() -> None:
    expected = hashlib.scrypt(
        b"s3cret", salt=b"triopycos/2 handshake key", n=2**14, r=8, p=1, dklen=32
    )
    assert derive_key("s3cret") == derive_key(b"s3cret") == expected
    assert derive_key("other") != expected


def test_one_guess_costs_a_scrypt_and_a_node_pays_it_once() -> None:
    secret = os.urandom(16)  # not in the cache yet
    started = time.process_time()
    derive_key(secret)
    guess = time.process_time() - started
    # docs/security.md: at least ~10 ms of CPU per guess (40-65 ms measured here).
    assert guess > 0.005
    started = time.process_time()
    for _ in range(1000):
        derive_key(secret)
    assert time.process_time() - started < guess  # cached: a thousand lookups < one scrypt
    assert auth.SCRYPT_N * auth.SCRYPT_R * 128 == 16 * 1024 * 1024  # its memory


def test_new_secrets_are_long_and_random() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(len(s) == 43 and s.isascii() and s.isprintable() for s in secrets)


def test_the_secret_command_prints_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["secret"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["secret"]) == 0
    second = capsys.readouterr().out.strip()
    assert len(first) == 43 and first != second


def test_the_secret_command_saves_one_for_its_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "secret.txt"
    assert main(["secret", "--file", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = path.read_text()
    assert len(saved.strip()) == 43 and saved.endswith("\n")
    assert str(path) in capsys.readouterr().out
    # Never replaced: an existing file is an error, left as it was.
    assert main(["secret", "--file", str(path)]) == 1
    assert path.read_text() == saved
    assert "File exists" in capsys.readouterr().err
