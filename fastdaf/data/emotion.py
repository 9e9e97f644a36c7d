"""Emotion-labelled speech as sentiment data: manifests with an emotion per clip, mapped to the CMU-MOSEI scale.

Read (`read_emotion_manifest`): a RAVDESS-style folder (its `manifest.csv`), or any CSV/JSONL with the columns
`id`, `audio` (a path relative to the manifest), `emotion`, and optionally `text`, `intensity` and `speaker` (RAVDESS
names it `actor`). Emotions and intensities are compared lower-case.

The mapping (`EmotionMapping`, one place, stored in a checkpoint's config and printed by `fastdaf eval`) is a
modelling choice, not a measurement: an emotion at normal intensity gets `scores[emotion]`, scaled by
`intensity_scale[intensity]`, clipped to [-3, 3]. The default: happy +1.5 (MOSEI's "positive" lies between +1 and
+2); sad, angry, fearful and disgust -1.5 (unpleasant: negative whatever their arousal); neutral and calm 0;
strong intensity x1.5 (so +-2.25). Surprised is left out (pleasant or not depending on the clip), and so is any
emotion the mapping does not name: such rows are skipped and counted, never guessed.

Splits go by speaker, never by clip: clips of one speaker are near-duplicates in voice and often in sentence, so a
clip-level split would score the model on voices it trained on. `speaker_splits` refuses rows without a speaker.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, ManifestError

DEFAULT_SCORES = {
    "happy": 1.5,
    "neutral": 0.0,
    "calm": 0.0,
    "sad": -1.5,
    "angry": -1.5,
    "fearful": -1.5,
    "disgust": -1.5,
}
DEFAULT_INTENSITY_SCALE = {"normal": 1.0, "strong": 1.5}
SPEAKER_COLUMNS = ("speaker", "actor")
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")


@dataclasses.dataclass(frozen=True)
class EmotionMapping:
    """Emotion (and intensity) -> CMU-MOSEI sentiment score; see the module docstring for the default's reasons."""

    scores: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SCORES))
    intensity_scale: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_INTENSITY_SCALE))

    def score(self, emotion: str, intensity: str | None = None) -> float | None:
        """The mapped score, or None for an emotion the mapping leaves out."""
        base = self.scores.get(emotion.lower())
        if base is None:
            return None
        scale = 1.0 if intensity is None else self.intensity_scale.get(intensity.lower())
        if scale is None:
            raise ManifestError(
                f"intensity {intensity!r} is not in the mapping; accepted: {sorted(self.intensity_scale)}"
            )
        return max(-3.0, min(3.0, base * scale))

    def to_dict(self) -> dict[str, Any]:
        return {"scores": dict(self.scores), "intensity_scale": dict(self.intensity_scale)}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "EmotionMapping":
        """From to_dict()'s record (a checkpoint's config, or a JSON file of the user's)."""
        try:
            scores = {str(k).lower(): float(v) for k, v in record["scores"].items()}
            scale = {str(k).lower(): float(v) for k, v in record.get("intensity_scale", {"normal": 1.0}).items()}
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise ManifestError(
                'an emotion mapping is {"scores": {emotion: score}, "intensity_scale": {intensity: factor}}, '
                f"got {str(record)[:200]}"
            ) from exc
        return cls(scores, scale)

    @classmethod
    def load(cls, path: str | Path) -> "EmotionMapping":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ManifestError(f"cannot read the emotion mapping {str(path)!r}: {exc}") from exc

    def describe(self) -> str:
        """One line for `fastdaf eval`."""
        scores = ", ".join(f"{e} {s:+g}" for e, s in sorted(self.scores.items(), key=lambda kv: (-kv[1], kv[0])))
        scale = ", ".join(f"{k} x{v:g}" for k, v in self.intensity_scale.items())
        return f"emotion -> sentiment: {scores}; intensity: {scale}; other emotions skipped"


@dataclasses.dataclass(frozen=True)
class EmotionRow:
    id: str
    audio: str  # absolute path
    text: str | None
    emotion: str
    intensity: str | None
    speaker: str | None
    label: float


def manifest_file(path: str | Path) -> Path:
    """The manifest of an emotion dataset: the file itself, or a folder's manifest.csv / manifest.jsonl."""
    path = Path(path)
    if path.is_dir():
        for name in ("manifest.csv", "manifest.jsonl"):
            if (path / name).is_file():
                return path / name
        raise ManifestError(f"{path} holds no manifest.csv or manifest.jsonl")
    return path


