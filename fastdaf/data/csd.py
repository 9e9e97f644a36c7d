"""CMU-MultimodalSDK computational sequences (`load_csd_folder`), pooled into a `FeatureSet`.

3. CMU-MultimodalSDK computational sequences (`load_csd_folder`)
   Each `.csd` file is HDF5: one top-level group `<root>` holding `data/<video_id>/features` ([T, D]
   numbers) and `data/<video_id>/intervals` ([T, 2] start/end seconds), and optionally `metadata/`
   (attributes or datasets holding JSON-ish strings; informational, copied into `info["metadata"]`,
   its absence is fine). A folder holds one file per modality plus one labels file. Without an explicit
   `modalities` mapping (role -> file), roles come from the file names, case-insensitively: "label" ->
   labels (checked first), "covarep"/"audio" -> audio, "facet"/"openface"/"visual"/"video" -> video,
   "glove"/"word"/"bert"/"text" -> text; a file matching no role or several, or two files for one role,
   is an error listing the files and asking for an explicit mapping (the full SDK download has both
   FACET and OpenFace, and both TimestampedWords and TimestampedWordVectors, so it needs one).
   Utterances are the label intervals: row k of video v's label `intervals` is segment `f"{v}[{k}]"`
   (the id style of the transcript CSVs), with label vector `features[k]` (CMU-MOSEI: 7 columns,
   sentiment then the six emotions); rows follow the videos in HDF5 name order, then k. `labels` is
   column `label_column` (default 0, sentiment) as [N]; the width and column names are in `info`. For
   each segment and modality the feature rows whose interval overlaps the segment by more than 0
   seconds are averaged; a segment with no such row (or a video missing from that modality's file) is
   marked absent (present=False, zeros), never filled in.
   `-inf` is replaced by 0 in the modalities listed in `zero_neg_inf` (default: audio, as MMSA does);
   any other non-finite value in a pooled row is an error naming file, video and row.
   Folds: `folds` maps split name -> video ids; videos listed in no fold are left out (counted in
   `info`). Without `folds`, the transcript CSVs define them: a video found in `<dir>/train.csv` is
   "train", in `valid.csv` "valid" (each `*.csv` is a split named by its stem), any other video is
   "test". With the shared CMU-MOSEI CSVs this reproduces the SDK's standard train/valid folds; the
   standard test fold is whatever remains. Without `transcripts`, the folder named by the environment
   variable `FASTDAF_MOSEI_TRANSCRIPTS` is used (nothing of a development checkout is assumed); if that is
   unset or missing (and no folds were given), every video is put in "train" and `info["folds"]` says so.
   A folder passed explicitly must exist.
   Limits, checked from the HDF5 metadata before anything is read (a small file can claim huge
   datasets): no soft or external links and no dataset stored outside the file (external storage,
   virtual datasets), anywhere in the file; per video at most `MAX_CSD_VALUES` (2**26) feature values
   and `MAX_INPUT_DIM` (65,536) columns; at most `MAX_CSD_SEGMENTS` (200,000) labelled segments and
   `MAX_CSD_LABEL_COLUMNS` (64) label columns; segments x columns of a pooled modality at most
   `MAX_CSD_POOLED_VALUES` (2**28). Metadata entries over `MAX_CSD_METADATA_BYTES` (1 MiB) are skipped. One file
   is opened and checked by fastdaf.data.csd_files.

`detect_dataset_kind(path)` tells the CLI which of these readers (or `FeatureSet.load`) fits a path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FeatureFileError, InputError
from ..features import FeatureSet
from .checks import first_nonfinite_row
from .csd_files import open_csd
from .transcripts import MOSEI_LABEL_COLUMNS, read_transcript_dir

CSD_KEYWORDS: dict[str, tuple[str, ...]] = {
    "audio": ("covarep", "audio"),
    "video": ("facet", "openface", "visual", "video"),
    "text": ("glove", "word", "bert", "text"),
}

# .csd folder limits, checked from HDF5 metadata before anything is read (a small file can claim huge datasets;
# one file's own limits are fastdaf.data.csd_files'). CMU-MOSEI: 23,453 segments, 7 label columns.
MAX_CSD_SEGMENTS = 200_000  # labelled segments in a folder
MAX_CSD_LABEL_COLUMNS = 64  # columns of the labels file
MAX_CSD_POOLED_VALUES = 1 << 28  # segments x feature columns of one pooled modality (1 GiB as float32)


def _csd_files(folder: Path) -> list[Path]:
    """The .csd files of a folder, sorted by name (suffix matched case-insensitively)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csd")


