"""The layer rule of DESIGN.md §3, read from the source: ``values/`` imports nothing of
triopycos, ``protocol/`` nothing above it (only itself and ``values/``) and does no
I/O (no trio, no ``async def``, no ``await``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "triopycos"


def triopycos_imports(path: Path) -> list[str]:
    """Every triopycos module ``path`` imports, as a dotted name (``triopycos.x.y``)."""
    here = ["triopycos", *path.relative_to(PACKAGE).with_suffix("").parts]
    if here[-1] == "__init__":
        here.pop()
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append(target)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return [name for name in found if name == "triopycos" or name.startswith("triopycos.")]


def sources(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def test_the_layer_checker_resolves_relative_imports() -> None:
    # Without this, a checker that resolved nothing would pass every rule below.
    codec = triopycos_imports(PACKAGE / "protocol" / "codec" / "encoding.py")
    assert "triopycos.values.errors" in codec
    assert "triopycos.protocol.codec.tags" in codec
    node = triopycos_imports(PACKAGE / "_node.py")
    assert "triopycos.protocol.codec" in node and "triopycos._task" in node


@pytest.mark.parametrize("path", sources("values"), ids=lambda p: p.name)
def test_values_import_nothing_of_triopycos(path: Path) -> None:
    outside = [name for name in triopycos_imports(path) if not name.startswith("triopycos.values")]
    assert outside == []


@pytest.mark.parametrize(
    "path", sources("protocol"), ids=lambda p: str(p.relative_to(PACKAGE / "protocol"))
)
def test_protocol_imports_only_itself_and_the_values(path: Path) -> None:
    above = [
        name
        for name in triopycos_imports(path)
        if not name.startswith(("triopycos.protocol", "triopycos.values"))
    ]
    assert above == []
    tree = ast.parse(path.read_text(), str(path))
    io = [
        type(node).__name__
        for node in ast.walk(tree)
        if isinstance(node, ast.AsyncFunctionDef | ast.Await)
        or (isinstance(node, ast.Import) and any(a.name.startswith("trio") for a in node.names))
        or (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trio"))
    ]
    assert io == []
