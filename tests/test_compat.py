"""triopycos.compat: pycos programs run by ``python -m triopycos.compat SCRIPT``.

Each test writes a small pycos program (pycos's idioms: generator tasks with
``task=None``, the main thread creating tasks and waiting with ``value()``, the
scheduler finishing at exit) and runs it in a process on loopback; the scripts that
use the network pass ``node`` explicitly (the default node is the host's address).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import trio
from procs import NodeProcess, open_node_process

WAIT = 30


async def run_script(tmp_path: Path, code: str, *args: str) -> NodeProcess:
    """Run ``code`` as a pycos script under the runner (``tmp_path`` is its working
    folder and its TMPDIR); it must exit 0."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    async with open_node_process(
        ["-m", "triopycos.compat", str(script), *args],
        cwd=str(tmp_path),
        env={"TMPDIR": str(tmp_path)},
        timeout=WAIT,
    ) as proc:
        with trio.fail_after(WAIT):
            code_ = await proc.wait()
    assert code_ == 0, proc.describe()
    return proc


def output(proc: NodeProcess) -> list[str]:
    """Printed lines, without the scheduler's log lines."""
    return [line for line in proc.stdout.splitlines() if " pycos - " not in line]


async def test_generator_and_async_tasks_from_the_main_thread(tmp_path: Path) -> None:
    proc = await run_script(
        tmp_path,
        """
        import pycos

        def doubler(task=None):
            while True:
                n = yield task.receive()
                if n is None:
                    return "doubler done"
                n[1].send(n[0] * 2)

        async def asker(other, task):
            total = 0
            for i in range(5):
                other.send((i, task))
                total += await task.receive()
            other.send(None)
            return total

        d = pycos.Task(doubler)
        a = pycos.Task(asker, d)          # native and generator tasks, one class
        print("asker", a.value())         # the main thread waits, as in pycos
        print("doubler", d.value())
        print("is Task", isinstance(a, pycos.Task), isinstance(d, pycos.Task))

        def late(task=None):
            yield task.sleep(0.2)
            print("late task finished before exit")

        pycos.Task(late)                  # the scheduler finishes it at exit
        """,
    )
    assert output(proc) == [
        "asker 20",
        "doubler doubler done",
        "is Task True True",
        "late task finished before exit",
    ]


async def test_send_terminate_daemon_and_monitor_from_plain_code(tmp_path: Path) -> None:
    proc = await run_script(
        tmp_path,
        """
        import threading
        import pycos

        got = threading.Event()

        def echo(task=None):
            task.set_daemon()
            while True:
                msg = yield task.receive()
                print("echo got", msg)
                got.set()

        def watcher(target, task=None):
            yield task.monitor(target)
            status = yield task.receive()
            print("monitor:", status.type.__name__)

        e = pycos.Task(echo)
        w = pycos.Task(watcher, e)
        e.send("from main")               # a plain thread sends
        got.wait(10)
        code = e.terminate()
        w.value()                         # (prints in the scheduler's thread)
        print("terminate", code)
        print("alive", e.is_alive())
        """,
    )
    assert output(proc) == [
        "echo got from main",
        "monitor: GeneratorExit",
        "terminate 0",
        "alive False",
    ]


async def test_suspend_resume_throw_and_categories(tmp_path: Path) -> None:
    proc = await run_script(
        tmp_path,
        """
        import pycos

        def sleeper(task=None):
            got = yield task.suspend(10, alarm_value="timed out")
            print("resumed with", got)
            got = yield task.suspend(0.05, alarm_value="timed out")
            print("second", got)
            try:
                yield task.receive()
            except ValueError as exc:
                print("thrown:", exc)

        def waker(target, task=None):
            yield task.sleep(0.1)
            print("resume", target.resume("hello"))
            yield task.sleep(0.2)
            print("throw", target.throw(ValueError, "bad"))

        s = pycos.Task(sleeper)
        pycos.Task(waker, s).value()
        s.value()

        def sorter(task=None):
            cm = pycos.CategorizeMessages(task)
            cm.add(lambda m: m[0] if isinstance(m, tuple) else None)
            for m in [("b", 1), ("a", 1), "plain", ("a", 2)]:
                task.send(m)
            first_a = yield cm.receive("a")
            second_a = yield cm.receive("a")
            b = yield cm.receive("b")
            plain = yield cm.receive()
            nothing = yield cm.receive("a", timeout=0.01, alarm_value="none left")
            print(first_a, second_a, b, plain, nothing)

        pycos.Task(sorter).value()
        print(pycos.deserialize(pycos.serialize({"k": (1, 2.5, "x")})))
        print("hot_swap", s.hot_swap(lambda task=None: None))  # not a generator function
        """,
    )
    assert output(proc) == [
        "resume 0",
        "resumed with hello",
        "second timed out",
        "throw 0",
        "thrown: bad",
        "('a', 1) ('a', 2) ('b', 1) plain none left",
        "{'k': (1, 2.5, 'x')}",
        "hot_swap -1",
    ]


