"""A helper for the exception groups that nurseries raise."""

from __future__ import annotations

__all__ = ["exception_leaves"]


def exception_leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group`` and its nested groups, flattened."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(exception_leaves(exc))
        else:
            found.append(exc)
    return found
