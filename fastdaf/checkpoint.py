"""The one fastdaf checkpoint format: a directory with `config.json` and `model.safetensors`.

safetensors holds only raw tensors, so loading a checkpoint never runs code (nothing is unpickled).
Nothing is allocated before it is validated: config.json (at most MAX_CONFIG_BYTES) must give head
sizes within fastdaf.config's limits (MAX_INPUT_DIM, MAX_LAYER_SIZE, MAX_OUTPUTS, MAX_WEIGHTS), and
model.safetensors's header (names, shapes, dtypes) must match them before any tensor is read.
Every problem found while loading is a CheckpointError naming the file or tensor, and what was
expected against what was found.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import DAFConfig
from .errors import CheckpointError, ConfigError
from .version import __version__

FORMAT = "fastdaf-daf-head"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MAX_CONFIG_BYTES = 16 << 20  # config.json (the bundled model's is 4 KB); head sizes are bounded in fastdaf.config


def save_checkpoint(
    directory: str | Path,
    config: DAFConfig,
    state: Mapping[str, torch.Tensor],
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint; `extra` (JSON-serialisable: training options, seed, metrics) is kept beside the config."""

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
    save_file(
        tensors, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    )
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
    return directory


def _checkpoint_dir(directory: str | Path) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(
            f"no checkpoint directory at {str(directory)!r} (expected a folder with {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    return directory


def _read_json(path: Path) -> Any:
    """config.json parsed, refusing oversized or too deeply nested files with a CheckpointError."""
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path} is {size:,} bytes; a checkpoint config.json is at most {MAX_CONFIG_BYTES:,}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise CheckpointError(
            f"{path} nests JSON too deeply to read; a checkpoint config.json is a few levels deep"
        ) from exc


def _check_encoders(path: Path, extra: Mapping[str, Any]) -> None:
    """`extra.encoders`, when recorded, maps modality names to encoder specs (what FeatureExtractor.spec() writes)."""
    encoders = extra.get("encoders")
    if encoders is None:
        return
    accepted = (
        "an object mapping a modality name to an encoder spec: a string (e.g. 'default', 'acoustic', "
        "'precomputed:74', a model path) or an object with 'kind' as FeatureExtractor.spec() writes"
    )
    if not isinstance(encoders, dict):
        raise CheckpointError(f"{path}: 'extra.encoders' is a {type(encoders).__name__}; expected {accepted}")
    for name, spec in encoders.items():
        if not isinstance(spec, (str, dict)):
            raise CheckpointError(f"{path}: 'extra.encoders.{name}' is a {type(spec).__name__}; expected {accepted}")


LOCAL_MODEL_PREFIX = "./"


def local_encoder_folders(extra: Mapping[str, Any]) -> dict[str, str]:
    """Modality -> the folder inside the checkpoint that holds its encoder's weights (specs whose model is "./NAME")."""
    out = {}
    for modality, spec in (extra.get("encoders") or {}).items():
        model = spec.get("model") if isinstance(spec, dict) else None
        if isinstance(model, str) and model.startswith(LOCAL_MODEL_PREFIX):
            out[modality] = model[len(LOCAL_MODEL_PREFIX) :]
    return out


# Model names fastdaf resolves itself, offline (the bundled text model, registry-packaged models, Whisper base).
FASTDAF_MODEL_NAMES = ("default", "whisper-base", "faster-whisper-base")
ALLOW_DOWNLOADS_ENV = "FASTDAF_ALLOW_DOWNLOADS"


def _model_reference(directory: Path, modality: str, model: str) -> str:
    """Where a checkpoint's model reference (not "./") points: never the current folder, never the network unless
    the user opted in. A fastdaf name stays; a path is taken relative to the checkpoint folder (an absolute one must
    exist); anything else is a Hugging Face hub id, taken from the local cache only, or downloaded when
    $FASTDAF_ALLOW_DOWNLOADS=1."""
    from .encoders.packaged import SPLIT_ZIPS  # noqa: PLC0415 - the packaged names only

    if model in FASTDAF_MODEL_NAMES or model.lower() in SPLIT_ZIPS:
        return model
    path = Path(model).expanduser()
    if path.is_absolute():
        if not path.exists():
            raise CheckpointError(
                f"{directory}: the {modality} encoder's model {model!r} is not on this machine (a path in a checkpoint "
                "is never tried as a hub id)"
            )
        return model
    beside = directory / path
    if beside.exists():
        return str(beside.resolve())
    allow = os.environ.get(ALLOW_DOWNLOADS_ENV, "") not in ("", "0")
    try:
        from huggingface_hub import snapshot_download  # noqa: PLC0415 - only for hub ids

        return snapshot_download(model, local_files_only=not allow)
    except Exception as exc:  # not cached, not a valid id, no network: the same answer
        raise CheckpointError(
            f"{directory}: the {modality} encoder's model {model!r} is neither a folder beside the checkpoint nor a "
            f"Hugging Face model in the local cache ({type(exc).__name__}); fastdaf does not download what a "
            f"checkpoint names unless {ALLOW_DOWNLOADS_ENV}=1 (or fetch it yourself, e.g. huggingface-cli download)"
        ) from exc


