"""The three signal-processing pieces fastdaf once took from torchaudio: resampling, the mel filterbank, the DCT.

Written here so that the core install needs no compiled audio library (torchaudio's ties every install to one
torch release) and so that resampling costs the same at any pair of rates. Each matches torchaudio's definition
(`torchaudio.functional.resample` with its defaults, `melscale_fbanks` with the HTK or Slaney scale and norm,
`create_dct(..., norm="ortho")`); tests/audio/test_dsp.py checks them against torchaudio where it imports.

Resampling (`resample`)
    Band-limited interpolation with a Hann-windowed sinc, as torchaudio's default: cut-off at
    ROLLOFF x the lower Nyquist frequency, LOWPASS_WIDTH zero crossings on each side, zero padding past both
    ends, output length ceil(len * new / orig). torchaudio builds one kernel per output phase after dividing
    both rates by their gcd and convolves with all of them: rates with a small gcd (16,001 -> 16,000 Hz, or
    TESS's 24,414 Hz) then cost a kernel of (new / gcd) x (orig / gcd) taps (392 MB for 24,414 -> 16,000) and
    as many multiply-adds per sample. Here each output sample reads only the ~2 x LOWPASS_WIDTH x max(1,
    orig / new) input samples its window covers: time and memory grow with the clip, not with the rates.
    Where the reduced rates are small (the polyphase kernel has at most KERNEL_LIMIT weights: 48 -> 16 kHz,
    44.1 -> 16 kHz) one strided convolution applies every phase, as torchaudio does; otherwise each output
    sample gathers its inputs, weighted from a table per phase (or computed, past KERNEL_LIMIT), in chunks of
    CHUNK_WEIGHTS weights. Either way the memory beyond the output and one zero-padded copy of the input stays
    under 64 MB whatever the clip and the rates (tests/audio/test_dsp.py measures it).
"""

from __future__ import annotations

import functools
import math

import torch

LOWPASS_WIDTH = 6  # zero crossings of the sinc on each side (torchaudio's lowpass_filter_width)
ROLLOFF = 0.99  # cut-off as a fraction of the lower Nyquist frequency (torchaudio's rolloff)
KERNEL_LIMIT = 1 << 20  # weights of a polyphase kernel or phase table (built in float64: 8 MB)
CHUNK_WEIGHTS = 1 << 20  # output samples x taps gathered at once (4-8 MB per buffer)


def _cutoff(orig: int, new: int) -> float:
    """The cut-off in units of the reduced rates: ROLLOFF x the lower Nyquist frequency."""
    return min(orig, new) * ROLLOFF


