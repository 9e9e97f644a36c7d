"""The one fastdaf checkpoint format: a directory with `config.json` and `model.safetensors`.

safetensors holds only raw tensors, so loading a checkpoint never runs code (nothing is unpickled).
Every problem found while loading is a CheckpointError naming the file or tensor, and what was
expected against what was found.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import DAFConfig
from .errors import CheckpointError, ConfigError

FORMAT = "fastdaf-daf-head"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_checkpoint(
    directory: str | Path, config: DAFConfig, state: Mapping[str, torch.Tensor], *, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write a checkpoint; `extra` (JSON-serialisable: training options, seed, metrics) is kept beside the config."""
    from . import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastdaf_version": __version__,
        "config": config.to_dict(),
        "extra": dict(extra or {}),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
    return directory


def _checkpoint_dir(directory: str | Path) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoint directory at {str(directory)!r} (expected a folder with {CONFIG_FILE} and {WEIGHTS_FILE})")
    return directory


def read_config(directory: str | Path) -> tuple[DAFConfig, dict[str, Any]]:
    """Read and validate `config.json`; returns the head config and the `extra` record."""
    path = _checkpoint_dir(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(directory)!r} has no {CONFIG_FILE}")
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: expected format {FORMAT!r}, found {found!r}")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unknown format_version {version!r}; this fastdaf reads version {FORMAT_VERSION}"
        )
    try:
        config = DAFConfig.from_dict(meta.get("config"))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid head config: {exc}") from exc
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path}: 'extra' must be an object, found {type(extra).__name__}")
    return config, extra


def read_state(directory: str | Path, expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Load `model.safetensors` and check it holds exactly the tensors of `expected`, same shapes, finite."""
    path = _checkpoint_dir(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(directory)!r} has no {WEIGHTS_FILE}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupt or not a safetensors file: {exc}") from exc
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(f"{path}: missing tensor(s) {missing} that the config requires")
    if extra:
        raise CheckpointError(f"{path}: unexpected tensor(s) {extra} that the config does not define")
    for name, want in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{path}: tensor {name!r} has shape {list(got.shape)}, expected {list(want.shape)}")
        if not got.is_floating_point():
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {got.dtype}, expected a floating-point dtype")
        if not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or infinite values")
        state[name] = got.to(want.dtype)
    return state
