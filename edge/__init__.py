"""edge: real-time video analytics next to traffic cameras."""

__version__ = "0.1.0"