def _sinc_weights(offsets: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """Windowed-sinc weight of an input sample `offsets` input samples away from the output instant (float64)."""
    base = _cutoff(orig, new)
    t = (offsets * (base / orig)).clamp(-LOWPASS_WIDTH, LOWPASS_WIDTH)  # in cycles of the cut-off frequency
    window = torch.cos(t * (math.pi / LOWPASS_WIDTH / 2)) ** 2
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / (math.pi * t))
    return sinc * window * (base / orig)


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """waveform [..., T] sampled at orig_freq -> [..., ceil(T * new_freq / orig_freq)] at new_freq (float)."""
    if orig_freq <= 0 or new_freq <= 0 or int(orig_freq) != orig_freq or int(new_freq) != new_freq:
        raise ValueError(f"sampling rates must be positive integers, got {orig_freq} and {new_freq}")
    if orig_freq == new_freq:
        return waveform
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd  # output n sits at input position n * orig / new
    reach = math.ceil(LOWPASS_WIDTH * orig / _cutoff(orig, new))  # input samples on each side within the window
    shape, length = waveform.shape[:-1], waveform.shape[-1]
    flat = waveform.reshape(-1, length)
    flat = flat if flat.is_floating_point() else flat.float()
    n_out = -(-new * length // orig)
    if new * (2 * reach + orig) <= KERNEL_LIMIT:
        out = _polyphase(flat, orig, new, reach)[:, :n_out]
    else:
        out = _gathered(flat, orig, new, reach, n_out)
    return out.reshape(*shape, n_out)


def _polyphase(flat: torch.Tensor, orig: int, new: int, reach: int) -> torch.Tensor:
    """Small reduced rates (48 -> 16 kHz is 3 -> 1): one kernel per output phase, all applied by one strided
    convolution; output frame q, phase i is output sample q * new + i."""
    kernels = _polyphase_kernels(orig, new, reach, flat.dtype, flat.device)
    padded = torch.nn.functional.pad(flat, (reach, reach + orig))
    frames = torch.nn.functional.conv1d(padded[:, None], kernels[:, None], stride=orig)  # [B, new, Q]
    return frames.transpose(1, 2).reshape(flat.shape[0], -1)


# Weights depend only on the reduced rates: a clip set recorded at one rate builds them once. At most KERNEL_LIMIT
# weights each (4-8 MB), a few pairs kept.
@functools.lru_cache(maxsize=8)
def _polyphase_kernels(orig: int, new: int, reach: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[new, 2 reach + orig]: row i weights the inputs of output phase i, from reach samples before its frame."""
    taps = torch.arange(2 * reach + orig, dtype=torch.float64, device=device) - reach
    phases = torch.arange(new, dtype=torch.float64, device=device)
    return _sinc_weights(taps[None, :] - phases[:, None] * orig / new, orig, new).to(dtype)


@functools.lru_cache(maxsize=8)
def _phase_table(orig: int, new: int, reach: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[new, 2 reach + 1]: row p weights the inputs around an output whose position is first + p / new."""
    taps = torch.arange(-reach, reach + 1, dtype=torch.float64, device=device)
    phases = torch.arange(new, dtype=torch.float64, device=device)
    return _sinc_weights(taps[None, :] - phases[:, None] / new, orig, new).to(dtype)


def _gathered(flat: torch.Tensor, orig: int, new: int, reach: int, n_out: int) -> torch.Tensor:
    """Any rates (16,001 -> 16,000 Hz): output n reads the 2 reach + 1 inputs around first = floor(n orig / new),
    weighted by its phase (n orig mod new) / new: from a table per phase when it is small, else computed."""
    device, dtype = flat.device, flat.dtype
    taps = torch.arange(-reach, reach + 1, device=device)
    table = _phase_table(orig, new, reach, dtype, device) if new * taps.numel() <= KERNEL_LIMIT else None
    padded = torch.nn.functional.pad(flat, (reach, reach))
    out = torch.empty(flat.shape[0], n_out, dtype=dtype, device=device)
    step = max(1, CHUNK_WEIGHTS // taps.numel())
    for start in range(0, n_out, step):
        n = torch.arange(start, min(start + step, n_out), device=device)
        first, phase = torch.div(n * orig, new, rounding_mode="floor"), n * orig % new
        if table is not None:
            weights = table[phase]
        else:
            weights = _sinc_weights(taps[None, :].double() - (phase.double() / new)[:, None], orig, new).to(dtype)
        index = (first + reach)[:, None] + taps[None, :]
        out[:, start : start + n.numel()] = (padded[:, index] * weights).sum(dim=-1)
    return out


MEL_SCALES = ("htk", "slaney")


def mel_filterbank(
    n_freqs: int,
    f_min: float,
    f_max: float,
    n_mels: int,
    sample_rate: int,
    *,
    mel_scale: str = "htk",
    norm: str | None = None,
) -> torch.Tensor:
    """Triangular mel filters [n_freqs, n_mels] over the bins of an rfft, as torchaudio's melscale_fbanks with the
    same mel_scale ("htk": the built-in features; "slaney": librosa's default, Whisper's) and norm (None, or
    "slaney": each filter divided by its width in Hz, so filters carry equal energy); built in float64, returned in
    float32."""
    if mel_scale not in MEL_SCALES or norm not in (None, "slaney"):
        raise ValueError(f"mel_scale must be one of {MEL_SCALES} and norm None or 'slaney', got {mel_scale}, {norm}")
    freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    to_mel, to_hz = (_hz_to_mel_htk, _mel_to_hz_htk) if mel_scale == "htk" else (_hz_to_mel_slaney, _mel_to_hz_slaney)
    mels = torch.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2, dtype=torch.float64)
    corners = to_hz(mels)
    widths = corners[1:] - corners[:-1]
    slopes = corners[None, :] - freqs[:, None]  # [n_freqs, n_mels + 2]
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    filters = torch.minimum(rising, falling).clamp_min(0.0)
    if norm == "slaney":
        filters = filters * (2.0 / (corners[2:] - corners[:-2]))[None, :]
    return filters.float()


def _hz_to_mel_htk(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _mel_to_hz_htk(mels: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


# Slaney's scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4)
_SLANEY_LOG_HZ, _SLANEY_LOG_MEL, _SLANEY_STEP = 1000.0, 15.0, math.log(6.4) / 27.0


def _hz_to_mel_slaney(hz: float) -> float:
    if hz < _SLANEY_LOG_HZ:
        return 3.0 * hz / 200.0
    return _SLANEY_LOG_MEL + math.log(hz / _SLANEY_LOG_HZ) / _SLANEY_STEP


def _mel_to_hz_slaney(mels: torch.Tensor) -> torch.Tensor:
    linear = 200.0 * mels / 3.0
    logarithmic = _SLANEY_LOG_HZ * torch.exp(_SLANEY_STEP * (mels - _SLANEY_LOG_MEL))
    return torch.where(mels >= _SLANEY_LOG_MEL, logarithmic, linear)


def dct_matrix(n_coefficients: int, n_inputs: int) -> torch.Tensor:
    """Orthonormal DCT-II as a [n_inputs, n_coefficients] matrix (x @ it), as torchaudio's create_dct(norm="ortho")."""
    n = torch.arange(n_inputs, dtype=torch.float64)
    k = torch.arange(n_coefficients, dtype=torch.float64)[:, None]
    dct = torch.cos(math.pi / n_inputs * (n + 0.5) * k) * math.sqrt(2.0 / n_inputs)
    dct[0] /= math.sqrt(2.0)
    return dct.t().float()