async def test_locks_conditions_semaphores_events(tmp_path: Path) -> None:
    proc = await run_script(
        tmp_path,
        """
        import pycos

        lock, rlock, sem = pycos.Lock(), pycos.RLock(), pycos.Semaphore(2)
        cv, ev = pycos.Condition(), pycos.Event()
        log = []

        def worker(i, task=None):
            yield lock.acquire()
            log.append(("in", i))
            yield task.sleep(0.01)
            log.append(("out", i))
            lock.release()

        def reentrant(task=None):
            yield rlock.acquire()
            yield rlock.acquire()
            rlock.release()
            rlock.release()
            return (yield rlock.acquire(blocking=False))

        holders, peak = [0], [0]

        def limited(i, task=None):
            yield sem.acquire()
            holders[0] += 1
            peak[0] = max(peak[0], holders[0])
            yield task.sleep(0.05)
            holders[0] -= 1
            sem.release()

        def consumer(task=None):
            yield cv.acquire()
            notified = yield cv.wait(5)
            cv.release()
            waited = yield ev.wait(0.01)
            return notified, waited

        def producer(task=None):
            while not cv._notified._queue:  # the consumer is waiting (bounded by its 5 s)
                yield task.sleep(0.01)
            yield cv.acquire()
            cv.notify()
            cv.release()

        ws = [pycos.Task(worker, i) for i in range(3)]
        for w in ws:
            w.value()
        # Never two holders at once: in/out alternate.
        print("exclusive", all(log[k][0] == "in" and log[k + 1] == ("out", log[k][1])
                               for k in range(0, len(log), 2)))
        print("rlock", pycos.Task(reentrant).value())
        for t in [pycos.Task(limited, i) for i in range(4)]:
            t.value()
        print("semaphore peak", peak[0])
        c = pycos.Task(consumer)
        pycos.Task(producer)
        print("condition", c.value())
        ev.set()
        print("event", ev.is_set())

        def try_lock(task=None):
            yield lock.acquire()
            other = yield lock.acquire(timeout=0.01)
            lock.release()
            return other
        print("timeout", pycos.Task(try_lock).value())
        """,
    )
    assert output(proc) == [
        "exclusive True",
        "rlock True",
        "semaphore peak 2",
        "condition (True, False)",
        "event True",
        "timeout False",
    ]


async def test_scheduler_facade(tmp_path: Path) -> None:
    proc = await run_script(
        tmp_path,
        """
        import pycos

        s = pycos.Pycos()
        print("singleton", s is pycos.Pycos() is pycos.Pycos.instance())

        def long(task=None):
            yield task.sleep(0.3)
            return "long done"

        def me(task=None):
            return pycos.Pycos.cur_task() is task
            yield

        print("cur_task", pycos.Task(me).value())
        t = pycos.Task(long)
        print("join early", s.join(timeout=0.01))
        print("join", s.join())
        print(t.value())
        s.atexit(1, print, "atexit low")
        s.atexit(5, print, "atexit high")
        s.finish()
        print("finished", s.is_alive())
        """,
    )
    assert output(proc) == [
        "singleton True",
        "cur_task True",
        "join early False",
        "join True",
        "long done",
        "atexit high",
        "atexit low",
        "finished False",
    ]


async def test_a_failing_task_is_shown_as_pycos_shows_it(tmp_path: Path) -> None:
    proc = await run_script(
        tmp_path,
        """
        import pycos

        def broken(task=None):
            yield task.sleep(0)
            raise ValueError("boom")

        pycos.Task(broken)
        """,
    )
    # On stdout, by pycos's logger, from the task's own frame; the program goes on
    # (and exits 0), as under pycos.
    assert re.search(
        r"\d\d:\d\d:\d\d pycos - uncaught exception in task broken/\d+@127\.0\.0\.1:\d+:\n"
        r"Traceback \(most recent call last\):\n"
        rf'  File "{re.escape(str(tmp_path / "script.py"))}", line 6, in broken\n'
        r'    raise ValueError\("boom"\)\n'
        r"ValueError: boom\n",
        proc.stdout,
    ), proc.stdout
    assert "triopycos" not in proc.stdout.partition("uncaught")[2], proc.stdout
    assert proc.stderr == ""


