import numpy as np
import pytest
import soundfile
import torch
import torchaudio
from builders import RATE

from fastdaf.audio.loading import MAX_FLOAT_PEAK, MAX_SECONDS, load_audio
from fastdaf.errors import (
    AudioDecodeError,
    AudioError,
    AudioNotFoundError,
    AudioRangeError,
    AudioTooLongError,
    AudioTooShortError,
    FastDAFError,
    NonFiniteAudioError,
    SamplingRateError,
    UnsupportedAudioFormatError,
)
from fastdaf.examples import EXAMPLE_CLIP


@pytest.fixture
def clip(shared_data):
    path = shared_data / "speech" / "cmu_arctic_us_aew_a0001.wav"
    samples, rate = soundfile.read(path, dtype="float32")
    return path, samples, rate


def test_reads_real_clip(clip):
    path, samples, rate = clip
    wave = load_audio(path)
    assert wave.sampling_rate == rate == 16000 and wave.samples.dtype == torch.float32
    np.testing.assert_array_equal(wave.samples.numpy(), samples)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("fmt, subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("wav", "FLOAT"), ("ogg", "VORBIS")])
def test_formats_rates_and_channels_come_back_the_same(clip, tmp_path, rate, fmt, subtype):
    _, samples, base = clip
    src = torchaudio.functional.resample(torch.from_numpy(samples), base, rate).numpy()
    stereo = np.stack([src, src], axis=1)
    path = tmp_path / f"clip.{fmt}"
    soundfile.write(path, stereo, rate, subtype=subtype)
    wave = load_audio(path, target_rate=16000)
    reference = torch.from_numpy(samples)
    if rate < base:  # what 8 kHz cannot carry is gone: compare the band both keep
        reference = torchaudio.functional.resample(torchaudio.functional.resample(reference, base, rate), rate, base)
    n = min(wave.samples.numel(), reference.numel())
    assert abs(wave.samples.numel() - reference.numel()) <= 2
    err = (wave.samples[:n] - reference[:n]).norm() / reference[:n].norm()
    # two resamplings (16 kHz -> rate -> 16 kHz) cost ~2.6% near Nyquist; Vorbis is lossy on top
    assert err < (0.15 if subtype == "VORBIS" else 0.05), err


def test_bytes_arrays_and_int_samples(clip):
    path, samples, rate = clip
    from_bytes = load_audio(path.read_bytes())
    ints = (samples * 32768).round().clip(-32768, 32767).astype(np.int16)
    from_ints = load_audio(ints, sampling_rate=rate)
    from_tensor = load_audio(torch.from_numpy(np.stack([samples, samples])), sampling_rate=rate)  # [C, T]
    for wave in (from_bytes, from_ints, from_tensor):
        torch.testing.assert_close(wave.samples, torch.from_numpy(samples), atol=1e-4, rtol=0)


def test_float_samples_far_outside_full_scale_are_refused_naming_the_peak(clip, tmp_path):
    """int16 values handed over as float32 (a common client mistake) would be scored as shouting; the integer array
    itself keeps its scaling, and float audio overshooting full scale a little is accepted."""
    path, samples, rate = clip
    ints = (samples * 32768).round().clip(-32768, 32767).astype(np.int16)
    peak = float(np.abs(ints).max())
    for unscaled in (ints.astype(np.float32), torch.from_numpy(ints.astype(np.float64))):
        with pytest.raises(AudioRangeError, match=f"peak at {peak:g}.*32768"):
            load_audio(unscaled, sampling_rate=rate)
    torch.testing.assert_close(
        load_audio(ints, sampling_rate=rate).samples, torch.from_numpy(samples), atol=1e-4, rtol=0
    )
    hot = samples / np.abs(samples).max() * (MAX_FLOAT_PEAK * 0.9)
    assert load_audio(hot, sampling_rate=rate).samples.abs().max() == pytest.approx(MAX_FLOAT_PEAK * 0.9, rel=1e-5)
    # a float WAV file holds what it holds: the same rule
    soundfile.write(tmp_path / "unscaled.wav", ints.astype(np.float32), rate, subtype="FLOAT")
    with pytest.raises(AudioRangeError, match="unscaled.wav"):
        load_audio(tmp_path / "unscaled.wav")


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, kwargs, error, words",
    [
        (lambda t, c: t / "nope.wav", {}, AudioNotFoundError, "no such audio file"),
        (lambda t, c: t, {}, AudioNotFoundError, "no such audio file"),
        (lambda t, c: write(t, "broken.wav", b"RIFF" + b"\x00" * 40), {}, AudioDecodeError, "corrupt"),
        (lambda t, c: write(t, "notes.txt", b"hello"), {}, UnsupportedAudioFormatError, "'.txt'"),
        (lambda t, c: b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, {}, UnsupportedAudioFormatError, "not an audio format"),
        (lambda t, c: b"RIFF" + b"\x01" * 64, {}, AudioDecodeError, "corrupt"),
        (lambda t, c: b"", {}, AudioTooShortError, "empty"),
        (lambda t, c: np.zeros(0, dtype=np.float32), dict(sampling_rate=16000), AudioTooShortError, "empty"),
        (lambda t, c: np.zeros(800, dtype=np.float32), dict(sampling_rate=16000), AudioTooShortError, "0.050 s"),
        (
            lambda t, c: np.array([0.0, np.nan] * 2000, dtype=np.float32),
            dict(sampling_rate=16000),
            NonFiniteAudioError,
            "NaN or infinite",
        ),
        (lambda t, c: np.zeros(4000, dtype=np.float32), {}, SamplingRateError, "sampling_rate is required"),
        (lambda t, c: np.zeros(4000, dtype=np.float32), dict(sampling_rate=100), SamplingRateError, "100 Hz"),
        (lambda t, c: np.zeros(4000, dtype=np.float32), dict(sampling_rate=16000.5), SamplingRateError, "integer"),
        (
            lambda t, c: np.zeros(int(4000 * (MAX_SECONDS + 1)), dtype=np.float32),
            dict(sampling_rate=4000),
            AudioTooLongError,
            "at most",
        ),
        (
            lambda t, c: np.zeros((4000, 2, 2), dtype=np.float32),
            dict(sampling_rate=16000),
            AudioDecodeError,
            "dimensions",
        ),
        (lambda t, c: 42, {}, AudioDecodeError, "file path, bytes"),
    ],
)
def test_bad_audio_raises_the_specific_error_naming_the_input(tmp_path, clip, make, kwargs, error, words):
    audio = make(tmp_path, clip)
    with pytest.raises(error, match=words) as info:
        load_audio(audio, **kwargs)
    assert isinstance(info.value, AudioError) and isinstance(info.value, FastDAFError)
    named = (
        str(audio)
        if isinstance(audio, type(tmp_path))
        else ("bytes" if isinstance(audio, bytes) else type(audio).__name__)
    )
    assert named in str(info.value)


