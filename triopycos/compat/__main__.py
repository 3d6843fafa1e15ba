"""Run a pycos program unchanged on triopycos::

    python -m triopycos.compat SCRIPT [ARGS...]

Inside SCRIPT, ``import pycos`` gives ``triopycos.compat`` and ``import
pycos.netpycos`` gives ``triopycos.compat.netpycos``; pycos modules that are not
covered (asyncfile, dispycos, httpd, ...) fail to import with a message saying so.
SCRIPT runs as ``__main__`` with ``sys.argv = [SCRIPT, *ARGS]``, like ``python
SCRIPT``; at its end the scheduler finishes as pycos's does (waiting for non-daemon
tasks).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import runpy
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["install", "main"]

ALIASES = {"pycos": "triopycos.compat", "pycos.netpycos": "triopycos.compat.netpycos"}
NOT_COVERED = {
    "pycos.asyncfile": "asynchronous files and pipes (use trio's files and subprocesses)",
    "pycos.dispycos": "dispycos (distributed computing) is not part of triopycos",
    "pycos.dispycosnode": "dispycos (distributed computing) is not part of triopycos",
    "pycos.httpd": "pycos's HTTP monitor is not part of triopycos",
    "pycos.config": "pycos's configuration module (use open_pycos's arguments)",
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
    sys.argv = [script, *args[1:]]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
