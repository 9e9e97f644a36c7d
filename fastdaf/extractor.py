"""From utterances (text and/or audio) to the per-modality vectors a DAF head consumes.

`FeatureExtractor` is the one code path from raw inputs to features: `fastdaf extract` (training
data) and prediction both go through it, so a model sees at inference exactly the features it was
trained on. A missing modality is marked absent in the presence mask, never stored as zeros that
look like data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .audio.loading import AudioInput, load_audio
from .audio.pitch import no_speech_reason
from .choices import DEFAULT_ENCODER_BACKEND
from .data import detect_dataset_kind, load_csd_folder, load_mmsa_pickle, read_transcript_csv, read_transcript_dir
from .data.emotion import EmotionMapping, read_emotion_manifest, rows_of_speakers
from .data.manifests import ManifestRow, pending_rows, read_manifest
from .encoders import check_unicode, load_encoder, visible
from .errors import FastDAFError, InputError, ManifestError
from .features import FeatureSet, concat


@dataclasses.dataclass
class Extracted:
    """Features for N utterances, with the rows that failed and why (their features are zeros, absent)."""

    features: dict[str, torch.Tensor]
    present: torch.Tensor
    errors: list[str | None]
    notes: list[list[str]]

    def good(self) -> tuple[list[int], dict[str, torch.Tensor], torch.Tensor]:
        """The rows that encoded (indices into the input) with their features and presence: what a head or a
        feature file takes. Every caller keeps the good rows this one way; the others' reasons stay in `errors`."""
        rows = [k for k, err in enumerate(self.errors) if err is None]
        return rows, {m: x[rows] for m, x in self.features.items()}, self.present[rows]


