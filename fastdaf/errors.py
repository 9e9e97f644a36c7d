"""Every error fastdaf raises on purpose derives from FastDAFError, so callers can catch one type."""

from __future__ import annotations


class FastDAFError(Exception):
    """Base class of all fastdaf errors."""


class ConfigError(FastDAFError, ValueError):
    """A DAFConfig (or training option) holds a value that is not accepted."""


class InputError(FastDAFError, ValueError):
    """Features, masks or labels handed to a head, metric or trainer are malformed."""


class CheckpointError(FastDAFError):
    """A checkpoint directory cannot be loaded: missing, corrupt, or not matching its config."""


class FeatureFileError(FastDAFError):
    """A feature file cannot be read or does not follow the fastdaf feature format."""


class UnsupportedError(FastDAFError, NotImplementedError):
    """The request is valid for the reference head but not supported by this implementation."""
