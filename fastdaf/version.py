"""The package version, in one place: pyproject.toml reads it, `fastdaf.__version__` and checkpoints record it."""

__version__ = "0.1.0"
