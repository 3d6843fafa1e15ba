"""pycos's small helper classes ``Singleton`` (a metaclass) and ``Struct``."""

from __future__ import annotations

from typing import Any, ClassVar

from ._logger import logger

__all__ = ["Singleton", "Struct"]


class Singleton(type):
    """Metaclass: the first ``Cls(...)`` makes the instance, later calls return it."""

    _memo: ClassVar[dict[type, Any]] = {}

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        instance = Singleton._memo.get(cls)
        if instance is None:
            instance = Singleton._memo[cls] = super().__call__(*args, **kwargs)
        return instance

    @classmethod
    def instance(mcs, cls: type) -> Any:
        return Singleton._memo.get(cls)

    @classmethod
    def discard(mcs, cls: type) -> None:
        """Forget ``cls``'s instance: the next call makes a new one."""
        Singleton._memo.pop(cls, None)


class Struct:
    """``Struct(a=1, b=2)``: reading an attribute it lacks logs a warning and gives
    None; so does setting one (which pycos's then allows)."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    def __getattr__(self, name: str) -> Any:
        logger.warning('attribute "%s" is invalid', name)
        return None

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.__dict__:
            logger.warning('attribute "%s" is invalid', name)
        self.__dict__[name] = value

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"Struct({fields})"
