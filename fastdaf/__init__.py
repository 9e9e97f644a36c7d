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


def _register_checkout_kernels() -> None:
    """Make `fastdaf.kernels` importable from a plain checkout (repo root on sys.path, no install).

    An install maps the top-level kernels/ folder to `fastdaf.kernels` (pyproject.toml); a bare GPU
    machine runs benchmarks/gpu_check.py from a checkout without installing. Only when nothing else
    provides `fastdaf.kernels` and kernels/__init__.py sits beside this package is that folder
    registered as the subpackage.
    """
    import importlib.util
    import sys
    from pathlib import Path

    name = __name__ + ".kernels"
    if importlib.util.find_spec(name) is not None:
        return
    folder = Path(__file__).resolve().parent.parent / "kernels"
    if not (folder / "__init__.py").is_file():
        return
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_register_checkout_kernels()
