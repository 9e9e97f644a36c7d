"""The one description of a DAF head: what goes in, how big each part is, how modalities are fused."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ConfigError

FUSION_MODES = ("dynamic", "static", "mean", "concat")
ACTIVATIONS = ("gelu", "relu", "tanh", "silu")
MAX_MODALITIES = 4
# Size limits, checked before any weight is allocated (a checkpoint's config.json is untrusted input).
# Generous for real models: encoders give 35..4096-d features and the heads use layers of 64..1024.
MAX_INPUT_DIM = 65_536  # input dimension of one modality
MAX_LAYER_SIZE = 8_192  # projection_size, attention_size, hidden_size
MAX_OUTPUTS = 64  # n_outputs
MAX_WEIGHTS = 1 << 26  # numbers in the head's parameters and buffers (67,108,864: 256 MiB as float32)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _positive_int(name: str, value: Any, *, low: int = 1, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be in {span}, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class DAFConfig:
    """Architecture of a DAF head.

    `modalities` is ordered: that order is the column order of the presence mask and of the
    returned modality weights. A config with a single modality is the unimodal baseline.
    """

    modalities: Mapping[str, int]
    projection_size: int = 128
    attention_size: int = 64
    hidden_size: int = 128
    n_outputs: int = 1
    output_names: Sequence[str] | None = None
    dropout: float = 0.1
    activation: str = "gelu"
    temperature: float = 1.0
    fusion: str = "dynamic"

    def __init__(
        self,
        modalities: Mapping[str, int],
        *,
        projection_size: int = 128,
        attention_size: int = 64,
        hidden_size: int = 128,
        n_outputs: int = 1,
        output_names: Sequence[str] | None = None,
        dropout: float = 0.1,
        activation: str = "gelu",
        temperature: float = 1.0,
        fusion: str = "dynamic",
    ) -> None:
        # Keyword-only options (the public contract); a frozen dataclass is set through object.__setattr__.
        values = dict(
            modalities=modalities,
            projection_size=projection_size,
            attention_size=attention_size,
            hidden_size=hidden_size,
            n_outputs=n_outputs,
            output_names=output_names,
            dropout=dropout,
            activation=activation,
            temperature=temperature,
            fusion=fusion,
        )
        for key, value in _validated(values).items():
            object.__setattr__(self, key, value)

    # ------------------------------------------------------------------ views
    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(self.modalities)

    @property
    def n_modalities(self) -> int:
        return len(self.modalities)

    @property
    def n_weights(self) -> int:
        """Numbers the head stores (parameters and standardisation buffers); at most MAX_WEIGHTS."""
        return n_weights(
            self.modalities, self.projection_size, self.attention_size, self.hidden_size, self.n_outputs, self.fusion
        )

    # --------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["modalities"] = dict(self.modalities)
        out["output_names"] = list(self.output_names)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DAFConfig":
        if not isinstance(data, Mapping):
            raise ConfigError(f"a DAF config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown DAF config field(s) {unknown}; accepted: {sorted(known)}")
        if "modalities" not in data:
            raise ConfigError("a DAF config needs 'modalities' (an object: modality name -> input dimension)")
        rest = {k: v for k, v in data.items() if k != "modalities"}
        return cls(data["modalities"], **rest)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def replace(self, **changes: Any) -> "DAFConfig":
        data = self.to_dict()
        data.update(changes)
        return DAFConfig.from_dict(data)

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DAFConfig) and self.to_dict() == other.to_dict()


def _validated(v: dict[str, Any]) -> dict[str, Any]:
    mods = v["modalities"]
    if not isinstance(mods, Mapping) or not mods:
        raise ConfigError(
            f"modalities must be a non-empty mapping name -> input dimension, e.g. {{'text': 768, 'audio': 74}}; got "
            f"{mods!r}"
        )
    if len(mods) > MAX_MODALITIES:
        raise ConfigError(f"at most {MAX_MODALITIES} modalities are supported, got {len(mods)}: {list(mods)}")
    clean: dict[str, int] = {}
    for name, dim in mods.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(
                f"modality name {name!r} is not accepted: use lower-case letters, digits and '_', starting with a "
                "letter"
            )
        clean[name] = _positive_int(f"input dimension of modality {name!r}", dim, high=MAX_INPUT_DIM)
    v["modalities"] = clean
    for size in ("projection_size", "attention_size", "hidden_size"):
        v[size] = _positive_int(size, v[size], high=MAX_LAYER_SIZE)
    v["n_outputs"] = _positive_int("n_outputs", v["n_outputs"], high=MAX_OUTPUTS)

    names = v["output_names"]
    if names is None:
        names = ["sentiment"] + [f"output_{i}" for i in range(1, v["n_outputs"])]
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"output_names must be a list of non-empty strings, got {names!r}")
    names = tuple(names)
    if len(names) != v["n_outputs"] or len(set(names)) != len(names):
        raise ConfigError(f"output_names must be {v['n_outputs']} distinct names (n_outputs), got {list(names)}")
    v["output_names"] = names

    dropout = v["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be a number in [0, 1), got {dropout!r}")
    v["dropout"] = float(dropout)
    if v["activation"] not in ACTIVATIONS:
        raise ConfigError(f"activation {v['activation']!r} is not accepted; choose one of {list(ACTIVATIONS)}")
    temp = v["temperature"]
    if isinstance(temp, bool) or not isinstance(temp, (int, float)) or not math.isfinite(temp) or temp <= 0:
        raise ConfigError(f"temperature must be a finite number > 0, got {temp!r}")
    v["temperature"] = float(temp)
    if v["fusion"] not in FUSION_MODES:
        raise ConfigError(f"fusion {v['fusion']!r} is not accepted; choose one of {list(FUSION_MODES)}")
    weights = n_weights(clean, v["projection_size"], v["attention_size"], v["hidden_size"], v["n_outputs"], v["fusion"])
    if weights > MAX_WEIGHTS:
        raise ConfigError(
            f"this head would hold {weights:,} weights, more than the {MAX_WEIGHTS:,} accepted; "
            "use smaller input dimensions or projection_size/hidden_size"
        )
    return v


def n_weights(
    modalities: Mapping[str, int], projection: int, attention: int, hidden: int, n_outputs: int, fusion: str
) -> int:
    """Numbers in a DAF head's parameters and buffers, as `fastdaf.head.DAFHead` lays them out.

    Lets a config be refused for its size before any memory is allocated for it.
    """
    dims = modalities.values()
    count = sum((d + 1) * projection + 2 * d for d in dims)  # projection layers + standardisation mean/std
    if fusion == "dynamic":
        count += (projection + 1) * attention + attention  # score_hidden + score_out (no bias)
    elif fusion == "static":
        count += len(modalities)  # static_logits
    fused = projection * len(modalities) if fusion == "concat" else projection
    return count + (fused + 1) * hidden + (hidden + 1) * n_outputs  # mlp_hidden + mlp_out