def has_emotion_column(path: str | Path) -> bool:
    """Whether a CSV/JSONL (or a folder's manifest) has an `emotion` column: how the CLI tells emotion data."""
    try:
        file = manifest_file(path)
        if file.suffix.lower() not in MANIFEST_SUFFIXES:  # feature files and pickles are never read as text here
            return False
        with file.open(encoding="utf-8-sig", newline="") as f:
            if file.suffix.lower() == ".csv":
                return "emotion" in (next(csv.reader(f), None) or [])
            first = next((line for line in f if line.strip()), "")
            return "emotion" in json.loads(first) if first else False
    except (OSError, ManifestError, json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError):
        return False


def _records(file: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    if file.suffix.lower() == ".csv":
        with file.open(encoding="utf-8-sig", newline="") as f:
            yield from enumerate(csv.DictReader(f), start=2)
    elif file.suffix.lower() in (".jsonl", ".ndjson"):
        for number, line in enumerate(file.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ManifestError(f"{file}:{number}: not valid JSON ({exc})") from exc
    else:
        raise ManifestError(f"{file}: an emotion manifest is .csv or .jsonl, got {file.suffix or 'no suffix'!r}")


def read_emotion_manifest(path: str | Path, mapping: EmotionMapping | None = None) -> tuple[list[EmotionRow], Counter]:
    """Rows with a mapped label, and the count of rows skipped per emotion the mapping leaves out."""
    mapping = mapping or EmotionMapping()
    file = manifest_file(path)
    if not file.is_file():
        raise ManifestError(f"no emotion manifest at {str(file)!r}")
    rows, skipped, seen = [], Counter(), set()
    for number, record in _records(file):
        where = f"{file}:{number}"
        cells = {k: (str(v).strip() if v is not None else "") for k, v in record.items() if k}
        missing = [c for c in ("id", "audio", "emotion") if not cells.get(c)]
        if missing:
            raise ManifestError(f"{where}: no {', '.join(missing)}; an emotion manifest needs id, audio and emotion")
        if cells["id"] in seen:
            raise ManifestError(f"{where}: id {cells['id']!r} appears more than once")
        seen.add(cells["id"])
        emotion, intensity = cells["emotion"].lower(), (cells.get("intensity") or "").lower() or None
        try:
            label = mapping.score(emotion, intensity)
        except ManifestError as exc:
            raise ManifestError(f"{where}: {exc}") from exc
        if label is None:
            skipped[emotion] += 1
            continue
        speaker = next((cells[c] for c in SPEAKER_COLUMNS if cells.get(c)), None)
        audio = (file.parent / cells["audio"]).resolve()
        rows.append(EmotionRow(cells["id"], str(audio), cells.get("text") or None, emotion, intensity, speaker, label))
    if not rows:
        raise ManifestError(f"{file}: no row has an emotion the mapping names ({sorted(mapping.scores)})")
    return rows, skipped


def speaker_splits(speakers: Sequence[str | None], *, valid: Iterable[str] = (), test: Iterable[str] = ()) -> list[str]:
    """Each row's split ("train", "valid" or "test") from its speaker only: listed speakers go to valid or test."""
    valid, test = {str(s) for s in valid}, {str(s) for s in test}
    if valid & test:
        raise ManifestError(f"speakers {sorted(valid & test)} are in both the valid and the test split")
    unspeaking = sum(s is None for s in speakers)
    if unspeaking:
        raise ManifestError(
            f"{unspeaking} row(s) have no speaker; splits go by speaker, never by clip: add a speaker column"
        )
    known = set(speakers)
    unknown = sorted((valid | test) - known)
    if unknown:
        raise ManifestError(f"speakers {unknown} are not in the data; it has {sorted(known, key=natural_order)}")
    return ["valid" if s in valid else "test" if s in test else "train" for s in speakers]


def rows_of_speakers(speakers: Sequence[str | None], wanted: Iterable[str], source: object) -> list[int]:
    """Indices of the rows spoken by `wanted`; a wanted speaker without rows is refused, naming those there are."""
    wanted = {str(s) for s in wanted}
    unknown = sorted(wanted - set(speakers), key=natural_order)
    if unknown:
        known = sorted({s for s in speakers if s is not None}, key=natural_order)
        raise InputError(f"{source}: no rows of speakers {unknown}; it has {known}")
    return [i for i, s in enumerate(speakers) if s in wanted]


def natural_order(text: str) -> tuple:
    """Sort key putting "2" before "10" (actor numbers) and names after numbers."""
    text = str(text)
    return (0, int(text)) if text.isdigit() else (1, text)
