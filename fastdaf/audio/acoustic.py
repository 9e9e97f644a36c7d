"""Built-in acoustic utterance features: the role COVAREP plays in multimodal sentiment work, with no weights.

Frames, levels and padding are `fastdaf.audio.frames`; pitch (YIN) and the speech check `fastdaf.audio.pitch`.
Everything is written in torch (the mel filterbank, DCT matrix and resampler in `fastdaf.audio.dsp`) and runs on
whole padded batches at once, so a GPU batch costs a handful of kernels; CPU works too. Input is mono float32 audio at
16 kHz (loading and resampling live in `fastdaf.audio`).

Features (`acoustic_features`, FEATURE_NAMES lists every column in order)
    - ``mfcc{k}_mean`` / ``mfcc{k}_std`` (k = 1..13): 13 MFCCs (DCT-II of the log of 40 mel bands from
      MEL_FMIN to MEL_FMAX = 7.6 kHz, dB scale, floored MEL_DYNAMIC_RANGE_DB = 40 dB under the clip's loudest
      band so that bands a recording lacks do not dominate: with a 60 dB range, resampling 16 -> 44.1 -> 16 kHz
      moved the MFCC means by up to 26%, with 40 dB by 6%) averaged over non-silent frames; timbre and
      vocal-tract shape. mfcc1 tracks overall level.
    - ``mfcc{k}_delta_std``: spread of the HTK regression deltas (+-2 frames); how fast the timbre moves,
      a proxy for articulation rate.
    - ``log_energy_{mean,std,p10,p50,p90}_db``: frame energy ``10 log10(mean x^2)`` over all frames of the
      clip; loudness and its dynamic range (p10 is roughly the pause/noise floor).
    - ``f0_{mean,std,p10,p50,p90}_hz``: F0 over voiced frames (all 0 when nothing is voiced); pitch level
      and intonation range, the main prosodic cues of arousal.
    - ``voiced_fraction``: voiced frames / frames of the clip.
    - ``spectral_{centroid,bandwidth,rolloff85}_{mean,std}_hz``: centre of mass, spread around it, and the
      frequency under which 85 % of the magnitude lies; brightness / tenseness of the voice.
    - ``spectral_flatness_{mean,std}``: geometric / arithmetic mean of the power spectrum (0 tonal, 1 noise);
      breathiness.
    - ``spectral_flux_{mean,std}``: L2 distance between consecutive unit-norm magnitude spectra; spectral
      change.
    - ``zcr_{mean,std}``: zero-crossing rate per sample; noisiness / fricatives.
    MFCC and spectral statistics use non-silent frames only (see SILENCE_DB_BELOW_PEAK): pauses would
    otherwise dominate them. Every statistic of an empty set is 0, so silence, noise and very short clips
    still give finite vectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .dsp import dct_matrix, mel_filterbank
from .frames import (
    HOP_SECONDS,
    POWER_FLOOR,
    SAMPLE_RATE,
    WINDOW_SECONDS,
    frame_count,
    frame_view,
    loud_frames,
    pad_batch,
    pad_for_frames,
    power_db,
    valid_frames,
)
from .pitch import pitch_from_track, speech_frames, yin_track

N_MELS = 40
N_MFCC = 13
ROLLOFF_FRACTION = 0.85
MEL_FMIN = 20.0
MEL_FMAX = 7600.0  # below the 8 kHz Nyquist of 16 kHz audio, where resamplers roll off
MEL_DYNAMIC_RANGE_DB = 40.0  # measured: 60 dB let resampling noise in quiet bands move MFCC means by 26%, 40 dB by 6%
_PERCENTILES = (0.10, 0.50, 0.90)


def _stat_names(prefix: str, stats: Sequence[str], unit: str = "") -> list[str]:
    return [f"{prefix}_{stat}{unit}" for stat in stats]


_SPECTRAL = (
    ("spectral_centroid", "_hz"),
    ("spectral_bandwidth", "_hz"),
    ("spectral_rolloff85", "_hz"),
    ("spectral_flatness", ""),
    ("spectral_flux", ""),
    ("zcr", ""),
)
_DISTRIBUTION = ("mean", "std", "p10", "p50", "p90")

FEATURE_NAMES: tuple[str, ...] = tuple(
    [f"mfcc{k}_mean" for k in range(1, N_MFCC + 1)]
    + [f"mfcc{k}_std" for k in range(1, N_MFCC + 1)]
    + [f"mfcc{k}_delta_std" for k in range(1, N_MFCC + 1)]
    + _stat_names("log_energy", _DISTRIBUTION, "_db")
    + _stat_names("f0", _DISTRIBUTION, "_hz")
    + ["voiced_fraction"]
    + [name for prefix, unit in _SPECTRAL for name in _stat_names(prefix, ("mean", "std"), unit)]
)
FEATURE_DIM: int = len(FEATURE_NAMES)


# ------------------------------------------------------------------------------------ spectral descriptors
_CONSTANTS: dict[tuple, tuple[torch.Tensor, ...]] = {}


def _spectral_constants(sample_rate: int, n_fft: int, win: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Analysis window, mel filterbank, DCT matrix and bin frequencies, built once per device.

    A plain dict rather than functools.lru_cache: torch.compile traces into lru_cache wrappers, but reads a
    warm dict as constants.
    """
    key = (sample_rate, n_fft, win, str(device))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = _build_spectral_constants(sample_rate, n_fft, win, device)
    return _CONSTANTS[key]


