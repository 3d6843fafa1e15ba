"""``Location`` for the API layer: defined in ``values/``, below ``protocol/``, which
encodes it (modules above the floor import it from here or from there alike)."""

from .values.location import Location

__all__ = ["Location"]
