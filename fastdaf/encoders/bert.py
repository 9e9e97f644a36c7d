"""A native BERT encoder in plain torch, for fast start-up with BERT-architecture checkpoints.

Importing transformers' BERT costs ~2.5 s on a 2-core CPU (it pulls in torch._dynamo and most of the
library), more than half of `fastdaf predict`'s cold start. BERT's forward is small, so checkpoints of
model_type "bert" with absolute positions and GELU (the default all-MiniLM-L6-v2 among them) run
here instead: the same parameter names (a strict state-dict load checks every tensor), the same
function (tests compare it with transformers), tokenised by the `tokenizers` library from the
checkpoint's tokenizer.json. Anything else, or any mismatch, uses transformers.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn


@dataclasses.dataclass
class BertOutput:
    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None
    pooler_output: torch.Tensor


class _Embeddings(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], cfg["hidden_size"])
        self.token_type_embeddings = nn.Embedding(cfg.get("type_vocab_size", 2), cfg["hidden_size"])
        self.LayerNorm = nn.LayerNorm(cfg["hidden_size"], eps=cfg.get("layer_norm_eps", 1e-12))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings.weight[0]
        )
        return self.LayerNorm(x)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.query, self.key, self.value = (
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, hidden),
        )


class _DenseNorm(nn.Module):
    def __init__(self, d_in: int, d_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)


class _Attention(nn.Module):
    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.self = _SelfAttention(hidden)
        self.output = _DenseNorm(hidden, hidden, eps)


class _Dense(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)


class _Layer(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        hidden, eps = cfg["hidden_size"], cfg.get("layer_norm_eps", 1e-12)
        self.heads = cfg["num_attention_heads"]
        self.attention = _Attention(hidden, eps)
        self.intermediate = _Dense(hidden, cfg["intermediate_size"])
        self.output = _DenseNorm(cfg["intermediate_size"], hidden, eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        att = self.attention.self
        heads = (att.query(x), att.key(x), att.value(x))
        q, k, v = (t.view(B, L, self.heads, D // self.heads).transpose(1, 2) for t in heads)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(B, L, D)
        x = self.attention.output.LayerNorm(x + self.attention.output.dense(ctx))
        h = F.gelu(self.intermediate.dense(x))
        return self.output.LayerNorm(x + self.output.dense(h))


class _Encoder(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg["num_hidden_layers"]))


class NativeBert(nn.Module):
    """BertModel's forward (absolute positions, GELU, token type 0) with transformers' parameter names."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.config = types.SimpleNamespace(**cfg)
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)
        self.pooler = _Dense(cfg["hidden_size"], cfg["hidden_size"])

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, output_hidden_states: bool = False
    ) -> BertOutput:
        x = self.embeddings(input_ids)
        # additive mask as transformers builds it: 0 where attended, the dtype's minimum where padded
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        states = [x]
        for layer in self.encoder.layer:
            x = layer(x, bias)
            states.append(x)
        pooled = torch.tanh(self.pooler.dense(x[:, 0]))
        return BertOutput(x, tuple(states) if output_hidden_states else None, pooled)


class NativeTokenizer:
    """The subset of a transformers tokenizer call that TextEncoder uses, on the `tokenizers` library."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer  # noqa: PLC0415 - only when the native BERT loads its tokenizer

        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        config = (
            json.loads((path / "tokenizer_config.json").read_text())
            if (path / "tokenizer_config.json").is_file()
            else {}
        )
        pad = config.get("pad_token", "[PAD]")
        pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else pad
        self.pad_token_id = self.tokenizer.token_to_id(pad) or 0

    def __call__(
        self,
        texts: Sequence[str],
        *,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
    ) -> dict[str, Any]:
        if truncation and max_length:
            self.tokenizer.enable_truncation(max_length)
        else:
            self.tokenizer.no_truncation()
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = [e.ids for e in encodings]
        if not padding:
            return {"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]}
        width = max_length if padding == "max_length" and max_length else max(len(i) for i in ids)
        input_ids = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(ids), width, dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq[:width], dtype=torch.long)
            mask[row, : len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


def load_native_bert(path: str | Path) -> tuple[NativeBert, NativeTokenizer] | None:
    """(model, tokenizer) for a supported BERT checkpoint directory, else None (use transformers)."""
    path = Path(path)
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    weights = path / "model.safetensors"
    supported = (
        cfg.get("model_type") == "bert"
        and cfg.get("hidden_act", "gelu") == "gelu"
        and cfg.get("position_embedding_type", "absolute") == "absolute"
        and weights.is_file()
        and (path / "tokenizer.json").is_file()
    )
    if not supported:
        return None

    state = {k.removeprefix("bert."): v for k, v in load_file(str(weights)).items() if not k.endswith("position_ids")}
    model = NativeBert(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        return None  # unexpected layout: transformers handles it
    return model.eval(), NativeTokenizer(path)
