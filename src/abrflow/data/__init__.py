"""Data: records container, simulator, readers, splits and the Lightning data module."""
