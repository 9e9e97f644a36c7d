"""fastdaf.audio.dsp: resampling, mel filterbank and DCT, checked against torchaudio where it imports (the
`audio-reference` extra, in `test`) and against what they must compute where it does not (the newest-torch lane).

Tolerances, and why:
- resample: torchaudio's own float32 result is not the reference. It builds its kernel in float32, rounding each
  phase time before multiplying it by the cut-off frequency in units of the reduced rates, so at rates with a
  small gcd it is up to 1e-3 off its float64 result (measured: 16,001 -> 16,000 Hz 1.1e-3, 24,414 -> 16,000 Hz
  6.4e-4). The reference is torchaudio in float64. fastdaf builds its weights in float64 and sums in the input's
  dtype: float64 input agrees to 1e-10 (measured <= 2e-12), float32 input to 2e-6 for unit-variance noise
  (float32 rounding of sums of up to 2 x 6 x orig/new products; measured <= 8.1e-7).
- mel filterbank: torchaudio computes it in float32, fastdaf in float64 then rounds: 1e-5 (measured 4.1e-6).
- DCT: 1e-6 (float32 rounding of the same cosines; measured 7.4e-7).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from fastdaf.audio import dsp

RATE_PAIRS = [
    (44100, 16000),
    (48000, 16000),
    (22050, 16000),
    (8000, 16000),
    (16001, 16000),  # gcd 1: torchaudio's kernel has 16,000 x 16,001 taps
    (24414, 16000),  # TESS's native rate, gcd 2
    (384000, 16000),
    (16000, 44100),
    (11025, 16000),
]


@pytest.fixture(scope="module")
def torchaudio_functional():
    return pytest.importorskip("torchaudio.functional", reason="torchaudio (fastdaf[audio-reference]) not installed")


@pytest.mark.parametrize("orig, new", RATE_PAIRS, ids=lambda r: str(r))
def test_resample_matches_torchaudio_in_float64(torchaudio_functional, orig, new, rng):
    x = torch.randn(2, orig // 4 + 7, generator=rng, dtype=torch.float64)
    want = torchaudio_functional.resample(x, orig, new)
    got64 = dsp.resample(x, orig, new)
    got32 = dsp.resample(x.float(), orig, new)
    assert got64.shape == want.shape == got32.shape
    assert got32.dtype == torch.float32
    assert (got64 - want).abs().max() <= 1e-10
    assert (got32.double() - want).abs().max() <= 2e-6


def test_mel_filterbank_and_dct_match_torchaudio(torchaudio_functional):
    for n_freqs, f_min, f_max, n_mels, rate in [(257, 20.0, 7600.0, 40, 16000), (201, 0.0, 4000.0, 23, 8000)]:
        want = torchaudio_functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, rate, norm=None, mel_scale="htk")
        got = dsp.mel_filterbank(n_freqs, f_min, f_max, n_mels, rate)
        assert got.shape == want.shape and got.dtype == torch.float32
        assert (got - want).abs().max() <= 1e-5
    for scale, norm in [("slaney", "slaney"), ("slaney", None), ("htk", "slaney")]:  # Whisper's is slaney/slaney
        want = torchaudio_functional.melscale_fbanks(201, 0.0, 8000.0, 80, 16000, norm=norm, mel_scale=scale)
        got = dsp.mel_filterbank(201, 0.0, 8000.0, 80, 16000, mel_scale=scale, norm=norm)
        assert (got - want).abs().max() <= 1e-5 * want.abs().max(), (scale, norm)
    with pytest.raises(ValueError, match="mel_scale"):
        dsp.mel_filterbank(201, 0.0, 8000.0, 80, 16000, mel_scale="bark")
    for n_coefficients, n_inputs in [(13, 40), (20, 64)]:
        want = torchaudio_functional.create_dct(n_coefficients, n_inputs, norm="ortho")
        assert (dsp.dct_matrix(n_coefficients, n_inputs) - want).abs().max() <= 1e-6


def test_acoustic_features_are_those_of_torchaudios_filterbank_and_dct(torchaudio_functional, shared_data, monkeypatch):
    """The bundled model was trained on features built with torchaudio's matrices: the new ones change nothing."""
    from fastdaf.audio import acoustic, load_audio

    clips = [load_audio(p).samples for p in sorted((shared_data / "speech").glob("*.wav"))]
    assert len(clips) == 6
    ours = acoustic.acoustic_features(clips)
    monkeypatch.setattr(acoustic, "_CONSTANTS", {})
    monkeypatch.setattr(
        acoustic,
        "mel_filterbank",
        lambda *a: torchaudio_functional.melscale_fbanks(*a, norm=None, mel_scale="htk"),
    )
    monkeypatch.setattr(acoustic, "dct_matrix", lambda *a: torchaudio_functional.create_dct(*a, norm="ortho"))
    theirs = acoustic.acoustic_features(clips)
    scale = theirs.abs().clamp_min(1.0)  # relative for large features, absolute near 0
    assert ((ours - theirs).abs() / scale).max() <= 1e-4


