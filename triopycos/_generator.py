"""Runs pycos-style generator task bodies on trio.

A generator task talks to the scheduler by yielding. The rules (pycos's):

* yielding an awaitable (anything this library returns, a trio coroutine, ...) awaits
  it and sends the result back in; if it raises, the exception is thrown in;
* yielding a generator runs it as a sub-coroutine: its return value is sent back in,
  its uncaught exception is thrown into the caller;
* yielding anything else (``None`` included) is a scheduling point that sends the
  same value straight back.

When the task is cancelled (``terminate()``, or the node closing) every generator on
the stack is closed, innermost first, so their ``finally`` blocks run, and the
cancellation carries on up.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Generator
from types import GeneratorType
from typing import Any

import trio

__all__ = ["run_generator"]

_checkpoint = trio.lowlevel.checkpoint
log = logging.getLogger("triopycos.task")


async def run_generator(gen: Generator[Any, Any, Any]) -> Any:
    """Drive ``gen`` (and the sub-generators it yields) to completion; return its value."""
    stack: list[Generator[Any, Any, Any]] = []
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                if error is None:
                    yielded = gen.send(value)
                else:
                    pending, error = error, None
                    yielded = gen.throw(pending)
            except StopIteration as stop:
                if not stack:
                    return stop.value
                gen, value = stack.pop(), stop.value
                continue
            except BaseException as exc:
                if not stack or isinstance(exc, (trio.Cancelled, KeyboardInterrupt)):
                    raise
                gen, error = stack.pop(), exc
                continue

            if isinstance(yielded, GeneratorType):
                stack.append(gen)
                gen, value = yielded, None
            elif inspect.isawaitable(yielded):
                try:
                    value = await yielded
                except trio.Cancelled:
                    raise
                except Exception as exc:
                    error = exc
            else:
                await _checkpoint()
                value = yielded
    except BaseException:
        # Close innermost first: a sub-generator's cleanup runs before its caller's.
        for g in (gen, *reversed(stack)):
            try:
                g.close()
            except Exception:
                # e.g. a generator that yields in its finally: report it, and still
                # close the callers so their cleanup runs.
                log.warning("closing generator %r failed", g, exc_info=True)
        raise
