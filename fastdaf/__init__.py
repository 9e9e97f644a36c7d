"""fastdaf: fast multimodal sentiment inference with Dynamic Attention Fusion."""

from __future__ import annotations

from . import _checkout, metrics  # noqa: F401 - _checkout first: kernels/ as fastdaf.kernels in a plain checkout
from .config import DAFConfig
from .errors import CheckpointError, ConfigError, FastDAFError, FeatureFileError, InputError, UnsupportedError
from .features import FeatureSet
from .fused import FusedDAFHead
from .head import DAFHead, DAFOutput
from .pipeline import Prediction, SentimentPredictor, predict
from .train import TrainOptions, TrainResult, train_head
from .version import __version__

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DAFConfig",
    "DAFHead",
    "DAFOutput",
    "FastDAFError",
    "FeatureFileError",
    "FeatureSet",
    "FusedDAFHead",
    "InputError",
    "Prediction",
    "SentimentPredictor",
    "TrainOptions",
    "TrainResult",
    "UnsupportedError",
    "__version__",
    "metrics",
    "predict",
    "train_head",
]
