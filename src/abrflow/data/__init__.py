"""Data: the records container and its schema, the time base, the simulator, readers, splits and the
Lightning data module. ``split_half_r`` (two half-averages' agreement) is public here."""

from .halves import split_half_r

__all__ = ["split_half_r"]
