"""Error types shared by modules that must not import each other."""
from __future__ import annotations


class ConfigError(ValueError):
    """A params.yaml value is missing, unknown, of the wrong type or out of range."""
