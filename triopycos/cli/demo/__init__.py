"""``python -m triopycos demo``: three nodes on 127.0.0.1, each in its own process,
showing peering, locating and messaging a named task, ``deliver``, monitoring and
terminating a remote task, a channel fanning out, an RPS call, ``send_file`` with a
progress bar, and a killed node seen Offline by the others at once.

Network rule: every node listens on 127.0.0.1 only and discovery is off; the nodes
find each other by explicit ``peer()`` calls.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TextIO

import trio

from ..._exception_groups import exception_leaves
from ._director import DemoFailed, run_script
from ._workers import WorkerDied

__all__ = ["DemoFailed", "run_demo"]


async def run_demo(out: TextIO, timeout: float) -> None:
    """Run the demo, bounded by ``timeout`` seconds.  Raises ``DemoFailed`` saying
    what went wrong; every process it started has ended by then."""
    start = trio.current_time()
    with tempfile.TemporaryDirectory(prefix="triopycos-demo-") as folder:
        try:
            with trio.fail_after(timeout):
                # Workers also bound their own lives, past the demo's: a last
                # guard should both the demo and the closing of their stdin fail.
                await run_script(out, Path(folder), lifetime=timeout + 30)
        except trio.TooSlowError:
            raise DemoFailed(f"the demo took longer than {timeout:g} s") from None
        except BaseExceptionGroup as group:
            for leaf in exception_leaves(group):
                if isinstance(leaf, DemoFailed | WorkerDied | KeyboardInterrupt):
                    raise _as_failure(leaf) from None
            raise
        except WorkerDied as exc:
            raise DemoFailed(str(exc)) from None
    print(f"done in {trio.current_time() - start:.1f} s", file=out, flush=True)


def _as_failure(exc: BaseException) -> BaseException:
    return DemoFailed(str(exc)) if isinstance(exc, WorkerDied) else exc