def test_resample_keeps_a_tone_and_removes_what_the_new_rate_cannot_hold():
    """Without torchaudio: a 440 Hz tone resampled to 16 kHz is the tone at the new instants (away from the ends,
    where zero padding bends it), and a 10 kHz tone at 44.1 kHz, past the end of the filter's transition band
    (7.92 kHz cut-off; 6 zero crossings make the band ~2 kHz wide, as torchaudio's), is removed (measured 0.0054)."""
    for orig in (44100, 24414, 16001, 8000):
        t = torch.arange(orig, dtype=torch.float64) / orig  # 1 s
        got = dsp.resample(torch.sin(2 * math.pi * 440 * t), orig, 16000)
        assert got.shape == (16000,)
        want = torch.sin(2 * math.pi * 440 * torch.arange(16000, dtype=torch.float64) / 16000)
        assert (got - want)[800:-800].abs().max() < 2e-3, orig
    t = torch.arange(44100, dtype=torch.float64) / 44100
    high = dsp.resample(torch.sin(2 * math.pi * 10000 * t), 44100, 16000)
    assert high[800:-800].abs().max() < 0.01


def test_resample_shapes_lengths_and_both_weight_paths(monkeypatch, rng):
    x = torch.randn(3, 2, 1001, generator=rng)
    assert dsp.resample(x, 16000, 16000) is x
    for orig, new in [(44100, 16000), (16001, 16000), (8000, 44100)]:
        got = dsp.resample(x, orig, new)
        assert got.shape == (3, 2, math.ceil(1001 * new / orig))
        monkeypatch.setattr(dsp, "KERNEL_LIMIT", 0)  # gathered, weights per output sample (no kernel, no table)
        assert torch.allclose(dsp.resample(x, orig, new), got, atol=1e-6)
        monkeypatch.setattr(dsp, "CHUNK_WEIGHTS", 97)  # many small chunks
        assert torch.allclose(dsp.resample(x, orig, new), got, atol=1e-6)
        monkeypatch.undo()
    with pytest.raises(ValueError, match="positive integers"):
        dsp.resample(x, 0, 16000)
    with pytest.raises(ValueError, match="positive integers"):
        dsp.resample(x, 16000.5, 16000)


MEMORY_PROBE = r"""
import resource, sys, torch
from fastdaf.audio import dsp
orig, seconds = int(sys.argv[1]), float(sys.argv[2])
x = torch.randn(int(orig * seconds))
y = dsp.resample(x[:orig], orig, 16000)  # warm up the allocator and torch's kernels
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
y = dsp.resample(x, orig, 16000)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024, x.numel() * 4)
"""


@pytest.mark.parametrize("orig", [16001, 24414, 383999, 384000])
def test_resample_memory_grows_with_the_clip_not_with_the_rates(orig):
    """10 minutes at 16,001 Hz cost torchaudio a 16,000 x 16,013-tap kernel (1 GB) and seconds; here the peak
    stays under four times the clip plus fixed chunk buffers (dsp's docstring)."""
    seconds = 600.0 if orig < 100_000 else 60.0
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(orig), str(seconds)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    grown, clip_bytes = (int(v) for v in done.stdout.split())
    assert grown <= 4 * clip_bytes + 64 * 2**20, (grown, clip_bytes)