def _build_spectral_constants(sample_rate: int, n_fft: int, win: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    n_freqs = n_fft // 2 + 1
    window = torch.hann_window(win, periodic=True, device=device)
    mel = mel_filterbank(n_freqs, MEL_FMIN, min(MEL_FMAX, sample_rate / 2), N_MELS, sample_rate).to(device)
    dct = dct_matrix(N_MFCC, N_MELS).to(device)
    freqs = torch.linspace(0.0, sample_rate / 2, n_freqs, device=device)
    return window, mel, dct, freqs


def _mfcc(power: torch.Tensor, mel: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """MFCCs of mel energies floored MEL_DYNAMIC_RANGE_DB under the clip's loudest band: bands a
    recording does not carry (telephone-band audio, resampler roll-off) sit at the floor instead of
    at log(~0), which would otherwise dominate every coefficient."""
    bands = power @ mel  # [B, F, N_MELS]
    peak = bands.amax(dim=(1, 2), keepdim=True)
    floor = peak * 10.0 ** (-MEL_DYNAMIC_RANGE_DB / 10.0) + POWER_FLOOR
    return (10.0 * torch.log10(torch.maximum(bands, floor))) @ dct


def _centroid_and_bandwidth(magnitude: torch.Tensor, freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    weights = magnitude / magnitude.sum(dim=-1, keepdim=True).clamp_min(POWER_FLOOR)
    centroid = weights @ freqs
    spread = (weights * (freqs - centroid.unsqueeze(-1)).square()).sum(dim=-1)
    return centroid, spread.clamp_min(0.0).sqrt()


def _rolloff(magnitude: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Lowest bin frequency under which ROLLOFF_FRACTION of the magnitude lies (0 for a silent frame)."""
    cum = torch.cumsum(magnitude, dim=-1)
    reached = cum >= ROLLOFF_FRACTION * cum[..., -1:]
    return freqs[reached.int().argmax(dim=-1)]


def _flatness(power: torch.Tensor) -> torch.Tensor:
    log_power = torch.log(power + POWER_FLOOR)
    return torch.exp(log_power.mean(dim=-1)) / (power.mean(dim=-1) + POWER_FLOOR)


def _flux(magnitude: torch.Tensor) -> torch.Tensor:
    """Change of the unit-norm spectrum from the previous frame (0 for the first frame)."""
    unit = F.normalize(magnitude, dim=-1, eps=POWER_FLOOR)
    change = (unit[:, 1:] - unit[:, :-1]).norm(dim=-1)
    return F.pad(change, (1, 0))


def _zero_crossing_rate(frames: torch.Tensor) -> torch.Tensor:
    positive = frames >= 0
    return (positive[..., 1:] != positive[..., :-1]).float().mean(dim=-1)


def frame_descriptors(
    waveforms: torch.Tensor | Sequence[torch.Tensor],
    lengths: torch.Tensor | None = None,
    *,
    sample_rate: int = SAMPLE_RATE,
) -> dict[str, torch.Tensor]:
    """Frame-level descriptors on one 10 ms frame grid, all [B, F] except mfcc [B, F, 13].

    Keys: mfcc, log_energy_db, f0_hz, voiced, spectral_centroid_hz, spectral_bandwidth_hz,
    spectral_rolloff85_hz, spectral_flatness, spectral_flux, zcr, valid (frame inside its clip),
    nonsilent (valid and loud enough for the timbre statistics), pitch_dip (valid and YIN found a period,
    however quiet) and pitch_window_db (each frame's level over the YIN window; the speech check reads these two).
    """
    return _descriptors(*pad_batch(waveforms, lengths), sample_rate=sample_rate)


def _descriptors(waveforms: torch.Tensor, lengths: torch.Tensor, *, sample_rate: int) -> dict[str, torch.Tensor]:
    """frame_descriptors on a batch pad_batch already padded and masked (padding done once per call)."""
    win = round(WINDOW_SECONDS * sample_rate)
    hop = round(HOP_SECONDS * sample_rate)
    n_fft = 1 << (win - 1).bit_length()
    window, mel, dct, freqs = _spectral_constants(sample_rate, n_fft, win, waveforms.device)

    n_frames = frame_count(waveforms.shape[-1], hop)
    frames = frame_view(pad_for_frames(waveforms, win, hop, left=win // 2), win, hop, n_frames)
    spectrum = torch.fft.rfft(frames * window, n=n_fft)
    power = spectrum.real.square() + spectrum.imag.square()
    magnitude = power.sqrt()
    log_energy = power_db(frames.square().mean(dim=-1))
    valid = valid_frames(lengths, n_frames, hop)
    centroid, bandwidth = _centroid_and_bandwidth(magnitude, freqs)
    period, dip, pitch_window_db = yin_track(waveforms, sample_rate=sample_rate, hop=hop)
    f0, voiced = pitch_from_track(period, dip, pitch_window_db, lengths, sample_rate=sample_rate, hop=hop)
    return {
        "mfcc": _mfcc(power, mel, dct),
        "log_energy_db": log_energy,
        "f0_hz": f0,
        "voiced": voiced,
        "spectral_centroid_hz": centroid,
        "spectral_bandwidth_hz": bandwidth,
        "spectral_rolloff85_hz": _rolloff(magnitude, freqs),
        "spectral_flatness": _flatness(power),
        "spectral_flux": _flux(magnitude),
        "zcr": _zero_crossing_rate(frames),
        "valid": valid,
        "nonsilent": loud_frames(log_energy, valid),
        "pitch_dip": dip & valid,
        "pitch_window_db": pitch_window_db,
    }


# ------------------------------------------------------------------------------------- masked functionals
def _masked_mean_std(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std over frames (dim 1) where mask holds; 0 for an empty mask. x [B, F, ...]."""
    while mask.dim() < x.dim():
        mask = mask.unsqueeze(-1)
    count = mask.sum(dim=1).clamp_min(1)
    mean = torch.where(mask, x, 0.0).sum(dim=1) / count
    var = torch.where(mask, (x - mean.unsqueeze(1)).square(), 0.0).sum(dim=1) / count
    return mean, var.sqrt()


def _masked_percentiles(x: torch.Tensor, mask: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    """Linear-interpolated percentiles per row of x [B, F] over masked frames, [B, len(qs)]; 0 if empty."""
    ordered = torch.where(mask, x, math.inf).sort(dim=-1).values  # masked-out values sort last
    count = mask.sum(dim=-1, keepdim=True)
    quantiles = torch.cat([x.new_full((1,), q) for q in qs])  # filled on the device, no host copy: capture-safe
    position = quantiles * (count - 1).clamp_min(0)
    low = position.floor().long()
    high = torch.minimum(low + 1, (count - 1).clamp_min(0))
    frac = position - low
    value = torch.lerp(ordered.gather(-1, low), ordered.gather(-1, high), frac)
    return torch.where(count > 0, value, 0.0)


def _distribution(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean, std, p10, p50, p90 of x [B, F] over masked frames -> [B, 5]."""
    mean, std = _masked_mean_std(x, mask)
    return torch.cat([mean[:, None], std[:, None], _masked_percentiles(x, mask, _PERCENTILES)], dim=-1)


def _shift_frames(x: torch.Tensor, k: int) -> torch.Tensor:
    """out[:, t] = x[:, t + k] along frames, zero (False) where t + k falls outside the batch."""
    n = x.shape[1]
    kept = max(n - abs(k), 0)
    out = torch.zeros_like(x)
    if k >= 0:
        out[:, :kept] = x[:, k : k + kept]
    else:
        out[:, n - kept :] = x[:, :kept]
    return out


def _delta(x: torch.Tensor, valid: torch.Tensor, reach: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """HTK regression deltas of x [B, F, C] along frames, and where all 2 * reach + 1 frames are valid."""
    delta = torch.zeros_like(x)
    complete = valid
    for k in range(1, reach + 1):
        delta = delta + k * (_shift_frames(x, k) - _shift_frames(x, -k))
        complete = complete & _shift_frames(valid, k) & _shift_frames(valid, -k)
    return delta / (2 * sum(k * k for k in range(1, reach + 1))), complete


def _pool(desc: dict[str, torch.Tensor]) -> torch.Tensor:
    """Frame descriptors -> one vector per clip, in FEATURE_NAMES order."""
    valid, nonsilent, voiced = desc["valid"], desc["nonsilent"], desc["voiced"]
    mfcc_mean, mfcc_std = _masked_mean_std(desc["mfcc"], nonsilent)
    delta, delta_ok = _delta(desc["mfcc"], valid)
    _, delta_std = _masked_mean_std(delta, delta_ok & nonsilent)
    voiced_fraction = voiced.sum(dim=-1) / valid.sum(dim=-1).clamp_min(1)
    has_previous = _shift_frames(valid, -1)
    spectral = []
    for prefix, unit in _SPECTRAL:
        mask = nonsilent & has_previous if prefix == "spectral_flux" else nonsilent
        spectral.extend(_masked_mean_std(desc[prefix + unit], mask))
    columns = [
        mfcc_mean,
        mfcc_std,
        delta_std,
        _distribution(desc["log_energy_db"], valid),
        _distribution(desc["f0_hz"], voiced),
        voiced_fraction[:, None],
        torch.stack(spectral, dim=-1),
    ]
    return torch.cat(columns, dim=-1)


def acoustic_features(
    waveforms: torch.Tensor | Sequence[torch.Tensor], lengths: torch.Tensor | None = None, *, check: bool = True
) -> torch.Tensor:
    """Utterance vectors [B, FEATURE_DIM] float32 on the input's device.

    Accepts a list of 1-D 16 kHz tensors of different lengths (padded internally) or a padded [B, T]
    tensor with lengths [B] (None = every clip fills T).
    """
    return acoustic_features_and_speech(waveforms, lengths, check=check)[0]


def acoustic_features_and_speech(
    waveforms: torch.Tensor | Sequence[torch.Tensor], lengths: torch.Tensor | None = None, *, check: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """acoustic_features, plus each clip's speech frames and voiced frames [B] (int64) from the same pitch
    track: `speech_reason` of the two says what `no_speech_reason` says of the clip, without tracking its pitch
    again (the built-in acoustic encoder judges speech this way)."""
    batch, lengths = pad_batch(waveforms, lengths, check)
    if batch.shape[0] == 0:
        none = torch.zeros(0, dtype=torch.long, device=batch.device)
        return torch.zeros(0, FEATURE_DIM, device=batch.device), none, none
    desc = _descriptors(batch, lengths, sample_rate=SAMPLE_RATE)
    # only reachable when squaring samples overflows float32 (|x| > 1e19): keep the promise of finite output
    features = torch.nan_to_num(_pool(desc), nan=0.0, posinf=0.0, neginf=0.0)
    speech, voiced = speech_frames(desc["pitch_dip"], desc["pitch_window_db"])
    return features, speech.sum(dim=-1), voiced.sum(dim=-1)
