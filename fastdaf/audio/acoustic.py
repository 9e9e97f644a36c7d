"""Built-in acoustic utterance features: the role COVAREP plays in multimodal sentiment work, with no weights.

Everything is written in torch (the mel filterbank, DCT matrix and resampler in `fastdaf.audio.dsp`) and runs on
whole padded batches at once, so a GPU batch costs a handful of kernels; CPU works too. Input is mono float32 audio at
16 kHz (loading and resampling live in `fastdaf.audio`).

Frames
    25 ms Hann windows (400 samples) every 10 ms (160 samples), centred on sample ``i * hop`` with zero
    padding, so a clip of ``L`` samples has ``L // hop + 1`` frames. A 512-point FFT gives the spectrum.
    Samples past a clip's length are zeroed and frames past it are masked out of every statistic, so a clip
    gives the same vector alone or inside a padded batch.

Pitch (`estimate_pitch`)
    Batched YIN (de Cheveigne & Kawahara, 2002). Per frame, the difference function
    ``d(tau) = E_head + E_shift(tau) - 2 r(tau)`` is computed for every lag at once: ``r`` by FFT
    cross-correlation of a 2 * (sample_rate / fmin) sample window (640 samples, two periods of 50 Hz) with
    that window plus the largest lag, the energies by cumulative sums. It is normalised by its cumulative mean;
    the first lag between ``sample_rate / fmax`` and ``sample_rate / fmin`` whose normalised value dips under
    YIN_THRESHOLD starts a dip whose minimum is taken, and parabolic interpolation of ``d`` around it gives a
    sub-sample period. Frames without such a dip, or more than SILENCE_DB_BELOW_PEAK below the clip's loudest
    frame (or under SILENCE_FLOOR_DB), are unvoiced and get F0 = 0. (torchaudio's detect_pitch_frequency is
    not used: it halves the frequency of a plain sine.)

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

Speech presence (`no_speech_reason`)
    Whether a clip holds speech at all, by the same YIN voicing plus an energy floor: fastdaf.extractor
    treats audio without speech as absent, whatever the audio encoder, rather than score silence or noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from .dsp import dct_matrix, mel_filterbank, resample

SAMPLE_RATE: int = 16000
WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.010
N_MELS = 40
N_MFCC = 13
ROLLOFF_FRACTION = 0.85
YIN_THRESHOLD = 0.25
SILENCE_DB_BELOW_PEAK = 40.0
SILENCE_FLOOR_DB = -80.0
MEL_FMIN = 20.0
MEL_FMAX = 7600.0  # below the 8 kHz Nyquist of 16 kHz audio, where resamplers roll off
MEL_DYNAMIC_RANGE_DB = 40.0  # measured: 60 dB let resampling noise in quiet bands move MFCC means by 26%, 40 dB by 6%
_POWER_FLOOR = 1e-10  # -100 dB: log of an all-zero frame stays finite
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


# ------------------------------------------------------------------------------------------ input handling
def _pad_batch(
    waveforms: torch.Tensor | Sequence[torch.Tensor], lengths: torch.Tensor | None, check: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """One float32 [B, T] batch plus lengths; samples past a length are zeroed so padding is inert."""
    if isinstance(waveforms, torch.Tensor):
        batch = waveforms.unsqueeze(0) if waveforms.dim() == 1 else waveforms
        if batch.dim() != 2:
            raise InputError(f"waveforms must be [T] or [B, T], got shape {list(waveforms.shape)}")
        batch = batch.float()
    else:
        clips = [torch.as_tensor(w).float() for w in waveforms]
        if any(c.dim() != 1 for c in clips):
            raise InputError("a list of waveforms must hold 1-D tensors")
        if lengths is None:
            lengths = torch.tensor([c.shape[0] for c in clips], device=clips[0].device if clips else None)
        batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True) if clips else torch.zeros(0, 0)
    n, t = batch.shape
    if lengths is None:
        lengths = torch.full((n,), t, dtype=torch.long, device=batch.device)
    lengths = torch.as_tensor(lengths, device=batch.device).long()
    # check=False skips this host sync, so the computation can be captured in a CUDA graph
    if lengths.shape != (n,) or check and bool(((lengths < 0) | (lengths > t)).any()):
        raise InputError(f"lengths must be [B] = [{n}] values in [0, {t}], got {lengths.tolist()}")
    inside = torch.arange(t, device=batch.device) < lengths[:, None]
    return batch * inside, lengths


def _frame_count(n_samples: int, hop: int) -> int:
    return n_samples // hop + 1


def _pad_for_frames(waveforms: torch.Tensor, size: int, hop: int, left: int) -> torch.Tensor:
    """Zeros on both sides so that every frame i, starting at sample i * hop - left, fits."""
    return F.pad(waveforms, (left, size + hop))


def _frames(padded: torch.Tensor, size: int, hop: int, n_frames: int) -> torch.Tensor:
    """[B, F, size] views of a signal padded by _pad_for_frames (no copy)."""
    return padded.unfold(-1, size, hop)[:, :n_frames]


def _valid_frames(lengths: torch.Tensor, n_frames: int, hop: int) -> torch.Tensor:
    """The L // hop + 1 frames a clip of L samples would have alone, whatever the batch's padding."""
    return torch.arange(n_frames, device=lengths.device) < (lengths[:, None] // hop + 1)


def _loud_frames(energy_db: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Valid frames within SILENCE_DB_BELOW_PEAK of the clip's loudest valid frame and above the floor."""
    peak = energy_db.masked_fill(~valid, -math.inf).amax(dim=-1, keepdim=True)
    return valid & (energy_db > peak - SILENCE_DB_BELOW_PEAK) & (energy_db > SILENCE_FLOOR_DB)


def _power_db(power: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(power + _POWER_FLOOR)


# -------------------------------------------------------------------------------------------------- pitch
def _yin_difference(
    padded: torch.Tensor, window: int, n_lags: int, hop: int, n_frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """YIN difference d(tau), tau < n_lags, of every frame [B, F, n_lags], and each frame's window energy [B, F].

    The cross term comes from one FFT correlation per frame; the window energies from a float64 cumulative
    sum over the whole signal, which keeps quiet frames of a loud clip exact and costs one pass.
    """
    size = window + n_lags - 1
    segments = _frames(padded, size, hop, n_frames)
    n_fft = 1 << (size - 1).bit_length()  # >= size: the circular correlation never wraps for tau < n_lags
    head_spec = torch.fft.rfft(segments[..., :window], n=n_fft)
    full_spec = torch.fft.rfft(segments, n=n_fft)
    corr = torch.fft.irfft(head_spec.conj() * full_spec, n=n_fft)[..., :n_lags]
    window_energy = _window_energies(padded, window, n_lags, hop, n_frames)  # E(tau..tau+window-1)
    head_energy = window_energy[..., :1]
    return (head_energy + window_energy - 2.0 * corr).clamp_min(0.0), head_energy.squeeze(-1)


def _window_energies(padded: torch.Tensor, window: int, n_lags: int, hop: int, n_frames: int) -> torch.Tensor:
    """Energy of the window-long stretch starting at each lag < n_lags of every frame [B, F, n_lags]."""
    cum = F.pad(torch.cumsum(padded.double().square(), dim=-1), (1, 0))
    cum_frames = _frames(cum, window + n_lags, hop, n_frames)
    return (cum_frames[..., window:] - cum_frames[..., :n_lags]).float()


def _cumulative_mean_normalise(diff: torch.Tensor) -> torch.Tensor:
    """d'(tau) = d(tau) / mean(d(1..tau)), d'(0) = 1; 1 where the frame is all zeros."""
    lags = torch.arange(diff.shape[-1], device=diff.device, dtype=diff.dtype)
    cum = torch.cumsum(diff, dim=-1)
    norm = diff * lags / torch.where(cum > 0, cum, 1.0)
    norm = torch.where(cum > 0, norm, 1.0)
    norm[..., 0].fill_(1.0)  # fill_, not `= 1.0`: assigning a Python number makes a host tensor to copy in
    return norm


def _first_dip_minimum(
    norm: torch.Tensor, min_lag: int, max_lag: int, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lag of the minimum of the first run of lags under the threshold, and whether such a run exists.

    The first dip, not the global minimum: multiples of the period dip as deep, and picking them halves F0.
    """
    lags = torch.arange(norm.shape[-1], device=norm.device)
    in_range = (lags >= min_lag) & (lags <= max_lag)
    below = (norm < threshold) & in_range
    found = below.any(dim=-1)
    start = below.int().argmax(dim=-1, keepdim=True)  # first True
    after_start = lags >= start
    ended = after_start & ~below
    end = torch.where(ended.any(dim=-1, keepdim=True), ended.int().argmax(dim=-1, keepdim=True), norm.shape[-1])
    in_dip = after_start & (lags < end)
    best = norm.masked_fill(~in_dip, math.inf).argmin(dim=-1)
    return best.clamp(min_lag, max_lag), found  # clamped: frames without a dip still need valid neighbours


def _parabolic_offset(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Sub-sample offset of the vertex of the parabola through values[index-1 .. index+1], in [-1, 1]."""
    idx = index.unsqueeze(-1) + torch.arange(-1, 2, device=index.device)  # made on the device: capture-safe
    left, centre, right = values.gather(-1, idx).unbind(-1)
    curvature = left - 2.0 * centre + right
    offset = 0.5 * (left - right) / torch.where(curvature > 0, curvature, 1.0)
    return torch.where(curvature > 0, offset, 0.0).clamp(-1.0, 1.0)


def estimate_pitch(
    waveforms: torch.Tensor,
    lengths: torch.Tensor | None = None,
    *,
    sample_rate: int = SAMPLE_RATE,
    fmin: float = 50.0,
    fmax: float = 500.0,
    hop: int = 160,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched F0 per frame. waveforms [B, T] (zero-padded), lengths [B] valid samples (None = all).

    Returns (f0_hz [B, F], voiced bool [B, F]) with F = T // hop + 1 frames centred on ``i * hop``;
    f0 is 0 where unvoiced; frames past a clip's length are unvoiced.
    """
    if not 0 < fmin < fmax <= sample_rate / 2:
        raise InputError(f"need 0 < fmin < fmax <= sample_rate / 2, got fmin={fmin}, fmax={fmax}")
    padded, lengths = _pad_batch(waveforms, lengths)
    track = _yin(padded, sample_rate=sample_rate, fmin=fmin, fmax=fmax, hop=hop)
    return _pitch(*track, lengths, sample_rate=sample_rate, hop=hop)


def _pitch_lags(sample_rate: int, fmin: float, fmax: float) -> tuple[int, int, int]:
    """(min_lag, max_lag, window): YIN's lag range for fmin..fmax and its window, two periods of fmin."""
    max_lag = math.ceil(sample_rate / fmin)
    return max(2, math.floor(sample_rate / fmax)), max_lag, 2 * max_lag


def _yin(
    waveforms: torch.Tensor, *, sample_rate: int, fmin: float = 50.0, fmax: float = 500.0, hop: int = 160
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """YIN on every frame, before any loudness rule: (period in samples, whether a dip was found, the frame's
    energy in dBFS over the YIN window), each [B, F]. The one pitch track: the features and the speech check
    both read it."""
    min_lag, max_lag, window = _pitch_lags(sample_rate, fmin, fmax)
    n_frames = _frame_count(waveforms.shape[-1], hop)
    # lags 0..max_lag + 1: the parabola around max_lag needs its right neighbour
    padded = _pad_for_frames(waveforms, window + max_lag + 1, hop, left=window // 2)
    diff, head_energy = _yin_difference(padded, window, max_lag + 2, hop, n_frames)
    norm = _cumulative_mean_normalise(diff)
    lag, found = _first_dip_minimum(norm, min_lag, max_lag, YIN_THRESHOLD)
    period = lag.to(diff.dtype) + _parabolic_offset(diff, lag)
    return period, found, _power_db(head_energy / window)


def _pitch(
    period: torch.Tensor,
    dip: torch.Tensor,
    energy_db: torch.Tensor,
    lengths: torch.Tensor,
    *,
    sample_rate: int,
    hop: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """F0 [B, F] (0 where unvoiced) and voiced [B, F]: frames of a _yin track with a dip, loud within their clip."""
    voiced = dip & _loud_frames(energy_db, _valid_frames(lengths, period.shape[-1], hop))
    return torch.where(voiced, sample_rate / period.clamp_min(1.0), 0.0), voiced


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
    floor = peak * 10.0 ** (-MEL_DYNAMIC_RANGE_DB / 10.0) + _POWER_FLOOR
    return (10.0 * torch.log10(torch.maximum(bands, floor))) @ dct


def _centroid_and_bandwidth(magnitude: torch.Tensor, freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    weights = magnitude / magnitude.sum(dim=-1, keepdim=True).clamp_min(_POWER_FLOOR)
    centroid = weights @ freqs
    spread = (weights * (freqs - centroid.unsqueeze(-1)).square()).sum(dim=-1)
    return centroid, spread.clamp_min(0.0).sqrt()


def _rolloff(magnitude: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Lowest bin frequency under which ROLLOFF_FRACTION of the magnitude lies (0 for a silent frame)."""
    cum = torch.cumsum(magnitude, dim=-1)
    reached = cum >= ROLLOFF_FRACTION * cum[..., -1:]
    return freqs[reached.int().argmax(dim=-1)]


def _flatness(power: torch.Tensor) -> torch.Tensor:
    log_power = torch.log(power + _POWER_FLOOR)
    return torch.exp(log_power.mean(dim=-1)) / (power.mean(dim=-1) + _POWER_FLOOR)


def _flux(magnitude: torch.Tensor) -> torch.Tensor:
    """Change of the unit-norm spectrum from the previous frame (0 for the first frame)."""
    unit = F.normalize(magnitude, dim=-1, eps=_POWER_FLOOR)
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
    return _descriptors(*_pad_batch(waveforms, lengths), sample_rate=sample_rate)


def _descriptors(waveforms: torch.Tensor, lengths: torch.Tensor, *, sample_rate: int) -> dict[str, torch.Tensor]:
    """frame_descriptors on a batch _pad_batch already padded and masked (padding done once per call)."""
    win = round(WINDOW_SECONDS * sample_rate)
    hop = round(HOP_SECONDS * sample_rate)
    n_fft = 1 << (win - 1).bit_length()
    window, mel, dct, freqs = _spectral_constants(sample_rate, n_fft, win, waveforms.device)

    n_frames = _frame_count(waveforms.shape[-1], hop)
    frames = _frames(_pad_for_frames(waveforms, win, hop, left=win // 2), win, hop, n_frames)
    spectrum = torch.fft.rfft(frames * window, n=n_fft)
    power = spectrum.real.square() + spectrum.imag.square()
    magnitude = power.sqrt()
    log_energy = _power_db(frames.square().mean(dim=-1))
    valid = _valid_frames(lengths, n_frames, hop)
    centroid, bandwidth = _centroid_and_bandwidth(magnitude, freqs)
    period, dip, pitch_window_db = _yin(waveforms, sample_rate=sample_rate, hop=hop)
    f0, voiced = _pitch(period, dip, pitch_window_db, lengths, sample_rate=sample_rate, hop=hop)
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
        "nonsilent": _loud_frames(log_energy, valid),
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
    batch, lengths = _pad_batch(waveforms, lengths, check)
    if batch.shape[0] == 0:
        none = torch.zeros(0, dtype=torch.long, device=batch.device)
        return torch.zeros(0, FEATURE_DIM, device=batch.device), none, none
    desc = _descriptors(batch, lengths, sample_rate=SAMPLE_RATE)
    # only reachable when squaring samples overflows float32 (|x| > 1e19): keep the promise of finite output
    features = torch.nan_to_num(_pool(desc), nan=0.0, posinf=0.0, neginf=0.0)
    speech, voiced = _speech_frames(desc["pitch_dip"], desc["pitch_window_db"])
    return features, speech.sum(dim=-1), voiced.sum(dim=-1)


# ---------------------------------------------------------------------------------------- speech presence
SPEECH_FLOOR_DB = -55.0
MIN_SPEECH_FRAMES = 5
_SPEECH_CHUNK_SECONDS = 1.0  # measured: a 3 s speech clip costs 3 ms with 1 s chunks, 11 ms with 4 s


def _speech_frames(dip: torch.Tensor, pitch_window_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames that count as speech, and frames voiced at all (a dip above the silence floor); judged frame by
    frame, never against the clip's loudest frame, so a chunk of a clip gives what the whole clip gives."""
    voiced = dip & (pitch_window_db > SILENCE_FLOOR_DB)
    return voiced & (pitch_window_db >= SPEECH_FLOOR_DB), voiced


def speech_reason(speech_frames: int, voiced_frames: int) -> str | None:
    """Why a clip with these counts (see no_speech_reason) holds no speech, or None when it holds some."""
    if speech_frames >= MIN_SPEECH_FRAMES:
        return None
    if not voiced_frames:
        return "no voiced frames"
    return f"only {speech_frames} voiced frame(s) at {SPEECH_FLOOR_DB:g} dBFS or louder, {MIN_SPEECH_FRAMES} needed"


def no_speech_reason(samples: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> str | None:
    """Why a mono clip holds no speech, or None when it holds some: decides whether audio counts as present.

    Speech: at least MIN_SPEECH_FRAMES 10 ms frames in which this module's YIN finds a period, at
    SPEECH_FLOOR_DB dBFS or louder (energy over the YIN window); each frame is judged on its own, not against
    the clip's loudest frame, so a loud bang does not hide quiet speech. Measured: the six CMU ARCTIC clips
    have 102..240 such frames and their voiced frames sit at -17..-22 dBFS (median), 33 dB above the floor;
    aew_a0002 still has 25 with white noise added at 5 dB SNR (4 at 0 dB), and 40 with its level lowered by
    35 dB (5 at 40 dB). Silence, DC, white and brown noise have no voiced frame at all; a 50/60 Hz hum of
    amplitude 0.001 (-63 dBFS) is voiced throughout but under the floor. Not told apart: periodic sounds
    above the floor (a loud hum or tone; noise low-passed at ~100 Hz or narrower than an octave below ~350 Hz,
    of which YIN calls 0.4..40 % of frames voiced). The pitch is tracked in chunks of _SPEECH_CHUNK_SECONDS
    until enough frames are found, so speech costs about one chunk of pitch tracking at any length.
    `acoustic_features_and_speech` counts the same frames from the features' own track: with the built-in
    audio encoder each clip's pitch is tracked once.
    """
    samples = samples.reshape(-1).float()
    if sample_rate != SAMPLE_RATE:
        samples = resample(samples, sample_rate, SAMPLE_RATE)
    hop = round(HOP_SECONDS * SAMPLE_RATE)
    chunk, context = round(_SPEECH_CHUNK_SECONDS / HOP_SECONDS) * hop, 8 * hop  # context: more than YIN reaches
    found = voiced_at_all = 0
    for start in range(0, samples.numel(), chunk):
        left = min(start, context)
        piece = samples[start - left : start + chunk + context]
        _, dip, energy_db = _yin(piece[None], sample_rate=SAMPLE_RATE, hop=hop)
        dip &= _valid_frames(torch.tensor([piece.numel()], device=piece.device), dip.shape[-1], hop)
        mine = slice(left // hop, (left + chunk) // hop)  # the frames centred in this chunk
        speech, voiced = _speech_frames(dip[0, mine], energy_db[0, mine])
        voiced_at_all += int(voiced.sum())
        found += int(speech.sum())
        if found >= MIN_SPEECH_FRAMES:
            return None
    return speech_reason(found, voiced_at_all)