def encoder_specs(directory: str | Path, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's encoder specs, every model reference resolved where the checkpoint says, not where the
    process runs: "./NAME" inside the checkpoint folder, other references by `_model_reference`.

    A checkpoint moves as one folder (copied, served, bundled inside the package), so weights it carries are named
    relative to it, never to the current folder; a name that leaves the folder or is missing is a CheckpointError.
    """
    directory = Path(directory).resolve()
    specs = {m: (dict(s) if isinstance(s, dict) else s) for m, s in (extra.get("encoders") or {}).items()}
    local = local_encoder_folders(extra)
    for modality, spec in specs.items():
        if modality in local:
            continue
        if isinstance(spec, dict) and isinstance(spec.get("model"), str):
            spec["model"] = _model_reference(directory, modality, spec["model"])
        elif isinstance(spec, str) and spec != "acoustic" and not spec.startswith(("precomputed:", "whisper:")):
            specs[modality] = _model_reference(directory, modality, spec)
    for modality, name in local_encoder_folders(extra).items():
        folder = (directory / name).resolve()
        if not folder.is_relative_to(directory) or folder == directory:
            raise CheckpointError(
                f"{directory / CONFIG_FILE}: the {modality} encoder's model {LOCAL_MODEL_PREFIX + name!r} is outside "
                "the checkpoint folder; a './' model names a folder inside it"
            )
        if not folder.is_dir():
            raise CheckpointError(
                f"{directory}: the {modality} encoder's weights {LOCAL_MODEL_PREFIX + name!r} are missing (expected "
                f"the folder {folder}); copy the whole checkpoint folder"
            )
        specs[modality]["model"] = str(folder)
    return specs


def read_config(directory: str | Path) -> tuple[DAFConfig, dict[str, Any]]:
    """Read and validate `config.json`; returns the head config and the `extra` record.

    The config's sizes are checked against fastdaf.config's limits here, before any weight exists.
    """
    path = _checkpoint_dir(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(directory)!r} has no {CONFIG_FILE}")
    meta = _read_json(path)
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
    _check_encoders(path, extra)
    return config, extra


def _check_header(path: Path, f: Any, expected: Mapping[str, torch.Tensor]) -> None:
    """Names, shapes and dtypes from the safetensors header against `expected`, before any tensor is read.

    The header is metadata: a file claiming a huge tensor is refused without allocating it.
    """
    names = set(f.keys())
    missing = sorted(set(expected) - names)
    extra = sorted(names - set(expected))
    if missing:
        raise CheckpointError(f"{path}: missing tensor(s) {missing} that the config requires")
    if extra:
        raise CheckpointError(f"{path}: unexpected tensor(s) {extra} that the config does not define")
    for name, want in expected.items():
        info = f.get_slice(name)
        shape, dtype = list(info.get_shape()), info.get_dtype()
        if shape != list(want.shape):
            raise CheckpointError(f"{path}: tensor {name!r} has shape {shape}, expected {list(want.shape)}")
        if not (dtype.startswith("F") or dtype == "BF16"):
            raise CheckpointError(
                f"{path}: tensor {name!r} has dtype {dtype}, expected a floating-point dtype (F16, BF16, F32, F64)"
            )


def read_state(directory: str | Path, expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Load `model.safetensors` and check it holds exactly the tensors of `expected`, same shapes, finite."""
    path = _checkpoint_dir(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(directory)!r} has no {WEIGHTS_FILE}")
    try:
        with safe_open(str(path), framework="pt") as f:
            _check_header(path, f, expected)
            state = {name: f.get_tensor(name) for name in expected}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupt or not a safetensors file: {exc}") from exc
    for name, want in expected.items():
        if not bool(torch.isfinite(state[name]).all()):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or infinite values")
        state[name] = state[name].to(want.dtype)
    return state
