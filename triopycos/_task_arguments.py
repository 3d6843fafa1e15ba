"""What users hand to tasks, checked: timeouts, task bodies (and where their ``task``
parameter is), ``throw``'s arguments."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

__all__ = ["_body_kind", "_exception_from", "check_timeout"]


def check_timeout(timeout: float | None) -> None:
    """Reject what cannot be a timeout: the caller gets a clear error, not a hang."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be >= 0, not {timeout!r}")


@functools.lru_cache(maxsize=4096)
def _body_kind(fn: Callable[..., Any]) -> tuple[bool, int | None]:
    """(is a generator function, position of a positional ``task`` parameter or -1 for
    a keyword-only one, None if there is none), cached per function."""
    if inspect.isgeneratorfunction(fn):
        is_gen = True
    elif inspect.iscoroutinefunction(fn):
        is_gen = False
    else:
        raise TypeError(
            "a task body must be a generator function or an async function, "
            f"not {type(fn).__name__} {fn!r}"
        )
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return is_gen, None
    for index, param in enumerate(params):
        if param.name == "task":
            keyword_only = param.kind is inspect.Parameter.KEYWORD_ONLY
            return is_gen, -1 if keyword_only else index
    return is_gen, None


def _exception_from(args: tuple[Any, ...]) -> BaseException:
    """pycos's ``throw`` arguments as one exception."""
    if len(args) == 1 and isinstance(args[0], tuple):
        args = args[0]
    if not args:
        raise TypeError("throw() needs an exception")
    first = args[0]
    if isinstance(first, BaseException):
        return first
    if isinstance(first, type) and issubclass(first, BaseException):
        value = args[1] if len(args) > 1 else None
        if isinstance(value, first):
            return value
        return first() if value is None else first(value)
    raise TypeError(f"throw() needs an exception or an exception type, not {first!r}")
