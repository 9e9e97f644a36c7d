"""The bundled default model: a DAF head checkpoint that ships inside the package, so prediction
works offline right after install. `scripts/build_default_model.py` in the repository trains it reproducibly; the model
card is in the README and in `config.json`'s `extra.model_card`."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError

DIRECTORY = Path(__file__).resolve().parent


def path() -> Path:
    """Directory of the bundled checkpoint (config.json + model.safetensors)."""
    if not (DIRECTORY / "config.json").is_file():
        raise CheckpointError(
            f"the bundled default model is missing from {DIRECTORY} (a broken install?); "
            "reinstall fastdaf or pass a checkpoint directory"
        )
    return DIRECTORY