async def test_dest_path_is_settable_as_in_pycos(tmp_path: Path) -> None:
    proc = await run_script(
        tmp_path,
        """
        import os
        import pycos

        scheduler = pycos.Pycos()
        root = scheduler.dest_path
        # triopycos's default: the user's own folder (not pycos's shared temp dir)
        default = os.path.join(os.environ["XDG_DATA_HOME"], "triopycos", "files")
        print("root", root == default, os.path.isdir(root))
        scheduler.dest_path = os.path.join(root, "inside")
        print("inside", scheduler.dest_path == os.path.join(root, "inside"))
        scheduler.dest_path = "/elsewhere/sub"   # taken as under the first one
        print("elsewhere", scheduler.dest_path == os.path.join(root, "elsewhere", "sub"))
        new = scheduler.dest_path
        print("made", os.path.isdir(new), scheduler.node.dest_path == new)
        """,
    )
    assert output(proc) == ["root True True", "inside True", "elsewhere True", "made True True"]


async def test_uncovered_features_fail_with_a_clear_message(tmp_path: Path) -> None:
    proc = await run_script(
        tmp_path,
        """
        import pycos
        for name in ("pycos.dispycos", "pycos.httpd"):
            try:
                __import__(name)
            except ImportError as exc:
                print("import:", exc)
        import pycos.asyncfile
        from pycos.asyncfile import AsyncFile, AsyncPipe
        print("asyncfile", AsyncPipe is pycos.asyncfile.AsyncPipe)
        print("AsyncSocket", pycos.AsyncSocket.__name__)
        import pycos.netpycos
        print("RTI is RPS", pycos.netpycos.RTI is pycos.netpycos.RPS is pycos.RPS)
        print("netpycos names", pycos.netpycos.AsyncSocket is pycos.AsyncSocket)
        """,
    )
    lines = output(proc)
    assert lines[0].startswith("import: pycos.dispycos is not provided by triopycos.compat")
    assert lines[1].startswith("import: pycos.httpd is not provided by triopycos.compat")
    assert lines[2:] == [
        "asyncfile True",
        "AsyncSocket AsyncSocket",
        "RTI is RPS True",
        "netpycos names True",
    ]


SERVER = """
import sys
import pycos
import pycos.netpycos

def server(task=None):
    task.set_daemon()
    task.register("server")
    while True:
        msg, client = yield task.receive()
        client.send(msg.upper())

def rps_method(x, task=None):
    yield task.sleep(0.01)
    return x * 10

scheduler = pycos.Pycos(node="127.0.0.1", tcp_port=0, discover_peers=False, secret="compat")
pycos.Task(server)
pycos.RPS(rps_method).register()
print("ready", scheduler.location.port, flush=True)
sys.stdin.readline()
"""

CLIENT = """
import sys
import pycos
import pycos.netpycos

def client(port, task=None):
    scheduler = pycos.Pycos.instance()
    loc = pycos.Location("127.0.0.1", port)
    print("peer", (yield scheduler.peer(loc)))
    server = yield pycos.Task.locate("server", loc, timeout=5)
    server.send(("hello", task))
    print("reply", (yield task.receive(timeout=5)))
    rps = yield pycos.RPS.locate("rps_method", loc, timeout=5)
    rtask = yield rps(4)
    print("rps", (yield rtask.finish(timeout=5)))
    print("peers", [str(p) for p in scheduler.peers()] == [str(loc)])

pycos.Pycos(node="127.0.0.1", tcp_port=0, discover_peers=False, secret="compat")
pycos.Task(client, int(sys.argv[1]))
"""


