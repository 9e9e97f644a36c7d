"""Vectors computed elsewhere (e.g. COVAREP, FACET), passed through after checking."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import EncoderError, InputError
from .base import Encoded


class PrecomputedEncoder:
    """Vectors computed elsewhere, passed through unchanged after checking their size."""

    takes_waveforms = False

    def __init__(self, modality: str, dim: int) -> None:
        if not re.match(r"^[a-z][a-z0-9_]*$", modality) or dim < 1:
            raise EncoderError(f"precomputed encoder needs a modality name and a dim >= 1, got {modality!r}, {dim}")
        self.modality, self.dim = modality, dim

    def spec(self) -> dict[str, Any]:
        return {"kind": "precomputed", "modality": self.modality, "dim": self.dim}

    def encode(self, vectors: Sequence[Any]) -> Encoded:
        rows = []
        for i, v in enumerate(vectors):
            t = (
                torch.as_tensor(np.asarray(v, dtype=np.float32) if not isinstance(v, torch.Tensor) else v)
                .float()
                .reshape(-1)
            )
            if t.numel() != self.dim:
                raise InputError(f"{self.modality} vector at position {i} has {t.numel()} values, expected {self.dim}")
            if not torch.isfinite(t).all():
                raise InputError(f"{self.modality} vector at position {i} holds NaN or infinite values")
            rows.append(t)
        return Encoded(torch.stack(rows) if rows else torch.empty(0, self.dim), [None] * len(rows))