class FeatureExtractor:
    """A text encoder and an audio encoder, loaded once, applied in batches."""

    def __init__(
        self,
        text_encoder: Any = "default",
        audio_encoder: Any = "acoustic",
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        backend: str = DEFAULT_ENCODER_BACKEND,
    ) -> None:
        def build(enc, modality):
            if enc is None:
                return None
            if isinstance(enc, (str, dict)):
                return load_encoder(enc, modality=modality, device=device, dtype=dtype, backend=backend)
            return enc

        self.text = build(text_encoder, "text")
        self.audio = build(audio_encoder, "audio")
        if self.text is None and self.audio is None:
            raise InputError("a FeatureExtractor needs a text encoder, an audio encoder, or both")

    @property
    def modalities(self) -> dict[str, int]:
        return {m: enc.dim for m, enc in (("text", self.text), ("audio", self.audio)) if enc is not None}

    def spec(self) -> dict[str, Any]:
        return {m: getattr(self, m).spec() for m in self.modalities}

    def extract(
        self,
        texts: Sequence[str | None] | None = None,
        audios: Sequence[AudioInput | None] | None = None,
        *,
        sampling_rates: Sequence[int | None] | None = None,
        names: Sequence[str] | None = None,
        strict: bool = True,
    ) -> Extracted:
        """Encode N utterances. strict=True raises the first bad input; strict=False records it per row."""
        n = len(texts) if texts is not None else len(audios) if audios is not None else 0
        for label, seq in (("texts", texts), ("audios", audios), ("sampling_rates", sampling_rates), ("names", names)):
            if seq is not None and len(seq) != n:
                raise InputError(f"{label} has {len(seq)} entries for {n} utterances")
        texts = list(texts) if texts is not None else [None] * n
        audios = list(audios) if audios is not None else [None] * n
        rates = list(sampling_rates) if sampling_rates is not None else [None] * n
        errors: list[str | None] = [None] * n
        notes: list[list[str]] = [[] for _ in range(n)]

        def fail(i: int, exc: FastDAFError) -> None:
            if strict:
                raise exc
            errors[i] = f"{type(exc).__name__}: {exc}"

        def where(i: int) -> str:
            return names[i] if names is not None else f"utterance {i}"

        def nothing_to_encode(i: int) -> InputError:
            why = "; ".join(absent[i]) or "neither text nor audio given"
            return InputError(f"{where(i)}: nothing to encode: {why}; at least one modality is needed")

        # decode and check inputs first, so one bad row cannot take its batch down
        text_rows, text_items, audio_rows, audio_items = [], [], [], []
        absent: list[list[str]] = [[] for _ in range(n)]  # why a modality that was given counts as absent
        for i in range(n):
            try:
                if texts[i] is not None:
                    if self.text is None:
                        raise InputError(f"{where(i)}: text given but this extractor has no text encoder")
                    if not isinstance(texts[i], str):
                        raise InputError(f"{where(i)}: text must be a string, got {type(texts[i]).__name__}")
                    check_unicode(texts[i], where(i))
                    if visible(self.text.normalize(texts[i])):
                        text_rows.append(i)
                        text_items.append(texts[i])
                    else:
                        absent[i].append("text empty after normalisation (no visible character)")
                if audios[i] is not None:
                    if self.audio is None:
                        raise InputError(f"{where(i)}: audio given but this extractor has no audio encoder")
                    item, why = self._audio_item(audios[i], rates[i], where(i))
                    if why is None:
                        audio_rows.append(i)
                        audio_items.append(item)
                    else:
                        absent[i].append(why)
                notes[i] += [f"{why}: treated as absent" for why in absent[i]]
                if not (text_rows and text_rows[-1] == i) and not (audio_rows and audio_rows[-1] == i):
                    raise nothing_to_encode(i)
            except FastDAFError as exc:
                fail(i, exc)
                # a row that failed on one modality contributes nothing
                for rows, items in ((text_rows, text_items), (audio_rows, audio_items)):
                    if rows and rows[-1] == i:
                        rows.pop()
                        items.pop()

        features, present = {}, torch.zeros(n, len(self.modalities), dtype=torch.bool)
        for col, (modality, rows, items) in enumerate(
            (m, r, it)
            for m, r, it in (("text", text_rows, text_items), ("audio", audio_rows, audio_items))
            if getattr(self, m) is not None
        ):
            encoder = getattr(self, modality)
            out = torch.zeros(n, encoder.dim)
            if rows:
                encoded = encoder.encode(items)
                out[rows] = encoded.vectors
                present[rows, col] = True
                for i, note in zip(rows, encoded.notes):
                    if note:
                        notes[i].append(note)
                for i, why in zip(rows, encoded.absent or ()):
                    if why is not None:  # an encoder that judges speech itself found none (judges_speech)
                        self._judged_absent(i, f"audio has no speech ({why})", col, present, absent, notes)
                        if not present[i].any():
                            fail(i, nothing_to_encode(i))
            features[modality] = out
        return Extracted(features=features, present=present, errors=errors, notes=notes)

    @staticmethod
    def _judged_absent(
        i: int, why: str, col: int, present: torch.Tensor, absent: list[list[str]], notes: list[list[str]]
    ) -> None:
        """Row i's modality `col` is absent after all: its note goes where the input checks put theirs (before
        the encoders' notes), as if no_speech_reason had said so beforehand."""
        present[i, col] = False
        notes[i].insert(len(absent[i]), f"{why}: treated as absent")
        absent[i].append(why)

    def _audio_item(self, audio: Any, rate: int | None, where: str) -> tuple[Any, str | None]:
        """The audio encoder's input for one row, or why its audio counts as absent. Whatever the encoder,
        speech is judged by the built-in voicing measure on the waveform (fastdaf.audio.pitch.no_speech_reason):
        encoded as if it were speech, silence or noise got scores as confident as speech."""
        if not self.audio.takes_waveforms:
            return audio, None  # e.g. precomputed vectors
        judged_later = getattr(self.audio, "judges_speech", False)  # one pitch track: the encoder's own
        wave = load_audio(
            audio,
            rate,
            target_rate=self.audio.sampling_rate,
            name=f"{where} audio {audio!r}" if isinstance(audio, str) else None,
        )
        reason = None if judged_later else no_speech_reason(wave.samples, wave.sampling_rate)
        return wave.samples, None if reason is None else f"audio has no speech ({reason})"


def errors_path(out: Path) -> Path:
    return out.with_name(out.name + ".errors.jsonl")