async def test_netpycos_scripts_talk_over_loopback(tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text(SERVER)
    async with open_node_process(
        ["-m", "triopycos.compat", str(tmp_path / "server.py")],
        stdin=True,
        cwd=str(tmp_path),
        timeout=WAIT,
    ) as server:
        with trio.fail_after(WAIT):
            await server.wait_for_output("ready ")
        port = next(line.split()[1] for line in server.stdout.splitlines() if "ready" in line)
        client = await run_script(tmp_path, CLIENT, port)
        await server.send_input("\n")
        with trio.fail_after(WAIT):
            assert await server.wait() == 0, server.describe()
    assert output(client) == ["peer 0", "reply HELLO", "rps 40", "peers True"]


async def test_the_runner_reports_a_missing_script() -> None:
    async with open_node_process(
        ["-m", "triopycos.compat", "/no/such/script.py"], timeout=WAIT
    ) as proc:
        with trio.fail_after(WAIT):
            assert await proc.wait() == 2
    assert "no such script" in proc.stderr


def test_the_compat_namespace_has_pycos_names() -> None:
    import triopycos
    import triopycos.compat as pycos

    assert pycos.Task is triopycos.Task
    assert pycos.Channel is triopycos.Channel
    assert pycos.Location is triopycos.Location
    assert pycos.MonitorStatus is triopycos.MonitorStatus
    assert pycos.logger.DEBUG == 10 and pycos.logger.INFO == 20
    with pytest.raises(AttributeError):
        pycos.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    assert pycos.config.MsgTimeout == 10 and pycos.config.NetPort == 9705


def test_singleton_and_struct_as_pycos_has_them() -> None:
    import triopycos.compat as pycos

    class Only(metaclass=pycos.Singleton):
        def __init__(self, n: int) -> None:
            self.n = n

    first, second = Only(1), Only(2)
    assert first is second and second.n == 1
    assert pycos.Singleton.instance(Only) is first
    pycos.Singleton.discard(Only)
    assert Only(3).n == 3

    record = pycos.Struct(a=1)
    record.a = 2
    assert record.a == 2
    assert record.missing is None  # (pycos logs a warning and gives None)


async def test_review_fixes_pycos_semantics(tmp_path: Path) -> None:
    # Each line below was wrong once (see CHANGELOG "Fixed"), against pycos 4.12.2.
    proc = await run_script(
        tmp_path,
        """
        import threading
        import pycos
        import pycos.netpycos as net

        # netpycos makes a scheduler a network node with discovery: keep it on loopback.
        LOOPBACK = dict(node="127.0.0.1", tcp_port=0, udp_port=0, discover_peers=False)
        pycos.Pycos(**LOOPBACK)

        # pycos's netpycos starts with `from pycos import *`.
        print("net names", all(hasattr(net, n) for n in ("logger", "Lock", "Event", "serialize")))

        # Event.set() and Semaphore.release() from the main thread.
        ev, sem = pycos.Event(), pycos.Semaphore(0)
        def waiter(task=None):
            got = yield ev.wait(10)
            took = yield sem.acquire(timeout=10)
            return got, took
        w = pycos.Task(waiter)
        import time
        while not ev._waiters:  # (the waiter parked: a poll, only for the demonstration)
            time.sleep(0.01)
        ev.set(); ev.clear()    # a pulse still wakes the waiter (pycos)
        sem.release()
        print("event+semaphore", w.value())

        # Condition: reentrant, and notify without holding the lock.
        cv = pycos.Condition()
        def cv_waiter(task=None):
            yield cv.acquire()
            again = yield cv.acquire()
            notified = yield cv.wait(10)
            cv.release(); cv.release()
            return again, notified
        def cv_notifier(task=None):
            while not cv._notified._queue:  # the waiter is waiting (bounded by its 10 s)
                yield task.sleep(0.01)
            cv.notify()
        c = pycos.Task(cv_waiter); pycos.Task(cv_notifier)
        print("condition", c.value())

        # timeout=0 succeeds when nothing needs to wait; categorizers: last added first.
        lock = pycos.Lock()
        def quick(task=None):
            free = yield lock.acquire(timeout=0)
            lock.release()
            cm = pycos.CategorizeMessages(task)
            cm.add(lambda m: "any")
            cm.add(lambda m: "special" if m == 7 else None)
            task.send(7)
            special = yield cm.recv("special", timeout=0)
            return free, special
        print("timeout 0", pycos.Task(quick).value())

        # value() of a task whose scheduler has finished.
        def answer(task=None):
            return 42
            yield
        a = pycos.Task(answer)
        s = pycos.Pycos.instance()
        s.atexit(1, print, "dropped")
        s.drop_atexit(1, print)
        def joiner(task=None):
            try:
                s.join()
            except Exception as exc:
                return type(exc).__name__
            yield
        print("join in a task", pycos.Task(joiner).value())
        s.finish()
        print("value after finish", a.value())

        # Two threads starting the scheduler at once get one.
        errors, schedulers = [], []
        def start():
            try:
                schedulers.append(pycos.Pycos(**LOOPBACK))
            except Exception as exc:
                errors.append(exc)
        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        print("one scheduler", errors == [] and len({id(x) for x in schedulers}) == 1)

        # terminate() from inside a task stops the scheduler; the program ends.
        def stopper(task=None):
            yield task.sleep(0.01)
            pycos.Pycos.instance().terminate()
        pycos.Task(stopper)
        """,
    )
    assert output(proc) == [
        "net names True",
        "event+semaphore (True, True)",
        "condition (True, True)",
        "timeout 0 (True, 7)",
        "join in a task PycosError",
        "value after finish 42",
        "one scheduler True",
    ]
