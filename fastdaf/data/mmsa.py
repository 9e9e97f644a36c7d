"""MMSA processed pickles (`load_mmsa_pickle`), pooled into a `FeatureSet`.

2. MMSA processed pickles (`load_mmsa_pickle`), thuiar/MMSA `aligned_50.pkl` / `unaligned_50.pkl`
   A dict with `train` / `valid` / `test` (at least one of them must be there; other keys are ignored),
   each a dict with `text` (N, L, 768 BERT features), `text_bert` (N, 3, L: input ids / attention mask /
   segment ids), `audio` (N, La, 74 COVAREP), `vision` (N, Lv, 35 FACET), `audio_lengths` /
   `vision_lengths` (unaligned files only; ints), `regression_labels` (N,), `id` (N strings) and
   `raw_text` (not used). The result has modalities `text`, `audio`, `video` (the file's `vision`),
   splits "train"/"valid"/"test" in that order, labels = `regression_labels`, ids = `id`.
   Pooling is a masked mean over time, so padding never leaks into it:
   - text over the positions where the attention mask `text_bert[:, 1, :]` is non-zero;
   - audio / vision over their first `audio_lengths` / `vision_lengths` frames when the file has them
     (unaligned), else (aligned files) over the text attention-mask positions, which requires their time
     axis to have the text length L (they are aligned to the text tokens);
   - `-inf` in audio is replaced by 0 before pooling, as MMSA does (`audio[audio == -np.inf] = 0`);
     any other non-finite value at a pooled position is an error naming split, modality and row
     (non-finite values in padding are ignored, as the padding itself is);
   - a row with nothing to pool for a modality (length 0, empty mask) is marked absent for it
     (present=False, zeros).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FeatureFileError
from ..features import FeatureSet
from .checks import first_bad_row, first_nonfinite_row
from .safe_pickle import BOUNDED_REPR, safe_load_pickle

MMSA_SPLITS: tuple[str, ...] = ("train", "valid", "test")

_POOL_BYTES = 1 << 26  # float64 working set per pooling chunk


def _masked_mean(
    x: np.ndarray, mask: np.ndarray, *, zero_neg_inf: bool, describe: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of x[n, t] over t where mask[n, t]; rows with an empty mask are absent (zeros).

    Accumulates in float64 in bounded chunks; values outside the mask never enter the sum (not even
    NaN or inf, which `0 * x` would let through). `describe(row, t, col, value)` words an error.
    """
    n, t, d = x.shape
    out = np.zeros((n, d), dtype=np.float32)
    counts = mask.sum(axis=1)
    step = max(1, _POOL_BYTES // max(1, t * d * 8))
    for lo in range(0, n, step):
        xs = np.array(x[lo : lo + step], dtype=np.float64)
        ms = mask[lo : lo + step, :, None]
        if zero_neg_inf:
            xs[xs == -np.inf] = 0.0
        bad = ~np.isfinite(xs) & ms
        if bad.any():
            r, ti, c = (int(v) for v in np.argwhere(bad)[0])
            raise FeatureFileError(describe(lo + r, ti, c, xs[r, ti, c]))
        sums = np.where(ms, xs, 0.0).sum(axis=1)
        cnt = counts[lo : lo + step, None]
        out[lo : lo + step] = np.where(cnt > 0, sums / np.maximum(cnt, 1), 0.0)
    return out, counts > 0


# MMSA pickles
def _mmsa_array(
    part: Mapping[str, Any], key: str, path: Path, split: str, *, ndim: int | None = None, numeric: bool = True
) -> np.ndarray:
    """One array of an MMSA split, with its presence, rank and numeric dtype checked."""
    if key not in part:
        raise FeatureFileError(
            f"{path}: split {split!r} has no {key!r} (found keys {sorted(map(str, part))}); expected MMSA processed "
            "data "
            "with text, text_bert, audio, vision, regression_labels and id"
        )
    try:
        arr = np.asarray(part[key])
    except (ValueError, TypeError) as exc:
        raise FeatureFileError(f"{path}: split {split!r}, {key!r} is not a rectangular array: {exc}") from exc
    if numeric and arr.dtype.kind not in "biuf":
        raise FeatureFileError(f"{path}: split {split!r}, {key!r} has dtype {arr.dtype}, expected numbers")
    if ndim is not None and arr.ndim != ndim:
        raise FeatureFileError(
            f"{path}: split {split!r}, {key!r} has shape {list(arr.shape)}, expected {ndim} dimensions"
        )
    return arr


def _mmsa_lengths(part: Mapping[str, Any], key: str, n: int, frames: int, path: Path, split: str) -> np.ndarray:
    """Per-row valid frame counts of an unaligned MMSA split, as ints within [0, frames]."""
    raw = _mmsa_array(part, key, path, split)
    lengths = raw.reshape(-1) if raw.ndim == 2 and raw.shape[1] == 1 else raw
    if lengths.ndim != 1 or lengths.shape[0] != n:
        raise FeatureFileError(f"{path}: split {split!r}, {key!r} has shape {list(raw.shape)}, expected ({n},)")
    row = first_bad_row(np.isfinite(lengths) & (lengths == np.round(lengths))) if lengths.dtype.kind == "f" else None
    if row is not None:
        raise FeatureFileError(
            f"{path}: split {split!r}, {key!r} row {row} is {lengths[row]!r}, expected a whole number"
        )
    lengths = lengths.astype(np.int64)
    bad = np.argwhere((lengths < 0) | (lengths > frames))
    if bad.size:
        row = int(bad[0, 0])
        raise FeatureFileError(
            f"{path}: split {split!r}, {key!r} row {row} is {lengths[row]}, expected 0..{frames} (the time axis)"
        )
    return lengths


def _pool_mmsa_split(path: Path, split: str, part: Mapping[str, Any]) -> dict[str, Any]:
    """Pooled text/audio/video, presence, labels and ids of one MMSA split, with the pooling rule used."""
    text = _mmsa_array(part, "text", path, split, ndim=3)
    n, length, _ = text.shape
    text_bert = _mmsa_array(part, "text_bert", path, split, ndim=3)
    if text_bert.shape[0] != n or text_bert.shape[1] != 3 or text_bert.shape[2] != length:
        raise FeatureFileError(
            f"{path}: split {split!r}, 'text_bert' has shape {list(text_bert.shape)}, expected [{n}, 3, {length}] "
            "(input ids / attention mask / segment ids for each text position)"
        )
    text_mask = text_bert[:, 1, :] != 0
    ids_raw = part.get("id")
    if ids_raw is None:
        raise FeatureFileError(f"{path}: split {split!r} has no 'id' (found keys {sorted(map(str, part))})")
    ids_list = list(np.asarray(ids_raw, dtype=object).reshape(-1)) if not isinstance(ids_raw, list) else ids_raw
    if len(ids_list) != n:
        raise FeatureFileError(f"{path}: split {split!r} has {len(ids_list)} ids for {n} rows of 'text'")
    for i, v in enumerate(ids_list):
        if not isinstance(v, str):
            raise FeatureFileError(
                f"{path}: split {split!r}, id of row {i} is a {type(v).__name__} ({BOUNDED_REPR.repr(v)}), expected "
                "a string"
            )
    labels = _mmsa_array(part, "regression_labels", path, split).astype(np.float64)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (n,):
        raise FeatureFileError(
            f"{path}: split {split!r}, 'regression_labels' has shape {list(labels.shape)}, expected ({n},)"
        )
    row = first_nonfinite_row(labels)
    if row is not None:
        raise FeatureFileError(
            f"{path}: split {split!r}, 'regression_labels' row {row} is {labels[row]}, expected a finite number"
        )

    features: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    rules: dict[str, str] = {"text": "mean over text_bert attention mask"}
    for modality, key in (("text", "text"), ("audio", "audio"), ("video", "vision")):
        x = text if key == "text" else _mmsa_array(part, key, path, split, ndim=3)
        if x.shape[0] != n:
            raise FeatureFileError(f"{path}: split {split!r}, {key!r} has {x.shape[0]} rows, 'text' has {n}")
        if key == "text":
            mask = text_mask
        elif f"{key}_lengths" in part:
            lengths = _mmsa_lengths(part, f"{key}_lengths", n, x.shape[1], path, split)
            mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
            rules[modality] = f"mean over the first {key}_lengths frames (unaligned)"
        elif x.shape[1] == length:
            mask = text_mask
            rules[modality] = "mean over text_bert attention mask (aligned to text)"
        else:
            raise FeatureFileError(
                f"{path}: split {split!r} has no {key}_lengths and {key!r} has {x.shape[1]} time steps, not the text "
                f"length {length}: expected {key}_lengths (unaligned file) or a time axis aligned to the text "
                "(aligned file)"
            )

        def describe(row: int, t: int, col: int, value: float, _m: str = modality) -> str:
            note = "; -inf is replaced by 0 only in audio, as MMSA does" if _m != "audio" or value != -np.inf else ""
            return (
                f"{path}: split {split!r}, modality {_m!r}, row {row} (id {ids_list[row]!r}): non-finite value {value} "
                f"at time step {t}, column {col}{note}"
            )

        features[modality], present[modality] = _masked_mean(
            x, mask, zero_neg_inf=modality == "audio", describe=describe
        )
    return {
        "features": features,
        "present": present,
        "labels": labels,
        "ids": [str(v) for v in ids_list],
        "rules": rules,
    }


def load_mmsa_pickle(path: str | Path) -> FeatureSet:
    """Pooled features of an MMSA `aligned_50.pkl` / `unaligned_50.pkl`, read without running pickle code.

    MMSA's processed CMU-MOSI/MOSEI/SIMS files are the common benchmark inputs; pooling them lets the
    fastdaf heads train and be compared on the same features as published baselines.
    """
    path = Path(path)
    data = safe_load_pickle(path)
    if not isinstance(data, Mapping):
        raise FeatureFileError(
            f"{path}: top level is a {type(data).__name__}, expected a dict with 'train'/'valid'/'test'"
        )
    splits = [s for s in MMSA_SPLITS if s in data]
    if not splits:
        raise FeatureFileError(f"{path}: found keys {sorted(map(str, data))}, expected 'train', 'valid' and/or 'test'")
    parts = []
    for split in splits:
        if not isinstance(data[split], Mapping):
            raise FeatureFileError(
                f"{path}: split {split!r} is a {type(data[split]).__name__}, expected a dict of arrays"
            )
        parts.append(_pool_mmsa_split(path, split, data[split]))
    for modality in ("text", "audio", "video"):
        dims = {s: p["features"][modality].shape[1] for s, p in zip(splits, parts)}
        if len(set(dims.values())) > 1:
            raise FeatureFileError(f"{path}: {modality} feature width differs between splits: {dims}")
    features = {
        m: torch.from_numpy(np.concatenate([p["features"][m] for p in parts])) for m in ("text", "audio", "video")
    }
    present = torch.from_numpy(np.stack([np.concatenate([p["present"][m] for p in parts]) for m in features], axis=1))
    split_col = [s for s, p in zip(splits, parts) for _ in p["ids"]]
    return FeatureSet(
        features=features,
        present=present,
        labels=torch.from_numpy(np.concatenate([p["labels"] for p in parts]).astype(np.float32)),
        ids=[i for p in parts for i in p["ids"]],
        splits=split_col,
        label_names=["sentiment"],
        info={
            "source": "mmsa",
            "file": path.name,
            "pooling": {s: p["rules"] for s, p in zip(splits, parts)},
            "absent": {m: int((~present[:, j]).sum()) for j, m in enumerate(features)},
        },
    )
