"""Pitch (YIN) on padded batches, and whether a clip holds speech, judged from the same track.

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

Speech presence (`no_speech_reason`)
    Whether a clip holds speech at all, by the same YIN track plus an energy floor, frame by frame:
    fastdaf.extractor treats audio without speech as absent, whatever the audio encoder, rather than score
    silence or noise. The built-in features count the same frames from their own track
    (`fastdaf.audio.acoustic.acoustic_features_and_speech`), so each clip's pitch is tracked once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InputError
from .dsp import resample
from .frames import (
    HOP_SECONDS,
    SAMPLE_RATE,
    SILENCE_FLOOR_DB,
    frame_count,
    frame_view,
    loud_frames,
    pad_batch,
    pad_for_frames,
    power_db,
    valid_frames,
)

YIN_THRESHOLD = 0.25


def _yin_difference(
    padded: torch.Tensor, window: int, n_lags: int, hop: int, n_frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """YIN difference d(tau), tau < n_lags, of every frame [B, F, n_lags], and each frame's window energy [B, F].

    The cross term comes from one FFT correlation per frame; the window energies from a float64 cumulative
    sum over the whole signal, which keeps quiet frames of a loud clip exact and costs one pass.
    """
    size = window + n_lags - 1
    segments = frame_view(padded, size, hop, n_frames)
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
    cum_frames = frame_view(cum, window + n_lags, hop, n_frames)
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
    padded, lengths = pad_batch(waveforms, lengths)
    track = yin_track(padded, sample_rate=sample_rate, fmin=fmin, fmax=fmax, hop=hop)
    return pitch_from_track(*track, lengths, sample_rate=sample_rate, hop=hop)


def _pitch_lags(sample_rate: int, fmin: float, fmax: float) -> tuple[int, int, int]:
    """(min_lag, max_lag, window): YIN's lag range for fmin..fmax and its window, two periods of fmin."""
    max_lag = math.ceil(sample_rate / fmin)
    return max(2, math.floor(sample_rate / fmax)), max_lag, 2 * max_lag


def yin_track(
    waveforms: torch.Tensor, *, sample_rate: int, fmin: float = 50.0, fmax: float = 500.0, hop: int = 160
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """YIN on every frame, before any loudness rule: (period in samples, whether a dip was found, the frame's
    energy in dBFS over the YIN window), each [B, F]. The one pitch track: the features and the speech check
    both read it."""
    min_lag, max_lag, window = _pitch_lags(sample_rate, fmin, fmax)
    n_frames = frame_count(waveforms.shape[-1], hop)
    # lags 0..max_lag + 1: the parabola around max_lag needs its right neighbour
    padded = pad_for_frames(waveforms, window + max_lag + 1, hop, left=window // 2)
    diff, head_energy = _yin_difference(padded, window, max_lag + 2, hop, n_frames)
    norm = _cumulative_mean_normalise(diff)
    lag, found = _first_dip_minimum(norm, min_lag, max_lag, YIN_THRESHOLD)
    period = lag.to(diff.dtype) + _parabolic_offset(diff, lag)
    return period, found, power_db(head_energy / window)


def pitch_from_track(
    period: torch.Tensor,
    dip: torch.Tensor,
    energy_db: torch.Tensor,
    lengths: torch.Tensor,
    *,
    sample_rate: int,
    hop: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """F0 [B, F] (0 where unvoiced) and voiced [B, F]: the frames of a yin_track with a dip, loud within their clip."""
    voiced = dip & loud_frames(energy_db, valid_frames(lengths, period.shape[-1], hop))
    return torch.where(voiced, sample_rate / period.clamp_min(1.0), 0.0), voiced


# ---------------------------------------------------------------------------------------- speech presence
SPEECH_FLOOR_DB = -55.0
MIN_SPEECH_FRAMES = 5
_SPEECH_CHUNK_SECONDS = 1.0  # measured: a 3 s speech clip costs 3 ms with 1 s chunks, 11 ms with 4 s


def speech_frames(dip: torch.Tensor, pitch_window_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
        _, dip, energy_db = yin_track(piece[None], sample_rate=SAMPLE_RATE, hop=hop)
        dip &= valid_frames(torch.tensor([piece.numel()], device=piece.device), dip.shape[-1], hop)
        mine = slice(left // hop, (left + chunk) // hop)  # the frames centred in this chunk
        speech, voiced = speech_frames(dip[0, mine], energy_db[0, mine])
        voiced_at_all += int(voiced.sum())
        found += int(speech.sum())
        if found >= MIN_SPEECH_FRAMES:
            return None
    return speech_reason(found, voiced_at_all)
