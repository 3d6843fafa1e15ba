"""The command line: ``triopycos`` and ``python -m triopycos`` (see docs/cli.md).

Commands: ``demo``, ``node``, ``peers``, ``status``, ``ping``, ``send-file``,
``secret``.  The
CLI uses only the public API; it is the outermost layer.
"""

from ._main import main

__all__ = ["main"]
