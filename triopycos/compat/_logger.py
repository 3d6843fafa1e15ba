"""pycos's ``logger``: lines ``YYYY-mm-dd HH:MM:SS name - message`` on stdout, with
levels switched by ``setLevel`` (``logger.DEBUG`` ...), as pycos scripts expect."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Logger", "logger"]


class Logger:
    DEBUG = 10
    INFO = 20
    WARN = WARNING = 30
    ERROR = 40
    CRITICAL = FATAL = 50

    def __init__(
        self,
        name: str,
        stream: TextIO | None = None,
        level: int | None = None,
        log_ms: bool = False,
    ) -> None:
        self.name = name
        self._stream = stream
        self.level = level or Logger.INFO
        self.log_ms = log_ms

    @property
    def stream(self) -> TextIO:
        # Looked up at each write, so redirecting sys.stdout later still works.
        return self._stream if self._stream is not None else sys.stdout

    def setLevel(self, level: int) -> None:
        self.level = level

    def show_ms(self, flag: bool) -> None:
        self.log_ms = bool(flag)

    def log(self, message: Any, *args: Any) -> None:
        now = time.time()
        text = str(message) % args if args else str(message)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        if self.log_ms:
            stamp += f".{int(1000 * (now - int(now))):03d}"
        self.stream.write(f"{stamp} {self.name} - {text}\n")

    def _at(self, level: int, message: Any, args: tuple[Any, ...]) -> None:
        if self.level <= level:
            self.log(message, *args)

    def debug(self, message: Any, *args: Any) -> None:
        self._at(Logger.DEBUG, message, args)

    def info(self, message: Any, *args: Any) -> None:
        self._at(Logger.INFO, message, args)

    def warning(self, message: Any, *args: Any) -> None:
        self._at(Logger.WARNING, message, args)

    warn = warning

    def error(self, message: Any, *args: Any) -> None:
        self._at(Logger.ERROR, message, args)

    def critical(self, message: Any, *args: Any) -> None:
        self._at(Logger.CRITICAL, message, args)

    fatal = critical

    def flush(self) -> None:
        self.stream.flush()

    shutdown = flush

    def __enter__(self) -> Logger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


logger = Logger("pycos")
