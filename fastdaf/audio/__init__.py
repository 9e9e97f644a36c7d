"""Audio in: `loading` turns files, bytes and arrays into one mono float32 waveform at the encoder's rate;
`acoustic` computes the built-in prosodic/spectral utterance features and judges whether a clip holds speech."""

from __future__ import annotations

from .acoustic import FEATURE_DIM, FEATURE_NAMES, SAMPLE_RATE, acoustic_features
from .loading import AudioInput, Waveform, load_audio, readable_formats
from .pitch import no_speech_reason

__all__ = [
    "FEATURE_DIM",
    "FEATURE_NAMES",
    "SAMPLE_RATE",
    "AudioInput",
    "Waveform",
    "acoustic_features",
    "load_audio",
    "no_speech_reason",
    "readable_formats",
]
