"""fastdaf.audio.acoustic: YIN pitch on known signals, padding never leaking, pooled statistics, real speech."""

import math

import numpy as np
import pytest
import soundfile
import torch
from builders import RATE, non_speech, speech_clips

from fastdaf.audio.acoustic import (
    FEATURE_DIM,
    FEATURE_NAMES,
    SAMPLE_RATE,
    acoustic_features,
    frame_descriptors,
)
from fastdaf.audio.loading import load_audio
from fastdaf.audio.pitch import estimate_pitch, no_speech_reason
from fastdaf.errors import InputError
from fastdaf.examples import EXAMPLE_CLIP

TONE_FREQS = [80.0, 110.0, 165.0, 220.0, 330.0, 450.0]


def seconds(duration: float) -> torch.Tensor:
    return torch.arange(int(duration * SAMPLE_RATE)) / SAMPLE_RATE


def sine(freq: float, duration: float = 1.0, amplitude: float = 0.5) -> torch.Tensor:
    return amplitude * torch.sin(2 * math.pi * freq * seconds(duration))


def harmonic_tone(freq: float, duration: float = 1.0) -> torch.Tensor:
    """Sawtooth-like: harmonics up to 7 kHz at 1/k, the fundamental weakened to 0.2 (a 'missing' fundamental)."""
    t = seconds(duration)
    n = int(7000 // freq)
    parts = [(0.2 if k == 1 else 1.0 / k) * torch.sin(2 * math.pi * freq * k * t + k) for k in range(1, n + 1)]
    return 0.2 * torch.stack(parts).sum(0)


def column(name: str) -> int:
    return FEATURE_NAMES.index(name)


def inner(x: torch.Tensor, margin: int = 5) -> torch.Tensor:
    """Frames away from the clip edges, where the analysis window is only partly filled."""
    return x[..., margin:-margin]


# ------------------------------------------------------------------------------------------------ names
def test_feature_names_are_unique_and_match_the_output_width():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == FEATURE_DIM
    assert all(name and name == name.strip() for name in FEATURE_NAMES)
    required = ("mfcc1_mean", "mfcc13_std", "mfcc13_delta_std", "f0_p50_hz", "voiced_fraction", "log_energy_p90_db")
    assert set(required) <= set(FEATURE_NAMES)
    out = acoustic_features([sine(200.0, 0.5)])
    assert out.shape == (1, FEATURE_DIM) and out.dtype == torch.float32


# ------------------------------------------------------------------------------------------------ pitch
@pytest.mark.parametrize("freq", TONE_FREQS)
@pytest.mark.parametrize("make", [sine, harmonic_tone], ids=["sine", "harmonic"])
def test_pitch_of_tones_is_within_two_percent(make, freq):
    f0, voiced = estimate_pitch(make(freq)[None])
    assert f0.shape == voiced.shape == (1, SAMPLE_RATE // 160 + 1)
    assert inner(voiced).float().mean() >= 0.95
    tracked = f0[voiced]
    assert abs(tracked.median().item() - freq) / freq < 0.02
    # no octave jumps: nearly every voiced frame is right, not only the median
    assert ((tracked - freq).abs() / freq < 0.02).float().mean() >= 0.95


def test_pitch_is_sub_sample_accurate():
    # 16000 / 237 = 67.5 samples: integer lags alone would be off by up to 0.7 %
    f0, voiced = estimate_pitch(sine(237.0)[None])
    assert (inner(f0)[inner(voiced)] - 237.0).abs().max() < 0.5


def test_noise_and_silence_are_unvoiced(rng):
    noise = 0.1 * torch.randn(2, SAMPLE_RATE, generator=rng)
    f0, voiced = estimate_pitch(noise)
    assert voiced.float().mean() < 0.02
    f0, voiced = estimate_pitch(torch.zeros(1, SAMPLE_RATE))
    assert not voiced.any() and (f0 == 0).all()


def test_unvoiced_frames_have_zero_f0(rng):
    clip = torch.cat([sine(150.0, 0.5), 0.1 * torch.randn(SAMPLE_RATE // 2, generator=rng)])
    f0, voiced = estimate_pitch(clip[None])
    assert voiced[0, :45].all() and not voiced[0, 55:].any()
    assert (f0[~voiced] == 0).all() and (f0[voiced] > 0).all()


def test_near_silent_frames_are_unvoiced():
    # the same tone 60 dB under the clip's loud part (like hum in a pause), and a tone under the absolute floor
    clip = torch.cat([sine(200.0, 0.5), sine(200.0, 0.5, amplitude=5e-4)])
    f0, voiced = estimate_pitch(torch.stack([clip, sine(200.0, 1.0, amplitude=1e-5)]))
    assert voiced[0, 5:45].all() and not voiced[0, 55:].any()
    assert not voiced[1].any()
    # 30 dB under the loud part is still speech
    clip = torch.cat([sine(200.0, 0.5), sine(200.0, 0.5, amplitude=0.5 * 10 ** (-30 / 20))])
    assert estimate_pitch(clip[None])[1][0, 55:95].all()


def test_pitch_follows_a_step_half_way():
    clip = torch.cat([sine(120.0, 0.5), sine(300.0, 0.5)])
    f0, voiced = estimate_pitch(clip[None])
    first, second = f0[0, 5:45], f0[0, 56:95]
    assert voiced[0, 5:45].all() and voiced[0, 56:95].all()
    assert ((first - 120.0).abs() < 2.4).all() and ((second - 300.0).abs() < 6.0).all()


def test_pitch_tracks_a_chirp():
    # exponential sweep 100 -> 400 Hz over 2 s; frame i is centred on sample 160 * i
    duration, f_start, f_end = 2.0, 100.0, 400.0
    t = seconds(duration).double()
    rate = math.log(f_end / f_start) / duration
    clip = (0.5 * torch.sin(2 * math.pi * f_start * (torch.exp(rate * t) - 1) / rate)).float()
    f0, voiced = estimate_pitch(clip[None])
    expected = inner(f_start * torch.exp(rate * torch.arange(f0.shape[1]) * 0.01), 10).float()
    assert inner(voiced[0], 10).all()
    relative_error = (inner(f0[0], 10) - expected).abs() / expected
    assert relative_error.max() < 0.03


def test_frames_past_a_clip_are_unvoiced_even_if_padding_holds_a_tone():
    tone = sine(200.0, 1.0)
    f0, voiced = estimate_pitch(tone[None], torch.tensor([SAMPLE_RATE // 2]))
    last_valid = (SAMPLE_RATE // 2) // 160
    assert voiced[0, 5 : last_valid - 5].all()
    assert not voiced[0, last_valid + 1 :].any() and (f0[0, last_valid + 1 :] == 0).all()


# ----------------------------------------------------------------------------------- frame descriptors
def test_spectral_descriptors_of_a_tone_and_of_noise(rng):
    batch = torch.stack([sine(1000.0), 0.1 * torch.randn(SAMPLE_RATE, generator=rng)])
    d = frame_descriptors(batch)
    assert d["mfcc"].shape == (2, SAMPLE_RATE // 160 + 1, 13)
    tone, noise = 0, 1
    centroid, rolloff = inner(d["spectral_centroid_hz"]), inner(d["spectral_rolloff85_hz"])
    flatness, zcr, bandwidth = inner(d["spectral_flatness"]), inner(d["zcr"]), inner(d["spectral_bandwidth_hz"])
    assert ((centroid[tone] - 1000.0).abs() < 60).all() and ((rolloff[tone] - 1000.0).abs() <= 32).all()
    assert (flatness[tone] < 0.01).all() and ((zcr[tone] - 2 * 1000.0 / SAMPLE_RATE).abs() < 0.01).all()
    # white noise: flat on average, so its centre of mass is half the band (single frames scatter)
    assert (centroid[noise].median() - 4000.0).abs() < 150 and ((centroid[noise] - 4000.0).abs() < 800).all()
    assert (rolloff[noise] > 6000).all()
    assert (flatness[noise] > 0.3).all() and ((zcr[noise] - 0.5).abs() < 0.1).all()
    # ... and its spread around it that of a uniform distribution over 0-8 kHz
    assert (bandwidth[noise].median() - 8000.0 / math.sqrt(12)).abs() < 150
    assert (bandwidth[noise] > 5 * bandwidth[tone].max()).all()
    # a steady tone barely changes between frames, noise changes a lot
    assert inner(d["spectral_flux"])[tone].max() < 0.05 < inner(d["spectral_flux"])[noise].min()


def test_log_energy_follows_gain():
    quiet, loud = sine(200.0, 0.5, amplitude=0.01), sine(200.0, 0.5, amplitude=0.1)
    d = frame_descriptors(torch.stack([quiet, loud]))
    gain_db = inner(d["log_energy_db"][1] - d["log_energy_db"][0])
    assert ((gain_db - 20.0).abs() < 0.01).all()
    # a sine of amplitude a has mean power a^2 / 2
    assert (inner(d["log_energy_db"][1]) - 10 * math.log10(0.1**2 / 2)).abs().max() < 0.2


# ----------------------------------------------------------------------------------- pooled features
def speech_like(rng: torch.Generator, n: int) -> torch.Tensor:
    """A gliding harmonic tone switched on and off, over noise: voiced, unvoiced and quiet frames."""
    t = seconds(n / SAMPLE_RATE)
    freq = 100 + 150 * torch.rand(1, generator=rng).item()
    phase = 2 * math.pi * torch.cumsum(freq * (1 + 0.2 * torch.sin(2 * math.pi * 1.5 * t)), 0) / SAMPLE_RATE
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 8))
    gate = (torch.sin(2 * math.pi * 2.0 * t) > 0).float()
    return 0.2 * voiced * gate + 0.001 * torch.randn(n, generator=rng)


def test_a_batch_equals_each_clip_alone(rng):
    clips = [speech_like(rng, n) for n in (1600, 9000, 23456, 40000)]
    batched = acoustic_features(clips)
    alone = torch.cat([acoustic_features(clip[None]) for clip in clips])
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-4)
    # a padded tensor whose padding holds garbage gives the same rows
    padded = torch.randn(len(clips), 45000, generator=rng)
    lengths = torch.tensor([c.shape[0] for c in clips])
    for row, clip in zip(padded, clips):
        row[: clip.shape[0]] = clip
    torch.testing.assert_close(acoustic_features(padded, lengths), alone, rtol=1e-4, atol=1e-4)


def test_pooled_statistics_match_a_plain_reference(rng):
    clip = speech_like(rng, 3 * SAMPLE_RATE)
    features = acoustic_features([clip])[0]
    d = {k: v[0] for k, v in frame_descriptors(clip[None]).items()}
    voiced, nonsilent = d["voiced"], d["nonsilent"]
    assert 0 < voiced.sum() < d["valid"].sum() and nonsilent.sum() < d["valid"].sum()
    f0 = d["f0_hz"][voiced]
    expected = {
        "f0_mean_hz": f0.mean(),
        "f0_std_hz": f0.std(unbiased=False),
        "f0_p10_hz": torch.quantile(f0, 0.1),
        "f0_p90_hz": torch.quantile(f0, 0.9),
        "log_energy_p50_db": torch.quantile(d["log_energy_db"], 0.5),
        "voiced_fraction": voiced.float().mean(),
        "mfcc2_mean": d["mfcc"][nonsilent, 1].mean(),
        "mfcc5_std": d["mfcc"][nonsilent, 4].std(unbiased=False),
        "spectral_centroid_mean_hz": d["spectral_centroid_hz"][nonsilent].mean(),
        "zcr_std": d["zcr"][nonsilent].std(unbiased=False),
        "spectral_flux_mean": d["spectral_flux"][1:][nonsilent[1:]].mean(),
    }
    for name, value in expected.items():
        assert features[column(name)].item() == pytest.approx(value.item(), rel=1e-4, abs=1e-5), name


def test_silence_noise_and_short_clips_give_finite_vectors(rng):
    clips = [
        torch.zeros(SAMPLE_RATE),
        0.3 * torch.randn(SAMPLE_RATE, generator=rng),
        sine(200.0, 0.1),  # 1600 samples
        torch.zeros(1600),
        torch.tensor([0.5]),
    ]
    out = acoustic_features(clips)
    assert out.shape == (len(clips), FEATURE_DIM) and torch.isfinite(out).all()
    silence, noise, short = out[0], out[1], out[2]
    for row in (silence, noise):
        assert row[column("voiced_fraction")] == 0 and row[column("f0_p50_hz")] == 0
    assert short[column("voiced_fraction")] > 0.5
    assert short[column("f0_p50_hz")].item() == pytest.approx(200.0, rel=0.02)
    huge = acoustic_features([1e3 * torch.randn(4000, generator=rng)])
    assert torch.isfinite(huge).all()


def test_encoder_returns_cpu_float32_rows_in_input_order():
    from fastdaf.encoders import AcousticEncoder

    encoder = AcousticEncoder()
    assert encoder.sampling_rate == SAMPLE_RATE and encoder.dim == FEATURE_DIM
    assert tuple(encoder.feature_names) == FEATURE_NAMES
    clips = [sine(150.0, 0.7), sine(250.0, 0.3).double()]  # longest first: the encoder sorts by length internally
    out = encoder.encode(clips).vectors
    assert out.shape == (2, FEATURE_DIM) and out.dtype == torch.float32 and out.device.type == "cpu"
    torch.testing.assert_close(out, acoustic_features([c.float() for c in clips]))
    assert encoder.encode([]).vectors.shape == (0, FEATURE_DIM)


def test_malformed_input_is_refused():
    with pytest.raises(InputError):
        acoustic_features(torch.zeros(2, 3, 100))
    with pytest.raises(InputError):
        acoustic_features(torch.zeros(2, 100), torch.tensor([100, 101]))
    with pytest.raises(InputError):
        estimate_pitch(torch.zeros(1, 100), fmin=300.0, fmax=200.0)


# ---------------------------------------------------------------------------------------- real speech
def load_speech(shared_data):
    sf = pytest.importorskip("soundfile")
    paths = sorted((shared_data / "speech").glob("*.wav"))
    if len(paths) < 6:
        pytest.skip("the six CMU ARCTIC clips are not in shared/data/speech")
    clips = []
    for path in paths:
        samples, rate = sf.read(path, dtype="float32")
        assert rate == SAMPLE_RATE and samples.ndim == 1
        clips.append(torch.from_numpy(samples))
    return paths, clips


def test_real_speech(shared_data):
    paths, clips = load_speech(shared_data)
    out = acoustic_features(clips)
    assert out.shape == (len(clips), FEATURE_DIM) and torch.isfinite(out).all()
    median_f0 = out[:, column("f0_p50_hz")]
    voiced_fraction = out[:, column("voiced_fraction")]
    assert ((median_f0 > 70) & (median_f0 < 300)).all(), median_f0
    assert ((voiced_fraction > 0.25) & (voiced_fraction < 0.95)).all(), voiced_fraction
    # aew is a male speaker, axb a female one
    male = torch.tensor(["_aew_" in p.name for p in paths])
    assert male.any() and (~male).any()
    assert median_f0[male].max() < 160 < median_f0[~male].min(), median_f0
    # the F0 range is a range of speech, not a constant
    assert (out[:, column("f0_p90_hz")] > 1.1 * out[:, column("f0_p10_hz")]).all()
    # every clip gets its own vector
    distances = torch.cdist(out, out) + torch.eye(len(clips)) * 1e9
    assert distances.min() > 1.0


# ------------------------------------------------------------------- what holds speech (issue 13)
def test_real_speech_is_speech_and_non_speech_is_not(shared_data):
    for clip in speech_clips(shared_data):
        assert no_speech_reason(load_audio(clip, target_rate=RATE).samples) is None, clip.name
    quiet_late = np.concatenate(
        [np.zeros(60 * RATE), 10 ** (-30 / 20) * soundfile.read(EXAMPLE_CLIP, dtype="float32")[0]]
    )
    assert no_speech_reason(torch.from_numpy(quiet_late).float()) is None  # 30 dB quieter, after a minute of silence
    reasons = {name: no_speech_reason(torch.from_numpy(x).float()) for name, x in non_speech().items()}
    assert reasons["silence"] == reasons["dc offset"] == reasons["white noise"] == "no voiced frames"
    assert reasons["low-level hum"].startswith("only 0 voiced frame(s) at -55 dBFS or louder")
