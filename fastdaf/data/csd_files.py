"""One CMU-MultimodalSDK computational sequence (.csd, HDF5) opened for fastdaf.data.csd, checked from its HDF5
metadata before anything is read (a small file can claim huge datasets): `open_csd` finds the single
`<root>/data` group and reads the metadata strings; the file's `open(video)` checks a video's `features` [T, D] and
`intervals` [T, 2] datasets (types, shapes, at most `MAX_INPUT_DIM` columns and `MAX_CSD_VALUES` values) and
reads them only when asked. Soft and external links, user-defined links and datasets stored outside the file
(external storage, virtual datasets) are refused wherever they are, before they are followed; metadata entries
over `MAX_CSD_METADATA_BYTES` are skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..config import MAX_INPUT_DIM
from ..errors import FeatureFileError
from ..extras import require
from .checks import first_nonfinite_row

# limits of one file (CMU-MOSEI: <= 709 feature columns, videos of <= ~60k rows)
MAX_CSD_VALUES = 1 << 26  # values in one video's features (67,108,864: 512 MiB as float64)
MAX_CSD_METADATA_BYTES = 1 << 20  # one metadata entry; larger ones are skipped (metadata is informational)
_CSD_PLAIN = ".csd entries must be plain groups and datasets inside the file (links are never followed)"


def _h5py() -> Any:
    """h5py, imported only when .csd files are read: the `data` extra installs it."""
    return require("h5py", "reading CMU-MultimodalSDK .csd files")


def _metadata_text(value: Any) -> str:
    """A metadata value as text: h5py returns vlen strings as bytes, 1-element arrays, or str."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1).tolist()
        value = value[0] if len(value) == 1 else value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else repr(value)


def _csd_nbytes(shape: Any, dtype: np.dtype) -> int:
    """Bytes that reading an HDF5 dataset or attribute of this shape would take (shape is metadata)."""
    return math.prod(shape or ()) * dtype.itemsize


def _csd_entry(group: Any, name: str, path: Path) -> Any:
    """`group[name]` (None when absent), refusing links and data kept outside the file before following them.

    Following them would read another file (another HDF5 file silently, /etc/passwd, any file named by
    an external storage list); the CMU-MultimodalSDK writes only plain groups and datasets. The link
    is inspected with the low-level API, which (unlike `name in group`) never resolves it.
    """
    h5py = _h5py()
    key = name.encode("utf-8")
    if not group.id.links.exists(key):
        return None
    kind = group.id.links.get_info(key).type
    if kind != h5py.h5l.TYPE_HARD:
        where = f"{group.name.rstrip('/')}/{name}"
        if kind == h5py.h5l.TYPE_EXTERNAL:
            filename, target = (v.decode("utf-8", "replace") for v in group.id.links.get_val(key))
            raise FeatureFileError(f"{path}: {where} is an external link to {filename}:{target}; {_CSD_PLAIN}")
        if kind == h5py.h5l.TYPE_SOFT:
            raise FeatureFileError(
                f"{path}: {where} is a soft link to {group.id.links.get_val(key).decode('utf-8', 'replace')}; "
                f"{_CSD_PLAIN}"
            )
        raise FeatureFileError(f"{path}: {where} is a user-defined link (type {kind}); {_CSD_PLAIN}")
    entry = group[name]
    if isinstance(entry, h5py.Dataset) and (entry.is_virtual or entry.external):
        raise FeatureFileError(
            f"{path}: dataset {entry.name} keeps its data in other files (external storage or a virtual dataset); "
            f"{_CSD_PLAIN}"
        )
    return entry


@dataclasses.dataclass
class _CsdVideo:
    """One video's `features` [T, D] and `intervals` [T, 2] datasets, shapes and dtypes checked but not read."""

    features: Any
    intervals: Any
    where: str

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """features (float64) and intervals (float64, finite)."""
        feats, intervals = self.features[()].astype(np.float64), self.intervals[()].astype(np.float64)
        row = first_nonfinite_row(intervals)
        if row is not None:
            raise FeatureFileError(f"{self.where}/intervals row {row} is not finite")
        return feats, intervals


