"""The Whisper encoder in plain torch, fed each clip's own frames (its weights: fastdaf.encoders.whisper_weights).

Why a native encoder: transformers' WhisperEncoder takes exactly 30 s of log-mel (shorter input is refused), so a
3.75 s clip pays for 30 s (663 ms on 2 CPU cores against 79 ms for its real frames, at the same probe accuracy:
issue 22). Here the log-mel front-end, the two convolutions and the attention see only each clip's frames: in a
batch, frames past a clip's end are zeroed before each convolution (as its own zero padding would be) and masked
out of attention, so a clip gets the same vectors alone or inside a batch (tested).

Front-end (`log_mel`), as Whisper's: 25 ms Hann windows every 10 ms (n_fft 400, hop 160 at 16 kHz), power spectrum,
Slaney mel filters (80 or 128), log10 floored at 1e-10, floored again 8 (log10) under the clip's maximum, then
(x + 4) / 4. Whisper pads every clip with zeros to 30 s first; the clip is padded with zeros past its end here too,
so its frames equal the first len // 160 frames of Whisper's (tested against transformers' WhisperFeatureExtractor).

Model (`WhisperAudioEncoder`): conv1 (k 3) + GELU, conv2 (k 3, stride 2) + GELU, sinusoidal positions, pre-norm
transformer blocks (self-attention with no key bias, GELU MLP), a final layer norm. Layer k of `hidden states`
follows transformers' numbering: 0 is the input to the first block, k the output of block k, the last one after
the final layer norm. A saved encoder may hold only the blocks up to the layer it is used at.

Weights (`load_whisper`: a fastdaf folder, a CTranslate2 model or a transformers checkpoint) are read by
fastdaf.encoders.whisper_weights.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..audio.dsp import mel_filterbank
from ..choices import DEFAULT_ENCODER_BACKEND
from ..errors import EncoderError
from .base import Encoded, combine_windows, pick_device, pick_dtype
from .runners import Buckets, InputSpec, make_runner
from .whisper_weights import WhisperDims, load_whisper

SAMPLE_RATE = 16000
N_FFT, HOP = 400, 160
MAX_SECONDS = 30.0  # Whisper's positions cover 30 s (1,500 frames after the stride-2 convolution)
POOLINGS = ("mean", "mean+std")


# ------------------------------------------------------------------------------------------------ front-end
_MEL_FILTERS: dict[tuple, torch.Tensor] = {}


def log_mel(waves: Sequence[torch.Tensor], n_mels: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """16 kHz mono clips -> log-mel [B, n_mels, F] (zero past each clip's frames) and frame counts [B]."""
    key = (n_mels, str(device))
    if key not in _MEL_FILTERS:
        filters = mel_filterbank(
            N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE, mel_scale="slaney", norm="slaney"
        )
        _MEL_FILTERS[key] = filters.t().contiguous().to(device)
    filters, window = _MEL_FILTERS[key], torch.hann_window(N_FFT, device=device)
    mels = []
    for wave in waves:  # one at a time: reflection at a clip's start must not see another clip
        wave = wave.reshape(-1).float().to(device)
        frames = max(1, wave.numel() // HOP)
        padded = F.pad(wave, (0, N_FFT // 2))  # zeros past the end, as Whisper's 30 s padding puts there
        spectrum = torch.stft(padded, N_FFT, HOP, window=window, return_complex=True)[..., :frames]
        power = spectrum.real.square() + spectrum.imag.square()
        log = (filters @ power).clamp_min(1e-10).log10()
        log = torch.maximum(log, log.max() - 8.0)
        mels.append((log + 4.0) / 4.0)
    lengths = torch.tensor([m.shape[-1] for m in mels], device=device)
    batch = torch.zeros(len(mels), n_mels, int(lengths.max()), device=device)
    for i, m in enumerate(mels):
        batch[i, :, : m.shape[-1]] = m
    return batch, lengths


# -------------------------------------------------------------------------------------------------- model
class WhisperBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attn_norm = nn.LayerNorm(d_model)
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.mlp_norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d_model)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.attn_norm(x)
        q, k, v = (
            proj(h).view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)
            for proj in (self.query, self.key, self.value)
        )
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        x = x + self.out(attended.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_norm(x))))


