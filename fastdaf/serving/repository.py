"""The model repository that `fastdaf serve` runs and `fastdaf export-triton` writes: config.pbtxt, a two-line
model.py and the checkpoint; and how Triton batches and places the model (`ServeOptions`)."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, local_encoder_folders, read_config
from ..choices import DEFAULT_SERVE_DEVICE, SERVE_DEVICES
from ..default_model import resolve as resolve_checkpoint
from ..errors import CheckpointError, FastDAFError, InputError, ServeError
from ..head import DAFHead
from ..pipeline import SentimentPredictor
from .protocol import DEFAULT_MAX_AUDIO_SECONDS

MODEL_NAME = "fastdaf"


MODEL_PY = '''"""fastdaf sentiment model for Triton's Python backend, written by `fastdaf export-triton`.

The server's Python environment needs fastdaf installed (`pip install fastdaf`); the head checkpoint
is in ./checkpoint beside this file.
"""

from fastdaf.serving import TritonPythonModel  # noqa: F401
'''


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """How Triton batches and places the model. Defaults suit one CPU or one GPU."""

    max_batch_size: int = 32
    preferred_batch_sizes: tuple[int, ...] | None = None  # None: those of 8, 16, 32 below max_batch_size, and it
    max_queue_delay_us: int = 2000
    instances: int = 1
    device: str = DEFAULT_SERVE_DEVICE  # cpu, gpu or auto (gpu when torch sees CUDA)
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise InputError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.preferred_batch_sizes is None:
            sizes = sorted({b for b in (8, 16, 32) if b < self.max_batch_size} | {self.max_batch_size})
            object.__setattr__(self, "preferred_batch_sizes", tuple(sizes))
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise InputError(f"preferred batch sizes {bad} are outside 1..max_batch_size ({self.max_batch_size})")
        if self.max_queue_delay_us < 0:
            raise InputError(f"max_queue_delay_us must be >= 0, got {self.max_queue_delay_us}")
        if self.instances < 1:
            raise InputError(f"instances must be >= 1, got {self.instances}")
        if self.device not in SERVE_DEVICES:
            raise InputError(f"device {self.device!r} is not accepted; choose auto, cpu or gpu")
        if not 0 < self.max_audio_seconds <= 600:
            raise InputError(f"max_audio_seconds must be in (0, 600], got {self.max_audio_seconds}")

    def instance_kind(self) -> str:
        if self.device == "auto":
            return "KIND_GPU" if torch.cuda.is_available() else "KIND_CPU"
        return "KIND_GPU" if self.device == "gpu" else "KIND_CPU"


def model_config(modalities: Sequence[str], options: ServeOptions = ServeOptions(), *, name: str = MODEL_NAME) -> str:
    """config.pbtxt for the Python-backend model: dynamic batching, instance group, optional inputs."""
    preferred = ", ".join(str(b) for b in options.preferred_batch_sizes)
    return f"""# fastdaf sentiment model (Triton Python backend); see fastdaf/serving.py for the protocol.
name: "{name}"
backend: "python"
max_batch_size: {options.max_batch_size}
input [
  {{ name: "text" data_type: TYPE_STRING dims: [ 1 ] optional: true }},
  {{ name: "audio" data_type: TYPE_FP32 dims: [ -1 ] optional: true allow_ragged_batch: true }},
  {{ name: "sampling_rate" data_type: TYPE_INT32 dims: [ 1 ] optional: true }}
]
output [
  {{ name: "score" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "label" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "weights" data_type: TYPE_FP32 dims: [ {len(modalities)} ] }},
  {{ name: "notes" data_type: TYPE_STRING dims: [ 1 ] }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {options.max_queue_delay_us}
}}
instance_group [ {{ count: {options.instances} kind: {options.instance_kind()} }} ]
parameters {{ key: "weights_order" value: {{ string_value: "{",".join(modalities)}" }} }}
parameters {{ key: "max_audio_seconds" value: {{ string_value: "{options.max_audio_seconds:g}" }} }}
"""


def validate_checkpoint(checkpoint: str | Path | None = None, *, encoders: bool = True) -> None:
    """Load the checkpoint as the server would, so a bad one fails here, in seconds, naming its file.

    Without this a corrupt `model.safetensors` was exported silently, or made `serve` time out after
    minutes with a server log that did not name it. `encoders=False` checks the head only (config and
    every tensor), for a repository whose encoders are on the server that will run it.
    """

    checkpoint = resolve_checkpoint(checkpoint)
    try:
        if encoders:
            SentimentPredictor(checkpoint, device="cpu")
        else:
            DAFHead.from_pretrained(checkpoint)
    except FastDAFError as exc:
        if str(checkpoint) in str(exc):
            raise
        raise CheckpointError(
            f"checkpoint {str(checkpoint)!r} ({CONFIG_FILE}, {WEIGHTS_FILE}) cannot be served: {exc}"
        ) from exc


def write_model_repository(
    directory: str | Path,
    checkpoint: str | Path | None = None,
    options: ServeOptions = ServeOptions(),
    *,
    name: str = MODEL_NAME,
    overwrite: bool = False,
) -> Path:
    """Write `<directory>/<name>/{config.pbtxt, 1/model.py, 1/checkpoint/}`; returns `directory`.

    The checkpoint is copied in, so the repository stands alone. Encoders are referenced as the
    checkpoint records them (the bundled model's ship with fastdaf, weights inside the checkpoint folder are copied
    with it; any other local path must exist on the server).
    """

    checkpoint = resolve_checkpoint(checkpoint)
    validate_checkpoint(checkpoint, encoders=False)  # the encoders may live only on the server
    config, extra = read_config(checkpoint)
    directory = Path(directory)
    model_dir = directory / name
    for path in (directory, model_dir):
        if path.is_symlink():  # --force would delete, or write into, wherever it points
            raise ServeError(f"{path} is a symbolic link; give a real folder (fastdaf does not write through links)")
    if directory.exists() and not directory.is_dir():
        raise ServeError(f"{directory} is a file; give a folder for the model repository (created if missing)")
    if model_dir.exists() and not model_dir.is_dir():
        raise ServeError(f"{model_dir} is a file where the model's folder goes; move it or choose another directory")
    if model_dir.exists() and any(model_dir.iterdir()) and not overwrite:
        raise ServeError(
            f"{model_dir} already exists and is not empty; choose another directory or pass overwrite (--force)"
        )
    if model_dir.exists():
        shutil.rmtree(model_dir)
    version_dir = model_dir / "1"
    (version_dir / "checkpoint").mkdir(parents=True)
    for file in (CONFIG_FILE, WEIGHTS_FILE):
        shutil.copy2(checkpoint / file, version_dir / "checkpoint" / file)
    for folder in sorted(set(local_encoder_folders(extra).values())):  # encoder weights the checkpoint carries
        shutil.copytree(checkpoint / folder, version_dir / "checkpoint" / folder)
    (version_dir / "model.py").write_text(MODEL_PY)
    (model_dir / "config.pbtxt").write_text(model_config(list(config.modalities), options, name=name))
    return directory