def _csd_role(name: str) -> list[str]:
    """The roles a file name suggests: ["labels"], one modality, several (ambiguous) or none."""
    low = name.lower()
    if "label" in low:
        return ["labels"]
    return [m for m, words in CSD_KEYWORDS.items() if any(w in low for w in words)]


def infer_csd_modalities(folder: str | Path) -> dict[str, Path]:
    """Role -> file ("labels", "text", "audio", "video") from the .csd file names of a folder.

    Saves writing a mapping for the usual SDK names (CMU_MOSEI_COVAREP.csd, ..._Labels.csd); refuses to
    guess when a name fits no role or several, or two files fit one role.
    """
    folder = Path(folder)
    files = _csd_files(folder) if folder.is_dir() else []
    if not files:
        raise FeatureFileError(f"no .csd files in {str(folder)!r}")
    guesses = {f: _csd_role(f.stem) for f in files}
    by_role: dict[str, list[Path]] = {}
    for f, roles in guesses.items():
        if len(roles) == 1:
            by_role.setdefault(roles[0], []).append(f)
    problems = [f"{f.name} fits no role" for f, r in guesses.items() if not r]
    problems += [f"{f.name} fits several roles ({', '.join(r)})" for f, r in guesses.items() if len(r) > 1]
    problems += [
        f"{len(fs)} files fit {role} ({', '.join(f.name for f in fs)})" for role, fs in by_role.items() if len(fs) > 1
    ]
    if "labels" not in by_role:
        problems.append("no file name contains 'label'")
    if not set(by_role) - {"labels"}:
        problems.append("no modality file (covarep/audio, facet/openface/visual/video, glove/word/bert/text)")
    if problems:
        listing = ", ".join(f"{f.name} -> {'/'.join(r) or '?'}" for f, r in guesses.items())
        raise FeatureFileError(
            f"cannot tell the .csd files of {folder} apart: {'; '.join(problems)}. Files: {listing}. "
            "Pass an explicit mapping, e.g. "
            "modalities={'labels': 'CMU_MOSEI_Labels.csd', 'audio': 'CMU_MOSEI_COVAREP.csd', "
            "'video': 'CMU_MOSEI_VisualFacet42.csd', 'text': 'CMU_MOSEI_TimestampedWordVectors.csd'}"
        )
    return {role: fs[0] for role, fs in by_role.items()}


