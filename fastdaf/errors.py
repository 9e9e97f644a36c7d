"""Every error fastdaf raises on purpose derives from FastDAFError, so callers can catch one type."""

from __future__ import annotations


class FastDAFError(Exception):
    """Base class of all fastdaf errors."""


class ConfigError(FastDAFError, ValueError):
    """A DAFConfig (or training option) holds a value that is not accepted."""


class InputError(FastDAFError, ValueError):
    """Features, masks or labels handed to a head, metric or trainer are malformed."""


class CheckpointError(FastDAFError):
    """A checkpoint directory cannot be loaded: missing, corrupt, or not matching its config."""


class FeatureFileError(FastDAFError):
    """A feature file cannot be read or does not follow the fastdaf feature format."""


class UnsupportedError(FastDAFError, NotImplementedError):
    """The request is valid for the reference head but not supported by this implementation."""


class AudioError(FastDAFError, ValueError):
    """An audio input cannot be used; subclasses say why. Messages name the input."""


class AudioNotFoundError(AudioError, FileNotFoundError):
    """An audio path does not exist or is not a file."""


class AudioDecodeError(AudioError):
    """An audio file or byte string exists but cannot be decoded (corrupt or truncated)."""


class UnsupportedAudioFormatError(AudioError):
    """The audio container/format is not one fastdaf reads."""


class AudioTooShortError(AudioError):
    """The audio is empty or shorter than the minimum duration."""


class AudioTooLongError(AudioError):
    """The audio is longer than the documented maximum duration."""


class NonFiniteAudioError(AudioError):
    """The audio holds NaN or infinite samples."""


class AudioRangeError(AudioError):
    """Float samples far outside [-1, 1]: integers passed as floats without scaling, most likely."""


class SamplingRateError(AudioError):
    """The sampling rate is missing, not an integer, or outside the accepted range."""


class NonFiniteScoreError(FastDAFError):
    """The model gave an utterance a NaN or infinite score or weight (a checkpoint whose weights overflow)."""


class EncoderError(FastDAFError):
    """An encoder cannot be loaded or cannot encode the given input."""


class Interrupted(FastDAFError):
    """A run stopped by SIGTERM or SIGINT after cleaning up; the CLI exits with 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        import signal  # noqa: PLC0415 - only to name the signal

        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


class OutputError(FastDAFError):
    """A result file cannot be written or published."""


class OutputBusyError(InputError):
    """Another fastdaf run is writing the same --out (fastdaf.outputs holds one lock per output)."""


class ManifestError(FastDAFError):
    """A manifest file cannot be read or lacks the required columns."""


class ServeError(FastDAFError):
    """The Triton server could not be started, or a model repository could not be written."""


class MissingExtraError(FastDAFError, ImportError):
    """An optional feature whose packages are not installed; the message names the extra that installs them."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} need(s) the optional packages of fastdaf[{extra}]: pip install 'fastdaf[{extra}]'")
        self.extra = extra