class WhisperAudioEncoder(nn.Module):
    """Log-mel [B, n_mels, F] and frame counts -> hidden states [B, ceil(F / 2), d] at a layer, and the valid mask."""

    def __init__(self, dims: WhisperDims) -> None:
        super().__init__()
        self.dims = dims
        self.conv1 = nn.Conv1d(dims.n_mels, dims.d_model, 3, padding=1)
        self.conv2 = nn.Conv1d(dims.d_model, dims.d_model, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(dims.max_positions, dims.d_model))
        self.blocks = nn.ModuleList(
            WhisperBlock(dims.d_model, dims.n_heads, dims.ffn_dim) for _ in range(dims.n_layers)
        )
        self.final_norm = nn.LayerNorm(dims.d_model)

    def forward(self, mel: torch.Tensor, frames: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        states, keep = self.hidden_states(mel, frames, layer)
        return states[-1], keep

    def hidden_states(
        self, mel: torch.Tensor, frames: torch.Tensor, last: int | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Layers 0..last (default: every block held), in one pass, and the valid-frame mask."""
        last = len(self.blocks) if last is None else last
        inside = torch.arange(mel.shape[-1], device=mel.device)[None, :] < frames[:, None]
        x = F.gelu(self.conv1(mel * inside[:, None, :].to(mel.dtype)))
        x = F.gelu(self.conv2(x * inside[:, None, :].to(x.dtype)))  # zeros past the end, as conv2's own padding
        keep = torch.arange(x.shape[-1], device=x.device)[None, :] < (frames[:, None] + 1) // 2
        states = [x.transpose(1, 2) + self.positions[: x.shape[-1]].to(x.dtype)]
        for block in self.blocks[:last]:
            states.append(block(states[-1], keep))
        if last == self.dims.full_layers:
            states[-1] = self.final_norm(states[-1])
        return states, keep


# ---------------------------------------------------------------------------------------------- the encoder
class WhisperCore(nn.Module):
    """Log-mel + frame counts -> pooled vectors (mean, or mean and std, over each clip's real frames)."""

    def __init__(self, net: WhisperAudioEncoder, layer: int, pooling: str) -> None:
        super().__init__()
        self.net, self.layer, self.pooling = net, layer, pooling

    def forward(self, mel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """mel [B, F, n_mels] (frames on dim 1, which the bucketed runners pad), frames [B]."""
        hidden, keep = self.net(mel.transpose(1, 2), frames, self.layer)
        hidden, weight = hidden.float(), keep.float().unsqueeze(-1)
        count = weight.sum(dim=1).clamp_min(1.0)
        mean = (hidden * weight).sum(dim=1) / count
        if self.pooling == "mean":
            return mean
        var = ((hidden - mean[:, None, :]).square() * weight).sum(dim=1) / count
        return torch.cat([mean, var.sqrt()], dim=-1)


def whisper_buckets() -> Buckets:
    """Padded log-mel shapes a bucketed backend prepares: batch and frames (1-30 s)."""
    return Buckets(batch=(1, 2, 4, 8, 16), length=tuple(int(s * SAMPLE_RATE) // HOP for s in (1, 2, 4, 8, 16, 30)))


class WhisperEncoder:
    """Whisper's audio encoder as fastdaf's audio encoder: one vector per clip (see the module docstring).

    model: a fastdaf Whisper folder, a CTranslate2 model (a model.bin or its folder; "whisper-base" for the registry
    packages), or a transformers Whisper checkpoint (path or hub id). layer: 0..n (default: the last held).
    pooling: "mean" or "mean+std" over the clip's frames. Clips longer than window_seconds (at most 30) are encoded
    in consecutive windows whose frame means are combined weighted by frame count (never cut).
    """

    modality = "audio"
    takes_waveforms = True

    def __init__(
        self,
        model: str,
        *,
        layer: int | None = None,
        pooling: str = "mean",
        window_seconds: float = MAX_SECONDS,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 8,
        backend: str = DEFAULT_ENCODER_BACKEND,
    ) -> None:
        if pooling not in POOLINGS:
            raise EncoderError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        if not 0 < window_seconds <= MAX_SECONDS or batch_size < 1:
            raise EncoderError(f"window_seconds must be in (0, {MAX_SECONDS:g}] and batch_size >= 1")
        dims, state, self.source = load_whisper(model)
        layer = dims.n_layers if layer is None else layer
        if not 0 <= layer <= dims.n_layers:
            raise EncoderError(f"layer must be in 0..{dims.n_layers} for {model!r}, got {layer}")
        self.model_name, self.layer, self.pooling, self.window_seconds = str(model), layer, pooling, window_seconds
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        net = WhisperAudioEncoder(dims)
        missing, unexpected = net.load_state_dict(state, strict=False)
        needed = [k for k in missing if not k.startswith("blocks.") or int(k.split(".")[1]) < layer]
        if needed or unexpected:
            raise EncoderError(
                f"{model!r}: weights do not fit a Whisper encoder (missing {needed[:5]}, unexpected {unexpected[:5]})"
            )
        net.blocks = net.blocks[:layer]  # blocks past the layer used are never run
        self.net = net.to(self.device, self.dtype).eval().requires_grad_(False)
        self.n_mels, self.sampling_rate, self.batch_size = dims.n_mels, SAMPLE_RATE, batch_size
        self.dim = dims.d_model * (2 if pooling == "mean+std" else 1)
        self.core = WhisperCore(self.net, layer, pooling)
        specs = {"mel": InputSpec(pad=0.0), "frames": InputSpec(has_length=False, length_pad="size")}
        example = {
            "mel": torch.zeros(1, 100, self.n_mels, device=self.device, dtype=self.dtype),
            "frames": torch.tensor([100], device=self.device),
        }
        self.backend = backend
        self.runner = make_runner(
            self.core,
            backend,
            self.device,
            specs=specs,
            example=example,
            output_names=("vectors",),
            buckets=whisper_buckets(),
            dtype=self.dtype,
        )

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "whisper",
            "model": self.model_name,
            "layer": self.layer,
            "pooling": self.pooling,
            "window_seconds": self.window_seconds,
        }

    def _windows(self, waves: Sequence[torch.Tensor]) -> Iterator[tuple[int, torch.Tensor]]:
        size = int(self.window_seconds * SAMPLE_RATE)
        for i, wave in enumerate(waves):
            wave = torch.as_tensor(wave).reshape(-1).float()
            for start in range(0, max(1, wave.numel()), size):
                yield i, wave[start : start + size]

    @torch.inference_mode()
    def encode(self, waves: Sequence[torch.Tensor]) -> Encoded:
        """waves: mono float32 tensors at 16 kHz (see fastdaf.audio.load_audio)."""
        pieces = list(self._windows(waves))
        order = sorted(range(len(pieces)), key=lambda j: pieces[j][1].numel())  # similar lengths pad little
        vectors = torch.zeros(len(pieces), self.dim)
        weights = torch.zeros(len(pieces))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            mel, frames = log_mel([pieces[j][1] for j in idx], self.n_mels, self.device)
            vectors[idx] = self.runner({"mel": mel.transpose(1, 2).to(self.dtype), "frames": frames}).float().cpu()
            weights[idx] = ((frames + 1) // 2).float().cpu()
        owner = torch.tensor([i for i, _ in pieces])
        return combine_windows(vectors * weights[:, None], weights, owner, len(waves), self.window_seconds)