def test_file_with_absurd_sampling_rate(tmp_path):
    path = tmp_path / "slow.wav"
    soundfile.write(path, np.zeros(3000, dtype=np.float32), 1000)
    with pytest.raises(SamplingRateError, match="1000 Hz") as info:
        load_audio(path)
    assert "slow.wav" in str(info.value)


# ------------------------------------------------------------------- limits read before decoding (issue 13)
@pytest.fixture
def no_decoding(monkeypatch):
    """Any decode fails the test: a refusal must come from the header alone."""

    def decoded(*args, **kwargs):
        raise AssertionError("samples were decoded before the refusal")

    monkeypatch.setattr(soundfile, "read", decoded)
    monkeypatch.setattr(soundfile.SoundFile, "read", decoded)


def test_too_long_audio_is_refused_from_the_header(tmp_path, no_decoding):
    path = tmp_path / "long.wav"
    seconds = MAX_SECONDS + 60  # 11 minutes of 8 kHz mono int16: 10.6 MB
    with soundfile.SoundFile(path, "w", 8000, 1, "PCM_16") as f:
        f.buffer_write(bytes(int(seconds * 8000) * 2), dtype="int16")
    message = f"{seconds:.1f} s of audio; at most {MAX_SECONDS:.0f} s is accepted"
    with pytest.raises(AudioTooLongError, match=message):
        load_audio(path)
    with pytest.raises(AudioTooLongError, match=message):
        load_audio(path.read_bytes())


def test_too_many_channels_are_refused_from_the_header(tmp_path, no_decoding):
    path = tmp_path / "nine.wav"
    soundfile.write(path, np.zeros((RATE, 9), np.float32), RATE)
    with pytest.raises(AudioDecodeError, match="9 channels; at most 8 are accepted") as info:
        load_audio(path)
    assert "nine.wav" in str(info.value)


def test_multichannel_files_are_downmixed_as_before(tmp_path):
    samples, rate = soundfile.read(EXAMPLE_CLIP, dtype="float32")
    channels = np.stack([samples * k for k in (0.5, 1.0, -0.25, 0.75)], axis=1)
    soundfile.write(tmp_path / "four.wav", channels, rate, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "four.wav").samples.numpy(), channels.mean(axis=1), atol=1e-7)
