"""The audio front-end: anything a user may hand us -> one mono float32 waveform at the encoder's rate.

Accepted inputs: a path (str or os.PathLike) to a file soundfile reads (WAV, FLAC, OGG/Vorbis/Opus,
AIFF, MP3 and the other libsndfile formats; int or float samples; up to MAX_CHANNELS channels), raw
bytes of such a file (files and bytes need the `soundfile` package, imported only when one is decoded,
so `import fastdaf` works where it is missing, e.g. a bare GPU machine), or a numpy array / torch
tensor of samples with its `sampling_rate` ([T] mono, [T, C] or [C, T] with C <= 8 channels).
Channels are averaged; integer arrays are scaled to [-1, 1). Float samples are full scale at 1.0: a peak
above MAX_FLOAT_PEAK is refused (`AudioRangeError`, naming the peak), since that is how integer samples
passed as floats without scaling arrive (int16 values as float32 peak in the hundreds to 32767) and they
would otherwise be scored as if shouted.

Limits (module constants): sampling rates MIN_SAMPLING_RATE..MAX_SAMPLING_RATE Hz; at least
MIN_SECONDS and at most MAX_SECONDS of audio; at most MAX_CHANNELS channels. Longer clips are refused,
never cut; encoders process long clips in windows. For files and bytes the rate, channel count and
duration are read from the header and refused before anything is decoded. Every problem raises a
specific `fastdaf.errors.AudioError` subclass whose message names the input.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Union

import numpy as np
import torch

from ..errors import (
    AudioDecodeError,
    AudioError,
    AudioNotFoundError,
    AudioRangeError,
    AudioTooLongError,
    AudioTooShortError,
    NonFiniteAudioError,
    SamplingRateError,
    UnsupportedAudioFormatError,
    UnsupportedError,
)
from .dsp import resample

MIN_SAMPLING_RATE = 4_000
MAX_SAMPLING_RATE = 384_000
MIN_SECONDS = 0.1
MAX_SECONDS = 600.0
MAX_CHANNELS = 8
# Float audio may overshoot full scale a little (inter-sample peaks, a hot mix): accepted up to +6 dB over it.
MAX_FLOAT_PEAK = 2.0

AudioInput = Union[str, os.PathLike, bytes, bytearray, np.ndarray, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Waveform:
    """Mono float32 samples at `sampling_rate`, and a short description of where they came from."""

    samples: torch.Tensor
    sampling_rate: int
    source: str

    @property
    def seconds(self) -> float:
        return self.samples.numel() / self.sampling_rate


def _soundfile():
    """The soundfile module, imported on first use: only files and bytes need it."""
    try:
        import soundfile  # noqa: PLC0415 - only when a file or bytes are decoded (absent on the GPU box)
    except ImportError as exc:  # OSError (libsndfile missing) propagates with its own message
        raise UnsupportedError(
            "reading audio files or bytes needs the Python package 'soundfile' (pip install soundfile), which is not "
            "installed; pass a numpy array or torch tensor of samples with sampling_rate instead"
        ) from exc
    return soundfile


def readable_formats() -> list[str]:
    return sorted(_soundfile().available_formats())


def describe(audio: AudioInput) -> str:
    """How an input is named in messages: the path, or the kind and size of the object."""
    if isinstance(audio, (str, os.PathLike)):
        return repr(os.fspath(audio))
    if isinstance(audio, (bytes, bytearray)):
        return f"<{len(audio)} bytes of audio>"
    if isinstance(audio, (np.ndarray, torch.Tensor)):
        return f"<{type(audio).__name__} of shape {list(audio.shape)}>"
    return f"<{type(audio).__name__}>"


def _check_rate(rate, name: str) -> int:
    if rate is None:
        raise SamplingRateError(
            f"{name}: sampling_rate is required for array input (an integer number of Hz, e.g. 16000)"
        )
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, np.integer))
        and not (isinstance(rate, float) and rate.is_integer())
    ):
        raise SamplingRateError(f"{name}: sampling_rate must be an integer number of Hz, got {rate!r}")
    rate = int(rate)
    if not MIN_SAMPLING_RATE <= rate <= MAX_SAMPLING_RATE:
        raise SamplingRateError(
            f"{name}: sampling rate {rate} Hz is outside the accepted {MIN_SAMPLING_RATE}..{MAX_SAMPLING_RATE} Hz"
        )
    return rate


def _check_channels(channels: int, name: str) -> None:
    if channels > MAX_CHANNELS:
        raise AudioDecodeError(f"{name}: {channels} channels; at most {MAX_CHANNELS} are accepted")


def _check_duration(seconds: float, name: str) -> None:
    """The upper limit only: it is what saves work when checked from a header before decoding."""
    if seconds > MAX_SECONDS:
        raise AudioTooLongError(
            f"{name}: {seconds:.1f} s of audio; at most {MAX_SECONDS:.0f} s is accepted (split longer recordings)"
        )


_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"FORM", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b".snd", b"caff")
_BLOCK_FRAMES = 1 << 16  # decoded and downmixed a block at a time: peak memory is the mono result, not C times it


def _decode_failure(exc: Exception, name: str, known_format: bool) -> AudioError:
    """What a soundfile failure means: corrupt for an input of a known format, else an unsupported format."""
    if not known_format:
        return UnsupportedAudioFormatError(
            f"{name}: not an audio format fastdaf reads ({exc}); accepted: {', '.join(readable_formats())}"
        )
    return AudioDecodeError(f"{name}: cannot decode the audio, it looks corrupt or truncated ({exc})")


def _decode(data: Union[str, io.BytesIO], name: str, *, known_format: bool) -> tuple[np.ndarray, int]:
    """Decode with soundfile to mono float32. Rate, channel count and duration come from the header and
    are checked before any sample is decoded: a 30-minute 8-channel file is refused at once, not after 3.7 GB."""
    soundfile = _soundfile()
    errors = (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError)
    try:
        f = soundfile.SoundFile(data)
    except errors as exc:
        raise _decode_failure(exc, name, known_format) from exc
    with f:
        rate = _check_rate(f.samplerate, name)
        _check_channels(f.channels, name)
        _check_duration(f.frames / rate, name)
        blocks = []
        try:
            while len(block := f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)):
                blocks.append(block.mean(axis=1))
        except errors as exc:
            raise _decode_failure(exc, name, known_format) from exc
    return (np.concatenate(blocks) if blocks else np.zeros(0, np.float32)), rate


def _as_float_array(audio: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu")
        if audio.dtype == torch.bfloat16:
            audio = audio.float()
        audio = audio.numpy()
    if audio.dtype.kind == "i":
        return audio.astype(np.float32) / float(2 ** (8 * audio.dtype.itemsize - 1))
    if audio.dtype.kind == "u":
        half = float(2 ** (8 * audio.dtype.itemsize - 1))
        return (audio.astype(np.float32) - half) / half
    if audio.dtype.kind == "f":
        return audio.astype(np.float32, copy=False)
    raise AudioDecodeError(f"{name}: samples must be integer or floating point, got dtype {audio.dtype}")


def _downmix(samples: np.ndarray, name: str, *, channels_last: bool | None) -> np.ndarray:
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise AudioDecodeError(f"{name}: audio arrays must be [T], [T, C] or [C, T], got {samples.ndim} dimensions")
    if channels_last is None:  # arrays: the small axis is the channel axis
        channels_last = samples.shape[1] <= samples.shape[0]
    if not channels_last:
        samples = samples.T
    _check_channels(samples.shape[1], name)
    return samples.mean(axis=1)


def load_audio(
    audio: AudioInput, sampling_rate: int | None = None, *, target_rate: int | None = None, name: str | None = None
) -> Waveform:
    """Read, validate, downmix and (if target_rate is given) resample one audio input."""
    name = name or describe(audio)
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        if not path.is_file():
            raise AudioNotFoundError(f"{name}: no such audio file")
        if path.suffix.lower().lstrip(".") not in {f.lower() for f in readable_formats()} | {
            "oga",
            "opus",
            "aif",
            "aiff",
        }:
            raise UnsupportedAudioFormatError(
                f"{name}: the extension {path.suffix or '(none)'!r} is not an audio format fastdaf reads; accepted: "
                f"{', '.join(readable_formats())}"
            )
        samples, rate = _decode(str(path), name, known_format=True)
    elif isinstance(audio, (bytes, bytearray)):
        if not audio:
            raise AudioTooShortError(f"{name}: empty byte string")
        samples, rate = _decode(io.BytesIO(bytes(audio)), name, known_format=bytes(audio[:4]).startswith(_MAGIC))
    elif isinstance(audio, (np.ndarray, torch.Tensor)):
        rate = _check_rate(sampling_rate, name)
        samples = _downmix(_as_float_array(audio, name), name, channels_last=None)
    else:
        raise AudioDecodeError(
            f"{name}: audio must be a file path, bytes of an audio file, or a numpy array / torch tensor with "
            "sampling_rate"
        )
    rate = _check_rate(rate, name)
    if samples.size == 0:
        raise AudioTooShortError(f"{name}: the audio is empty; at least {MIN_SECONDS} s is needed")
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise NonFiniteAudioError(f"{name}: {bad} sample(s) are NaN or infinite; samples must be finite")
    peak = float(np.abs(samples).max())
    if peak > MAX_FLOAT_PEAK:
        raise AudioRangeError(
            f"{name}: float samples peak at {peak:.6g}; float audio is full scale at 1.0 (peaks up to "
            f"{MAX_FLOAT_PEAK:g} are accepted). Integer samples passed as floats? Pass the integer array itself "
            "(fastdaf scales it) or divide by 32768 for 16-bit audio"
        )
    seconds = samples.size / rate
    if seconds < MIN_SECONDS:
        raise AudioTooShortError(f"{name}: {seconds:.3f} s of audio; at least {MIN_SECONDS} s is needed")
    _check_duration(seconds, name)
    wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    if target_rate is not None and target_rate != rate:
        wave = resample(wave, rate, target_rate)
        rate = target_rate
    return Waveform(samples=wave, sampling_rate=rate, source=name)