def _overlap_masks(seg: np.ndarray, intervals: np.ndarray) -> Any:
    """(first segment, mask [segments, T]) in chunks of about 4M cells: which rows overlap each segment by > 0 s."""
    step = max(1, (1 << 22) // max(1, intervals.shape[0]))
    for lo in range(0, seg.shape[0], step):
        s = seg[lo : lo + step]
        yield lo, np.minimum(s[:, 1:2], intervals[None, :, 1]) - np.maximum(s[:, 0:1], intervals[None, :, 0]) > 0


def _overlap_means(
    seg: np.ndarray, feats: np.ndarray, intervals: np.ndarray, describe: Any, zero_neg_inf: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the feature rows overlapping each segment by > 0 s; segments with none are absent.

    Works chunk by chunk, so memory stays bounded however many segments and rows a video has.
    """
    if zero_neg_inf:
        feats[feats == -np.inf] = 0.0
    used = np.zeros(feats.shape[0], dtype=bool)
    for _, mask in _overlap_masks(seg, intervals):
        used |= mask.any(axis=0)
    bad = ~np.isfinite(feats)
    bad_used = np.argwhere(bad & used[:, None])
    if bad_used.size:
        r, c = (int(v) for v in bad_used[0])
        raise FeatureFileError(describe(r, c, feats[r, c]))
    feats[bad] = 0.0  # rows no segment uses: keep them out of the matrix product (0 * nan = nan)
    means = np.zeros((seg.shape[0], feats.shape[1]))
    counts = np.zeros(seg.shape[0], dtype=np.int64)
    for lo, mask in _overlap_masks(seg, intervals):
        hits = mask.sum(axis=1)
        counts[lo : lo + len(hits)] = hits
        means[lo : lo + len(hits)] = (mask.astype(np.float64) @ feats) / np.maximum(hits, 1)[:, None]
    return means, counts > 0


TRANSCRIPTS_ENV = "FASTDAF_MOSEI_TRANSCRIPTS"  # the default transcript folder for folds, when set


def _default_folds(transcripts: Path | None, explicit: bool) -> tuple[dict[str, str] | None, str]:
    """video -> split from a transcript folder, with a note for info; None when the default folder is missing."""
    if transcripts is None:
        return None, f"no transcript folder (transcripts= or ${TRANSCRIPTS_ENV}): every video is in split 'train'"
    if not transcripts.is_dir():
        if explicit:
            raise FeatureFileError(f"no transcript folder at {str(transcripts)!r} to take the folds from")
        return None, f"no transcript folder at {transcripts}: every video is in split 'train'"
    video_split: dict[str, str] = {}
    for row in read_transcript_dir(transcripts):
        prev = video_split.setdefault(row.video, row.split)
        if prev != row.split:
            raise FeatureFileError(
                f"{transcripts}: video {row.video!r} has segments in both split {prev!r} and {row.split!r} ({row.id})"
            )
    names = sorted(set(video_split.values()))
    return video_split, f"from the transcript CSVs in {transcripts} ({', '.join(names)}); other videos are 'test'"


def _transcript_folder(transcripts: str | Path | None) -> Path | None:
    if transcripts is not None:
        return Path(transcripts)
    return Path(os.environ[TRANSCRIPTS_ENV]) if os.environ.get(TRANSCRIPTS_ENV) else None


def _pooled_matrix(n: int, width: int, path: Path) -> np.ndarray:
    """The zeroed [segments, width] float32 result of one modality, refused before allocation when too big."""
    if n * width > MAX_CSD_POOLED_VALUES:
        raise FeatureFileError(
            f"{path}: {n:,} segments x {width:,} feature columns exceed the {MAX_CSD_POOLED_VALUES:,} pooled values "
            "accepted"
        )
    return np.zeros((n, width), dtype=np.float32)


def load_csd_folder(
    folder: str | Path,
    *,
    modalities: Mapping[str, str | Path] | None = None,
    folds: Mapping[str, Sequence[str]] | None = None,
    transcripts: str | Path | None = None,
    label_column: int = 0,
    zero_neg_inf: Sequence[str] = ("audio",),
) -> FeatureSet:
    """Segment-level pooled features from a folder of CMU-MultimodalSDK computational sequences.

    The SDK's raw .csd downloads are the original CMU-MOSI/MOSEI features; pooling each modality over
    the labelled segments turns them into fastdaf rows with the same ids as the transcript CSVs.
    `modalities`: role -> file name in `folder` (or a path); must include "labels". `folds`: split ->
    video ids (videos in no fold are left out). `transcripts`: folder whose CSVs define the default folds
    (default: `$FASTDAF_MOSEI_TRANSCRIPTS`). `label_column`: which label column becomes `labels`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FeatureFileError(f"no .csd folder at {str(folder)!r}")
    if modalities is None:
        roles = infer_csd_modalities(folder)
    else:
        if not isinstance(modalities, Mapping) or "labels" not in modalities:
            raise InputError(f"modalities must map roles to .csd files and include 'labels', got {modalities!r}")
        roles = {str(r): (folder / f if not Path(f).is_absolute() else Path(f)) for r, f in modalities.items()}
        if any(not r for r in roles):
            raise InputError(f"modalities has an empty role name: {modalities!r}")
        if len(set(roles.values())) != len(roles):
            raise InputError(f"modalities names the same file for two roles: {modalities!r}")
        if len(roles) < 2:
            raise InputError(f"modalities names only the labels file; add at least one modality: {modalities!r}")
    order = [m for m in ("text", "audio", "video") if m in roles] + [
        m for m in roles if m not in ("labels", "text", "audio", "video")
    ]

    video_split: dict[str, str] | None
    if folds is not None:
        if not isinstance(folds, Mapping):
            raise InputError(f"folds must map split names to lists of video ids, got {type(folds).__name__}")
        video_split = {}
        for name, videos in folds.items():
            if isinstance(videos, str) or not all(isinstance(v, str) for v in videos):
                raise InputError(f"folds[{name!r}] must be a list of video ids (strings)")
            for v in videos:
                if video_split.setdefault(v, str(name)) != name:
                    raise InputError(f"video {v!r} is in folds {video_split[v]!r} and {name!r}")
        fold_note, fallback = "given by the caller; videos in no fold are left out", None
    else:
        video_split, fold_note = _default_folds(_transcript_folder(transcripts), transcripts is not None)
        fallback = "test" if video_split is not None else "train"
        video_split = video_split or {}

    with contextlib.ExitStack() as stack:
        files = {role: open_csd(path, stack) for role, path in roles.items()}
        labels_file = files["labels"]
        seg_ids: list[str] = []
        seg_splits: list[str] = []
        seg_labels: list[np.ndarray] = []
        seg_video: list[tuple[str, np.ndarray, int]] = []  # (video, label intervals, first row)
        left_out: list[str] = []
        width: int | None = None
        for vid in labels_file.data:
            split = video_split.get(vid, fallback)
            if split is None:
                left_out.append(vid)
                continue
            video = labels_file.open(vid)
            rows, columns = video.features.shape
            if len(seg_ids) + rows > MAX_CSD_SEGMENTS or columns > MAX_CSD_LABEL_COLUMNS:
                raise FeatureFileError(
                    f"{labels_file.path}: video {vid!r} has labels [{rows}, {columns}] after {len(seg_ids):,} "
                    "segments; "
                    f"accepted: at most {MAX_CSD_SEGMENTS:,} labelled segments in all and {MAX_CSD_LABEL_COLUMNS} "
                    "label columns"
                )
            vec, intervals = video.read()
            if width is None:
                width = vec.shape[1]
            elif vec.shape[1] != width:
                raise FeatureFileError(
                    f"{labels_file.path}: video {vid!r} has {vec.shape[1]} label columns, earlier videos {width}"
                )
            row = first_nonfinite_row(vec)
            if row is not None:
                raise FeatureFileError(
                    f"{labels_file.path}: video {vid!r}, label row {row} is not finite: {vec[row].tolist()}"
                )
            seg_video.append((vid, intervals, len(seg_ids)))
            seg_ids += [f"{vid}[{k}]" for k in range(vec.shape[0])]
            seg_splits += [split] * vec.shape[0]
            seg_labels.append(vec)
        if not seg_ids or width is None:
            raise FeatureFileError(
                f"{labels_file.path}: no labelled segments"
                + (f" in the given folds ({len(left_out)} videos in none)" if left_out else "")
            )
        if not 0 <= label_column < width:
            raise InputError(
                f"label_column {label_column} is out of range: {labels_file.path} has {width} label columns"
            )
        n = len(seg_ids)

        features: dict[str, np.ndarray] = {}
        present: dict[str, np.ndarray] = {}
        for modality in order:
            csd = files[modality]
            out: np.ndarray | None = None
            has = np.zeros(n, dtype=bool)
            videos = set(csd.data)  # names only: nothing is followed or read
            for vid, seg, first in seg_video:
                if vid not in videos:
                    continue
                feats, intervals = csd.open(vid).read()
                if out is None:
                    out = _pooled_matrix(n, feats.shape[1], csd.path)
                elif feats.shape[1] != out.shape[1]:
                    raise FeatureFileError(
                        f"{csd.path}: video {vid!r} has {feats.shape[1]} feature columns, earlier videos {out.shape[1]}"
                    )

                def describe(
                    row: int, col: int, value: float, _p: Path = csd.path, _v: str = vid, _m: str = modality
                ) -> str:
                    return (
                        f"{_p}: video {_v!r}, feature row {row}, column {col} is {value} (modality {_m!r}); "
                        f"only -inf is replaced (by 0), and only in {list(zero_neg_inf)}"
                    )

                means, ok = _overlap_means(seg, feats, intervals, describe, modality in zero_neg_inf)
                out[first : first + seg.shape[0]] = means
                has[first : first + seg.shape[0]] = ok
            if out is None:
                first_video = next(iter(csd.data), None)
                if first_video is None:
                    raise FeatureFileError(f"{csd.path}: no videos under /{csd.root}/data")
                out = _pooled_matrix(n, csd.open(first_video).features.shape[1], csd.path)
            features[modality], present[modality] = out, has
        metadata = {role: f.metadata for role, f in files.items() if f.metadata}
        file_names = {role: f.path.name for role, f in files.items()}

    labels = np.concatenate(seg_labels)
    if width == len(MOSEI_LABEL_COLUMNS):
        label_name = MOSEI_LABEL_COLUMNS[label_column]
    else:
        label_name = "sentiment" if label_column == 0 else f"label_{label_column}"
    return FeatureSet(
        features={m: torch.from_numpy(x) for m, x in features.items()},
        present=torch.from_numpy(np.stack([present[m] for m in features], axis=1)),
        labels=torch.from_numpy(labels[:, label_column].astype(np.float32)),
        ids=seg_ids,
        splits=seg_splits,
        label_names=[label_name],
        info={
            "source": "csd",
            "folder": str(folder),
            "files": file_names,
            "label_column": label_column,
            "label_width": width,
            "label_vector_columns": list(MOSEI_LABEL_COLUMNS) if width == len(MOSEI_LABEL_COLUMNS) else None,
            "pooling": "mean of the feature rows whose interval overlaps the segment interval by more than 0 s",
            "zero_neg_inf": list(zero_neg_inf),
            "absent": {m: int((~present[m]).sum()) for m in features},
            "folds": fold_note,
            "videos_without_fold": len(left_out),
            "metadata": metadata,
        },
    )
