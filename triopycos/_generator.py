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

``swap_hook`` is where the compat layer plugs in pycos's hot swapping (``Task.hot_swap``:
a new body takes over the task at a yield point of its top generator).  It is None in
native use, where all it costs is one test per step that finds nothing to do.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Generator
from types import GeneratorType
from typing import Any, Protocol

import trio

__all__ = ["SwapHook", "run_generator", "swap_hook"]

_checkpoint = trio.lowlevel.checkpoint
log = logging.getLogger("triopycos.task")

Frames = list[Generator[Any, Any, Any]]


class SwapHook(Protocol):
    """Hot swapping (pycos's ``Task.hot_swap``), which the compat layer provides."""

    def started(self, callers: Frames) -> list[BaseException]:
        """A generator task starts.  ``callers`` is its live stack of suspended
        callers (empty while it runs its top generator).  Exceptions put in the list
        returned are thrown into the top generator at its next yield (what it
        yielded is dropped; inside a sub-generator: the first yield after it returns).
        A task waiting at a yield is woken by the hook itself (``Task.throw``)."""

    def replacement(self, error: BaseException) -> Generator[Any, Any, Any] | None:
        """The top generator raised ``error``: the generator that takes over the
        task instead (the failed one is closed), or None to let the error end it."""

    def hot_swappable(self, task: Any, flag: bool) -> int:
        """``task.hot_swappable(flag)``."""

    def hot_swap(self, task: Any, fn: Any, *args: Any, **kwargs: Any) -> int:
        """``task.hot_swap(fn, *args, **kwargs)``."""


swap_hook: SwapHook | None = None


async def run_generator(gen: Generator[Any, Any, Any]) -> Any:
    """Drive ``gen`` (and the sub-generators it yields) to completion; return its value."""
    stack: Frames = []
    value: Any = None
    error: BaseException | None = None
    swap = swap_hook
    inbox = swap.started(stack) if swap is not None else None
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
                if isinstance(exc, (trio.Cancelled, KeyboardInterrupt)):
                    raise
                if not stack:
                    new = swap.replacement(exc) if swap is not None else None
                    if new is None:
                        raise
                    gen.close()
                    gen, value = new, None
                    continue
                gen, error = stack.pop(), exc
                continue

            if inbox and not stack:
                # A swap waits for this yield point: it is raised here instead.
                if inspect.iscoroutine(yielded) or isinstance(yielded, GeneratorType):
                    yielded.close()
                error = inbox.pop(0)
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
