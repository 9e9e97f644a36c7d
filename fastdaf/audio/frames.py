"""The analysis grid every audio measure of fastdaf shares: padded batches, 10 ms frames, levels.

Frames
    25 ms Hann windows (400 samples) every 10 ms (160 samples), centred on sample ``i * hop`` with zero
    padding, so a clip of ``L`` samples has ``L // hop + 1`` frames. A 512-point FFT gives the spectrum.
    Samples past a clip's length are zeroed and frames past it are masked out of every statistic, so a clip
    gives the same vector alone or inside a padded batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError

SAMPLE_RATE: int = 16000
WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.010
SILENCE_DB_BELOW_PEAK = 40.0
SILENCE_FLOOR_DB = -80.0
POWER_FLOOR = 1e-10  # -100 dB: log of an all-zero frame stays finite


def pad_batch(
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


def frame_count(n_samples: int, hop: int) -> int:
    return n_samples // hop + 1


def pad_for_frames(waveforms: torch.Tensor, size: int, hop: int, left: int) -> torch.Tensor:
    """Zeros on both sides so that every frame i, starting at sample i * hop - left, fits."""
    return F.pad(waveforms, (left, size + hop))


def frame_view(padded: torch.Tensor, size: int, hop: int, n_frames: int) -> torch.Tensor:
    """[B, F, size] views of a signal padded by pad_for_frames (no copy)."""
    return padded.unfold(-1, size, hop)[:, :n_frames]


def valid_frames(lengths: torch.Tensor, n_frames: int, hop: int) -> torch.Tensor:
    """The L // hop + 1 frames a clip of L samples would have alone, whatever the batch's padding."""
    return torch.arange(n_frames, device=lengths.device) < (lengths[:, None] // hop + 1)


def loud_frames(energy_db: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Valid frames within SILENCE_DB_BELOW_PEAK of the clip's loudest valid frame and above the floor."""
    peak = energy_db.masked_fill(~valid, -math.inf).amax(dim=-1, keepdim=True)
    return valid & (energy_db > peak - SILENCE_DB_BELOW_PEAK) & (energy_db > SILENCE_FLOOR_DB)


def power_db(power: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(power + POWER_FLOOR)
