"""fastdaf: fast multimodal sentiment inference with Dynamic Attention Fusion."""

from __future__ import annotations

__version__ = "0.1.0"

from . import metrics
from .config import DAFConfig
from .errors import CheckpointError, ConfigError, FastDAFError, FeatureFileError, InputError, UnsupportedError
from .features import FeatureSet
from .fused import FusedDAFHead
from .head import DAFHead, DAFOutput
from .pipeline import Prediction, SentimentPredictor, predict
from .train import TrainOptions, TrainResult, train_head

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
    "metrics",
    "predict",
    "train_head",
]
