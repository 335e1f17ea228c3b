"""The single source of the project's version (read by hatch and by both packages)."""

__version__ = "0.1.0"
