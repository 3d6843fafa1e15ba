"""docs/api.md, the API guide, names every public method of every public class, in
that class's section, so the guide cannot fall behind the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import triopycos

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def sections() -> dict[str, str]:
    """Each ``## `Name...` `` section's text, by the name its heading starts with."""
    found: dict[str, str] = {}
    for part in re.split(r"^## ", GUIDE.read_text(), flags=re.M)[1:]:
        heading, _, body = part.partition("\n")
        match = re.search(r"`(\w+)", heading)
        if match:
            found[match.group(1)] = heading + "\n" + body
    return found


def public_members(cls: type) -> list[str]:
    """Methods and properties a user may call, the class's own and inherited from
    the library's classes (not from ``object`` or ``Exception``)."""
    names = set()
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if callable(value) or isinstance(value, property | staticmethod | classmethod):
                names.add(name)
    return sorted(names)


def mentioned(name: str, text: str) -> bool:
    """``name`` as a word in a code span: `name`, `name(...)`, `Class.name(...)`."""
    word = re.compile(rf"\b{re.escape(name)}\b")
    return any(word.search(span) for span in re.findall(r"`([^`\n]+)`", text))


def test_the_guide_names_every_public_method() -> None:
    by_name = sections()
    text = GUIDE.read_text()
    missing = []
    for name in triopycos.__all__:
        obj = getattr(triopycos, name)
        if not mentioned(name, text):
            missing.append(name)
        if not isinstance(obj, type):
            continue
        # Constants of a class (PeerStatus.Online) are not methods.
        members = [m for m in public_members(obj) if not inspect.isclass(getattr(obj, m))]
        where = by_name.get(name, text)
        missing += [f"{name}.{m}" for m in members if not mentioned(m, where)]
    assert missing == []


def test_the_sections_this_test_relies_on_exist() -> None:
    assert {"open_pycos", "Pycos", "Task", "Channel", "RPS", "NodeStatus"} <= set(sections())
    assert "suspend" in public_members(triopycos.Task)
    assert "value" in public_members(triopycos.Task)
