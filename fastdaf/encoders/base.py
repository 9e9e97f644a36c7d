"""What every encoder shares: the `Encoder` protocol, its `Encoded` result, and the device/dtype policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from ..dtypes import ALIASES, DTYPES
from ..errors import EncoderError


@dataclasses.dataclass
class Encoded:
    vectors: torch.Tensor  # [N, dim] float32, CPU
    notes: list[str | None]
    # why an item counts as absent (audio without speech), from encoders that judge it themselves
    # (`judges_speech`); None: every item is present
    absent: list[str | None] | None = None


@runtime_checkable
class Encoder(Protocol):
    """What the extractor needs of an encoder. `takes_waveforms`: whether `encode` takes mono float32 waveforms
    at `sampling_rate` (speech, acoustic: the front-end decodes and resamples, and speech is checked for
    first) or items passed through as given (text strings, precomputed vectors). An encoder whose own
    computation tells speech from silence sets `judges_speech = True` and returns `Encoded.absent` instead."""

    modality: str
    dim: int
    takes_waveforms: ClassVar[bool]

    def spec(self) -> dict[str, Any]: ...

    def encode(self, items: Sequence[Any]) -> Encoded: ...


def pick_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EncoderError(f"device {device} was asked for but no CUDA device is available; use 'cpu'")
    return device


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    names = {**DTYPES, **{alias: DTYPES[name] for alias, name in ALIASES.items()}}
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype not in names:
            raise EncoderError(f"dtype {dtype!r} is not accepted; choose one of {sorted(names)}")
        dtype = names[dtype]
    if dtype != torch.float32 and device.type != "cuda":
        raise EncoderError(f"{dtype} encoders run on CUDA only; on {device} use fp32")
    return dtype


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid positions of [B, T, D] (mask [B, T]); padding never enters the mean."""
    mask = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def combine_windows(
    sums: torch.Tensor, counts: torch.Tensor, owner: torch.Tensor, n_items: int, window_seconds: float
) -> Encoded:
    """Per item, the frame mean over all its windows (window sums and frame counts added up by owner), and a note
    for an item encoded in several windows: how speech encoders pool clips longer than one window."""
    total = torch.zeros(n_items, sums.shape[1]).index_add_(0, owner, sums)
    frames = torch.zeros(n_items).index_add_(0, owner, counts.float())
    n_windows = torch.bincount(owner, minlength=n_items).tolist()
    notes = [f"audio encoded in {n} windows of {window_seconds:g} s" if n > 1 else None for n in n_windows]
    return Encoded(total / frames[:, None], notes)


def load_pretrained(loader: Callable[..., Any], name: str, what: str):
    """Load with transformers' own progress bars off (fastdaf shows its own), turning failures into EncoderError."""
    from transformers.utils import logging as hf_logging  # noqa: PLC0415 - heavy: only when a Hugging Face model is built

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return loader(name)
    except (OSError, ValueError, KeyError) as exc:
        raise EncoderError(
            f"cannot load the {what} {name!r}: {exc}. Give a local directory saved with save_pretrained "
            f"or a hub id that is available offline (HF_HUB_OFFLINE=1 uses only the local cache)"
        ) from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