def extract_manifest(
    manifest: str | Path,
    out: str | Path,
    extractor: FeatureExtractor,
    *,
    batch_size: int = 32,
    progress: bool = True,
    allow_duplicate_ids: bool = False,
) -> dict[str, Any]:
    """Extract every row of a manifest into a feature file; resumable, bad rows reported beside it.

    Rows whose id is already in `out` are skipped (see `pending_rows`). Each batch is appended and
    the file rewritten atomically, so an interrupted run loses at most one batch. Failed rows go to
    `<out>.errors.jsonl` with their reason; a rerun retries them.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    out = Path(out)
    rows = read_manifest(manifest, allow_duplicate_ids=allow_duplicate_ids)
    done: FeatureSet | None = FeatureSet.load(out) if out.exists() else None
    if done is not None and (done.info or {}).get("encoders") != extractor.spec():
        raise ManifestError(
            f"{out} was extracted with other encoders ({(done.info or {}).get('encoders')}); write to a new file"
        )
    failures: list[dict[str, Any]] = []
    usable: list[ManifestRow] = []
    for row in rows:
        if row.label is not None and not math.isfinite(row.label):
            failures.append({"id": row.id, "line": row.line, "error": "ManifestError: label is not a finite number"})
        else:
            usable.append(row)
    todo = pending_rows(usable, (done.ids or []) if done is not None else [])
    skipped = len(usable) - len(todo)
    start = time.perf_counter()
    bar = None
    if progress:
        bar = tqdm(total=len(todo), desc="extracting", unit="utt", disable=None)
    succeeded = 0
    has_labels = any(r.label is not None for r in rows)
    has_splits = any(r.split is not None for r in rows)
    for b in range(0, len(todo), batch_size):
        batch = todo[b : b + batch_size]
        result = extractor.extract(
            [r.text for r in batch],
            [r.audio for r in batch],
            names=[f"id {r.id!r} (line {r.line})" for r in batch],
            strict=False,
        )
        good, features, present = result.good()
        failures += [
            {"id": batch[k].id, "line": batch[k].line, "error": err}
            for k, err in enumerate(result.errors)
            if err is not None
        ]
        if good:
            new = FeatureSet(
                features=features,
                present=present,
                labels=torch.tensor([batch[k].label if batch[k].label is not None else math.nan for k in good])
                if has_labels
                else None,
                ids=[batch[k].id for k in good],
                splits=[batch[k].split or "" for k in good] if has_splits else None,
                info={"encoders": extractor.spec()},
            )
            done = new if done is None else _append(done, new, out)
            done.save(out)
            succeeded += len(good)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    report = errors_path(out)
    if failures:
        report.write_text("".join(json.dumps(f) + "\n" for f in failures))
    elif report.exists():
        report.unlink()
    seconds = time.perf_counter() - start
    return {
        "output": str(out),
        "rows": len(rows),
        "succeeded": succeeded,
        "skipped_already_done": skipped,
        "failed": len(failures),
        "error_report": str(report) if failures else None,
        "seconds": round(seconds, 3),
        "utterances_per_s": round(succeeded / seconds, 2) if seconds > 0 and succeeded else None,
    }


def _append(done: FeatureSet, new: FeatureSet, out: Path) -> FeatureSet:
    if (done.labels is None) != (new.labels is None) or (done.splits is None) != (new.splits is None):
        raise ManifestError(
            f"{out} holds rows with different label/split columns than this manifest; write to a new file"
        )
    return concat([done, new])


def load_data(
    path: str | Path,
    *,
    encoders: Mapping[str, Any] | None = None,
    progress: bool = False,
    emotion_mapping: EmotionMapping | None = None,
    splits: Collection[str] | None = None,
    speakers: Collection[str] | None = None,
) -> FeatureSet:
    """Any dataset fastdaf reads, as pooled features: the one dispatch the CLI uses.

    Feature files, MMSA pickles and .csd folders hold features already. Transcript CSVs hold text:
    it is encoded with `encoders["text"]` (a spec as recorded in a checkpoint; default: the default
    text encoder), and any other modality of `encoders` is stored as absent for every row. Emotion-labelled
    speech (fastdaf.data.emotion) is encoded with `encoders` (text and audio), labelled by `emotion_mapping`
    (default: the default mapping); its info records the mapping and each row's emotion and speaker by id.
    `splits` (transcripts) and `speakers` (emotion-labelled speech) encode only those rows, where the data has them:
    evaluating one split or three actors need not encode the rest.
    """
    kind = detect_dataset_kind(path)
    if kind == "features":
        return FeatureSet.load(path)
    if kind == "mmsa":
        return load_mmsa_pickle(path)
    if kind == "csd":
        return load_csd_folder(path)
    if kind == "emotion":
        return _load_emotion_data(path, encoders, emotion_mapping or EmotionMapping(), progress, speakers)
    rows = read_transcript_dir(path) if Path(path).is_dir() else read_transcript_csv(path)
    if splits is not None and any(r.split in splits for r in rows):  # else the caller's split() names what there is
        rows = [r for r in rows if r.split in splits]
    encoders = dict(encoders or {"text": "default"})
    if "text" not in encoders:
        raise InputError(f"{path} holds transcripts, but the model has no text encoder (it has {sorted(encoders)})")
    extractor = FeatureExtractor(encoders["text"], encoders.get("audio"))
    texts = [r.text for r in rows]
    vectors, present, keep = [], [], []
    iterator = range(0, len(rows), 256)
    if progress:
        iterator = tqdm(iterator, desc="encoding transcripts", unit="batch", disable=None)
    for start in iterator:
        out = extractor.extract(
            texts[start : start + 256], None, names=[r.id for r in rows[start : start + 256]], strict=False
        )
        ok, features, mask = out.good()
        vectors.append(features)
        present.append(mask)
        keep += [start + k for k in ok]
    features = {m: torch.cat([v[m] for v in vectors]) for m in extractor.modalities}
    return FeatureSet(
        features=features,
        present=torch.cat(present),
        labels=torch.tensor([rows[i].label for i in keep], dtype=torch.float32),
        ids=[rows[i].id for i in keep],
        splits=[rows[i].split for i in keep],
        info={"encoders": extractor.spec(), "dropped_rows": len(rows) - len(keep), "source": str(path)},
    )


def _load_emotion_data(
    path: str | Path,
    encoders: Mapping[str, Any] | None,
    mapping: EmotionMapping,
    progress: bool,
    speakers: Collection[str] | None,
) -> FeatureSet:
    rows, skipped = read_emotion_manifest(path, mapping)
    if speakers is not None:
        rows = [rows[i] for i in rows_of_speakers([r.speaker for r in rows], speakers, path)]
    encoders = dict(encoders or {"text": "default", "audio": "acoustic"})
    extractor = FeatureExtractor(encoders.get("text"), encoders.get("audio"))
    batches = range(0, len(rows), 32)
    if progress:
        batches = tqdm(batches, desc="encoding emotion-labelled speech", unit="batch", disable=None)
    parts, keep = [], []
    for start in batches:
        chunk = rows[start : start + 32]
        texts = [r.text for r in chunk] if extractor.text is not None else None
        audios = [r.audio for r in chunk] if extractor.audio is not None else None
        out = extractor.extract(texts, audios, names=[r.id for r in chunk], strict=False)
        ok, features, present = out.good()
        parts.append((features, present))
        keep += [start + k for k in ok]
    kept = [rows[i] for i in keep]
    return FeatureSet(
        features={m: torch.cat([f[m] for f, _ in parts]) for m in extractor.modalities},
        present=torch.cat([p for _, p in parts]),
        labels=torch.tensor([r.label for r in kept], dtype=torch.float32),
        ids=[r.id for r in kept],
        info={
            "encoders": extractor.spec(),
            "source": str(path),
            "dropped_rows": len(rows) - len(kept),
            "emotion_mapping": mapping.to_dict(),
            "skipped_emotions": dict(skipped),
            "emotions": {r.id: r.emotion for r in kept},
            "speakers": {r.id: r.speaker for r in kept},
        },
    )
