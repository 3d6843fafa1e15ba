"""Run a pycos program unchanged on triopycos::

    python -m triopycos.compat SCRIPT [ARGS...]

Inside SCRIPT, ``import pycos`` gives ``triopycos.compat``, ``import pycos.netpycos``
``triopycos.compat.netpycos``, and so on for ``pycos.asyncfile`` and ``pycos.config``;
dispycos's modules (``pycos.dispycos``, ``pycos.dispycosnode``, ``pycos.httpd``) fail
to import with a message saying so.
SCRIPT runs as ``__main__`` with ``sys.argv = [SCRIPT, *ARGS]``, like ``python
SCRIPT``; at its end the scheduler finishes as pycos's does (waiting for non-daemon
tasks).
"""

from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType

__all__ = ["install", "main"]

ALIASES = {
    "pycos": "triopycos.compat",
    "pycos.netpycos": "triopycos.compat.netpycos",
    "pycos.asyncfile": "triopycos.compat.asyncfile",
    "pycos.config": "triopycos.compat.config",
}
NOT_COVERED = {
    "pycos.dispycos": "dispycos (distributed computing) is not part of triopycos",
    "pycos.dispycosnode": "dispycos (distributed computing) is not part of triopycos",
    "pycos.httpd": "pycos's HTTP monitor of dispycos clusters is not part of triopycos",
}


class _PycosFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``pycos`` names to the compat layer (the same module objects, so
    ``pycos.Task is triopycos.Task``) and refuses the ones it does not cover."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in ALIASES or fullname in NOT_COVERED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        reason = NOT_COVERED.get(spec.name)
        if reason is not None:
            raise ImportError(
                f"{spec.name} is not provided by triopycos.compat: {reason} "
                "(see triopycos's docs/pycos-users.md)",
                name=spec.name,
            )
        return importlib.import_module(ALIASES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        pass  # the target module ran when it was imported


def install() -> None:
    """Make ``import pycos`` (and ``pycos.netpycos``) resolve to the compat layer in
    this interpreter."""
    if not any(isinstance(finder, _PycosFinder) for finder in sys.meta_path):
        for name in list(sys.modules):
            if name == "pycos" or name.startswith("pycos."):
                del sys.modules[name]  # a real pycos imported earlier
        sys.meta_path.insert(0, _PycosFinder())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    script = args[0]
    if not os.path.isfile(script):
        print(f"triopycos.compat: no such script: {script}", file=sys.stderr)
        return 2
    install()
    return run_as_main(script, args[1:])


def run_as_main(script: str, args: Sequence[str]) -> int:
    """Run ``script`` as ``python SCRIPT ARGS`` would: in a fresh ``__main__``
    module that stays ``__main__`` (tasks may run after the body), with its directory
    first on ``sys.path``, and an uncaught exception printed without this runner's
    frames (exit status 1)."""
    path = os.path.abspath(script)
    with open(path, "rb") as file:
        code = compile(file.read(), path, "exec")
    main_module = ModuleType("__main__")
    main_module.__file__ = path
    main_module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main_module
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(path)
    try:
        exec(code, main_module.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        # The traceback starts at the script, as with `python SCRIPT`.
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        traceback.print_exception(type(exc), exc, tb)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
