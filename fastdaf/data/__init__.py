"""Readers for the public multimodal-sentiment dataset formats, turned into fastdaf rows, and manifests of utterances.

Three sources are read. Every malformed file raises `FeatureFileError` (or a subclass) whose message
names the file, the place in it (line, split, video, row) and what was expected against what was found;
bad arguments raise `InputError`.

- `transcripts`: CMU-MOSEI transcript CSVs (`read_mosei_transcripts`, `read_transcript_csv`, `read_transcript_dir`).
- `mmsa`: MMSA processed pickles (`load_mmsa_pickle`), read through `safe_pickle` (nothing in the file runs).
- `csd`: CMU-MultimodalSDK computational-sequence folders (`load_csd_folder`).
- `manifests`: the CSV/JSONL lists of utterances that `fastdaf extract` and `fastdaf predict --manifest` read.
- `emotion`: emotion-labelled speech (a RAVDESS folder, or a CSV/JSONL with an `emotion` column) with the one
  mapping from emotion to the CMU-MOSEI scale (`EmotionMapping`) and splits by speaker.

`detect_dataset_kind(path)` (here) tells which reader fits a path; `fastdaf.extractor.load_data` reads any
of them as features, encoding transcripts.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FeatureFileError
from .csd import infer_csd_modalities, load_csd_folder
from .emotion import (
    EmotionMapping,
    EmotionRow,
    has_emotion_column,
    read_emotion_manifest,
    rows_of_speakers,
    speaker_splits,
)
from .manifests import ManifestRow, pending_rows, read_manifest
from .mmsa import load_mmsa_pickle
from .safe_pickle import SafeUnpickler, UnsafePickleError, safe_load_pickle
from .transcripts import (
    MOSEI_EMOTIONS,
    MOSEI_LABEL_COLUMNS,
    TranscriptRow,
    read_mosei_transcripts,
    read_transcript_csv,
    read_transcript_dir,
)

DATASET_KINDS: tuple[str, ...] = ("features", "mmsa", "csd", "transcripts", "emotion")


def detect_dataset_kind(path: str | Path) -> str:
    """Which reader fits a path: "features", "mmsa", "csd", "transcripts" or "emotion" (see DATASET_KINDS).

    Lets the CLI accept any supported dataset path without a format flag. A folder holding .csd files is
    "csd" even if it also holds .csv files (e.g. fold lists next to the sequences).
    """
    p = Path(path)
    accepted = (
        "accepted: a .safetensors fastdaf feature file (features), an MMSA .pkl (mmsa), a folder of "
        "CMU-MultimodalSDK .csd files (csd), a transcript .csv or a folder of them (transcripts), a .csv/.jsonl with "
        "an emotion column or a folder with such a manifest.csv (emotion)"
    )
    if has_emotion_column(p):
        return "emotion"
    if p.is_file():
        suffix = p.suffix.lower()
        kind = {".safetensors": "features", ".pkl": "mmsa", ".pickle": "mmsa", ".csv": "transcripts"}.get(suffix)
        if kind:
            return kind
        hint = "; pass the folder holding the .csd files and the labels file" if suffix == ".csd" else ""
        raise FeatureFileError(
            f"cannot tell what kind of dataset {p} is (suffix {suffix or 'none'!r}){hint}; {accepted}"
        )
    if p.is_dir():
        suffixes = {c.suffix.lower() for c in p.iterdir() if c.is_file()}
        if ".csd" in suffixes:
            return "csd"
        if ".csv" in suffixes:
            return "transcripts"
        raise FeatureFileError(f"{p} is a folder with no .csd or .csv files; {accepted}")
    raise FeatureFileError(f"no dataset at {str(p)!r}; {accepted}")


__all__ = [
    "EmotionMapping",
    "EmotionRow",
    "MOSEI_EMOTIONS",
    "MOSEI_LABEL_COLUMNS",
    "infer_csd_modalities",
    "DATASET_KINDS",
    "ManifestRow",
    "SafeUnpickler",
    "TranscriptRow",
    "UnsafePickleError",
    "detect_dataset_kind",
    "load_csd_folder",
    "load_mmsa_pickle",
    "pending_rows",
    "read_emotion_manifest",
    "rows_of_speakers",
    "read_manifest",
    "speaker_splits",
    "read_mosei_transcripts",
    "read_transcript_csv",
    "read_transcript_dir",
    "safe_load_pickle",
]
