"""Pooled per-modality features in memory (`FeatureSet`) and on disk (the fastdaf feature file).

File format (safetensors, so reading never runs code):
- `features.<modality>`: float tensor [N, dim], one per modality, in modality order;
- `present`: bool [N, M], False where a row has no value for that modality (its features are zeros);
- `labels`: float [N] or [N, K] (optional);
- metadata `fastdaf_features` = JSON {"format_version", "modalities", "ids", "splits", "label_names"}.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import FeatureFileError, InputError

FEATURE_FORMAT_VERSION = 1
_META_KEY = "fastdaf_features"


@dataclasses.dataclass
class FeatureSet:
    """Rows of pooled features: one tensor per modality, a presence mask, optional labels, ids and splits."""

    features: dict[str, torch.Tensor]
    present: torch.Tensor
    labels: torch.Tensor | None = None
    ids: list[str] | None = None
    splits: list[str] | None = None
    label_names: list[str] | None = None
    info: dict[str, Any] | None = None  # free JSON record, e.g. the encoders that made the features

    def __post_init__(self) -> None:
        if not self.features:
            raise InputError("a FeatureSet needs at least one modality")
        n = len(self)
        for name, x in self.features.items():
            if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
                raise InputError(
                    f"features[{name!r}] must be a float tensor [N, dim], got {getattr(x, 'shape', type(x))}"
                )
            if x.shape[0] != n:
                raise InputError(f"features[{name!r}] has {x.shape[0]} rows, other modalities have {n}")
        if self.present.dtype != torch.bool or tuple(self.present.shape) != (n, len(self.features)):
            raise InputError(
                f"present must be bool [{n}, {len(self.features)}], got {self.present.dtype} {list(self.present.shape)}"
            )
        if self.labels is not None and (self.labels.shape[0] != n or self.labels.dim() not in (1, 2)):
            raise InputError(f"labels must be [N] or [N, K] with N={n}, got {list(self.labels.shape)}")
        for field in ("ids", "splits"):
            value = getattr(self, field)
            if value is not None and len(value) != n:
                raise InputError(f"{field} has {len(value)} entries for {n} rows")

    def __len__(self) -> int:
        return next(iter(self.features.values())).shape[0]

    @property
    def modalities(self) -> dict[str, int]:
        return {m: x.shape[1] for m, x in self.features.items()}

    def subset(self, index: torch.Tensor | Sequence[int]) -> "FeatureSet":
        idx = torch.as_tensor(index, dtype=torch.long)
        pick = idx.tolist()
        return FeatureSet(
            features={m: x[idx] for m, x in self.features.items()},
            present=self.present[idx],
            labels=None if self.labels is None else self.labels[idx],
            ids=None if self.ids is None else [self.ids[i] for i in pick],
            splits=None if self.splits is None else [self.splits[i] for i in pick],
            label_names=self.label_names,
            info=self.info,
        )

    def split(self, name: str) -> "FeatureSet":
        """The rows whose split is `name`."""
        if self.splits is None:
            raise InputError("this feature set has no split column")
        rows = [i for i, s in enumerate(self.splits) if s == name]
        if not rows:
            raise InputError(f"no rows in split {name!r}; splits present: {sorted(set(self.splits))}")
        return self.subset(rows)

    # ------------------------------------------------------------------ file
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"features.{m}": x.detach().cpu().float().contiguous() for m, x in self.features.items()}
        tensors["present"] = self.present.cpu().contiguous()
        if self.labels is not None:
            tensors["labels"] = self.labels.detach().cpu().float().contiguous()
        meta = {
            "format_version": FEATURE_FORMAT_VERSION,
            "modalities": list(self.features),
            "ids": self.ids,
            "splits": self.splits,
            "label_names": self.label_names,
            "info": self.info,
        }
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
        os.replace(tmp, path)  # a crash mid-write never leaves a half-written feature file
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FeatureSet":
        path = Path(path)
        if not path.is_file():
            raise FeatureFileError(f"no feature file at {str(path)!r}")
        try:
            with safe_open(str(path), framework="pt") as f:
                raw_meta = (f.metadata() or {}).get(_META_KEY)
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise FeatureFileError(f"{path} is corrupt or not a safetensors file: {exc}") from exc
        if raw_meta is None:
            raise FeatureFileError(
                f"{path} is a safetensors file but not a fastdaf feature file (no {_META_KEY!r} metadata)"
            )
        try:
            meta: dict[str, Any] = json.loads(raw_meta)
        except json.JSONDecodeError as exc:
            raise FeatureFileError(f"{path}: feature metadata is not valid JSON: {exc}") from exc
        if meta.get("format_version") != FEATURE_FORMAT_VERSION:
            raise FeatureFileError(
                f"{path}: unknown feature format_version {meta.get('format_version')!r}; this fastdaf reads "
                f"{FEATURE_FORMAT_VERSION}"
            )
        modalities = meta.get("modalities") or []
        missing = [m for m in modalities if f"features.{m}" not in tensors]
        if missing or "present" not in tensors:
            raise FeatureFileError(f"{path}: missing tensor(s) {[f'features.{m}' for m in missing] or ['present']}")
        try:
            return cls(
                features={m: tensors[f"features.{m}"] for m in modalities},
                present=tensors["present"],
                labels=tensors.get("labels"),
                ids=meta.get("ids"),
                splits=meta.get("splits"),
                label_names=meta.get("label_names"),
                info=meta.get("info"),
            )
        except InputError as exc:
            raise FeatureFileError(f"{path}: {exc}") from exc


def concat(sets: Sequence[FeatureSet]) -> FeatureSet:
    """Stack feature sets with the same modalities row-wise (ids/splits kept when all have them)."""
    first = sets[0]
    for s in sets[1:]:
        if s.modalities != first.modalities:
            raise InputError(f"cannot concatenate feature sets with modalities {first.modalities} and {s.modalities}")

    def cat_lists(field: str) -> list[str] | None:
        lists = [getattr(s, field) for s in sets]
        return None if any(v is None for v in lists) else [x for v in lists for x in v]

    labels = [s.labels for s in sets]
    return FeatureSet(
        features={m: torch.cat([s.features[m] for s in sets]) for m in first.features},
        present=torch.cat([s.present for s in sets]),
        labels=None if any(v is None for v in labels) else torch.cat(labels),
        ids=cat_lists("ids"),
        splits=cat_lists("splits"),
        label_names=first.label_names,
        info=first.info,
    )