@dataclasses.dataclass
class _CsdFile:
    """An open computational sequence: its `data` group, root name and metadata strings."""

    path: Path
    root: str
    data: Any
    metadata: dict[str, str]

    def open(self, vid: str) -> _CsdVideo:
        """A video's datasets (a name under `data`), checked from HDF5 metadata before anything is read."""
        group = _csd_entry(self.data, vid, self.path)
        where = f"{self.path}: /{self.root}/data/{vid}"
        h5py = _h5py()
        feats = _csd_entry(group, "features", self.path) if isinstance(group, h5py.Group) else None
        intervals = _csd_entry(group, "intervals", self.path) if isinstance(group, h5py.Group) else None
        if feats is None or intervals is None:
            found = sorted(group.keys()) if isinstance(group, h5py.Group) else type(group).__name__
            raise FeatureFileError(f"{where} must be a group with 'features' and 'intervals', found {found}")
        for name, ds, expected in (
            ("features", feats, "numbers [T, D]"),
            ("intervals", intervals, "numbers [T, 2] (start, end seconds)"),
        ):
            if not isinstance(ds, h5py.Dataset):
                raise FeatureFileError(f"{where}/{name} is a {type(ds).__name__}, expected a dataset of {expected}")
        if feats.dtype.kind not in "biuf" or feats.ndim != 2:
            raise FeatureFileError(
                f"{where}/features is {feats.dtype} with shape {list(feats.shape)}, expected numbers [T, D]"
            )
        if intervals.dtype.kind not in "biuf" or intervals.ndim != 2 or intervals.shape != (feats.shape[0], 2):
            raise FeatureFileError(
                f"{where}/intervals is {intervals.dtype} {list(intervals.shape)}, expected numbers "
                f"[{feats.shape[0]}, 2] (start, end seconds)"
            )
        if feats.shape[1] > MAX_INPUT_DIM or feats.size > MAX_CSD_VALUES:
            raise FeatureFileError(
                f"{where}/features has shape {list(feats.shape)}; accepted: at most {MAX_INPUT_DIM:,} columns and "
                f"{MAX_CSD_VALUES:,} values per video (checked before reading)"
            )
        return _CsdVideo(feats, intervals, where)


def _csd_metadata(meta: Any, path: Path) -> dict[str, str]:
    """Metadata strings of a .csd; informational, so unreadable or oversized entries are skipped (links are refused)."""
    h5py = _h5py()
    out: dict[str, str] = {}
    with contextlib.suppress(Exception):  # never fail a load over metadata attributes
        for k in meta.attrs:
            attr = meta.attrs.get_id(k)
            if _csd_nbytes(attr.shape, attr.dtype) <= MAX_CSD_METADATA_BYTES:
                out[str(k)] = _metadata_text(meta.attrs[k])
    for k in meta:
        entry = _csd_entry(meta, k, path)
        if isinstance(entry, h5py.Dataset) and _csd_nbytes(entry.shape, entry.dtype) <= MAX_CSD_METADATA_BYTES:
            with contextlib.suppress(Exception):
                out[str(k)] = _metadata_text(entry[()])
    return out


def open_csd(path: Path, stack: contextlib.ExitStack) -> _CsdFile:
    """Open a .csd file (kept open by `stack`) and locate its single `<root>/data` group."""
    h5py = _h5py()
    if not path.is_file():
        raise FeatureFileError(f"no .csd file at {str(path)!r}")
    try:
        handle = stack.enter_context(h5py.File(path, "r"))
    except OSError as exc:
        raise FeatureFileError(f"{path} is not a readable HDF5 (.csd) file: {exc}") from exc
    roots = {}
    for name in handle:
        top = _csd_entry(handle, name, path)
        data = _csd_entry(top, "data", path) if isinstance(top, h5py.Group) else None
        if isinstance(data, h5py.Group):
            roots[name] = (top, data)
    if len(roots) != 1:
        raise FeatureFileError(
            f"{path}: expected exactly one top-level group holding 'data' (/<root>/data/<video>/features), "
            f"found top-level keys {list(handle.keys())}"
        )
    root, (top, data) = next(iter(roots.items()))
    meta = _csd_entry(top, "metadata", path)
    return _CsdFile(path, root, data, _csd_metadata(meta, path) if isinstance(meta, h5py.Group) else {})
