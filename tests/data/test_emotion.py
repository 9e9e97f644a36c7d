"""Emotion-labelled speech: the manifest reader, the mapping to the CMU-MOSEI scale, speaker splits, and
`fastdaf eval` on such data (the mapping printed, rows chosen by speaker); the emotion metrics are in
test_metrics.py."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from fastdaf.cli import main
from fastdaf.data import EmotionMapping, detect_dataset_kind, read_emotion_manifest, speaker_splits
from fastdaf.errors import ManifestError


def test_ravdess_folder_reads_with_the_default_mapping(shared_data):
    folder = shared_data / "emotional-speech" / "ravdess"
    assert detect_dataset_kind(folder) == "emotion" and detect_dataset_kind(folder / "manifest.csv") == "emotion"
    rows, skipped = read_emotion_manifest(folder)
    assert skipped == Counter({"surprised": 144})  # 18 actors x 8 clips: left out, never guessed
    assert len(rows) == 1080 - 144 and len({r.speaker for r in rows}) == 18
    labels = {(r.emotion, r.intensity): r.label for r in rows}
    assert labels[("happy", "normal")] == 1.5 and labels[("happy", "strong")] == 2.25
    assert labels[("angry", "strong")] == -2.25 and labels[("calm", "strong")] == 0.0
    assert all(r.text in ("Kids are talking by the door", "Dogs are sitting by the door") for r in rows)
    assert all(r.audio.endswith(".flac") and r.audio.startswith(str(folder.resolve())) for r in rows)


def test_generic_manifest_and_a_mapping_of_ones_own(tmp_path):
    manifest = tmp_path / "clips.jsonl"
    lines = [
        {"id": "a", "audio": "a.wav", "emotion": "Happy", "intensity": "strong", "speaker": "s1"},
        {"id": "b", "audio": "b.wav", "emotion": "sad", "speaker": "s2", "text": "fine"},
        {"id": "c", "audio": "c.wav", "emotion": "bored", "speaker": "s2"},
    ]
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert detect_dataset_kind(manifest) == "emotion"
    mapping = EmotionMapping({"happy": 2.0, "sad": -1.0, "bored": -0.5}, {"normal": 1.0, "strong": 2.0})
    rows, skipped = read_emotion_manifest(manifest, mapping)
    assert [(r.id, r.label, r.speaker, r.text) for r in rows] == [
        ("a", 3.0, "s1", None),  # 2.0 x 2 clipped to the scale's end
        ("b", -1.0, "s2", "fine"),
        ("c", -0.5, "s2", None),
    ]
    assert not skipped and rows[0].audio == str(tmp_path / "a.wav")
    saved = tmp_path / "mapping.json"
    saved.write_text(json.dumps(mapping.to_dict()))
    assert EmotionMapping.load(saved) == mapping
    assert "happy +2" in mapping.describe() and "strong x2" in mapping.describe()


@pytest.mark.parametrize(
    "line, message",
    [
        ({"id": "a", "audio": "a.wav"}, "no emotion; an emotion manifest needs id, audio and emotion"),
        ({"id": "a", "audio": "a.wav", "emotion": "happy", "intensity": "extreme"}, "intensity 'extreme' is not in"),
    ],
)
def test_bad_rows_are_refused_naming_the_line(tmp_path, line, message):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "z", "audio": "z.wav", "emotion": "sad"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(ManifestError, match=rf"m.jsonl:2: .*{message}"):
        read_emotion_manifest(manifest)


def test_manifests_without_usable_rows_or_with_repeats_are_refused(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,audio,emotion\na,a.wav,surprised\n")
    with pytest.raises(ManifestError, match="no row has an emotion the mapping names"):
        read_emotion_manifest(manifest)
    manifest.write_text("id,audio,emotion\na,a.wav,sad\na,b.wav,sad\n")
    with pytest.raises(ManifestError, match="m.csv:3: id 'a' appears more than once"):
        read_emotion_manifest(manifest)
    with pytest.raises(ManifestError, match="an emotion mapping is"):
        EmotionMapping.from_dict({"happy": 1})


def test_splits_go_by_speaker_only(shared_data):
    rows, _ = read_emotion_manifest(shared_data / "emotional-speech" / "ravdess")
    splits = speaker_splits([r.speaker for r in rows], valid=["13", "14", "15"], test=[16, 17, 18])
    by_speaker = {}
    for row, split in zip(rows, splits):
        by_speaker.setdefault(row.speaker, set()).add(split)
    assert all(len(s) == 1 for s in by_speaker.values())  # never a speaker in two splits
    assert {k for k, v in by_speaker.items() if v == {"test"}} == {"16", "17", "18"}
    with pytest.raises(ManifestError, match=r"speakers \['16'\] are in both"):
        speaker_splits([r.speaker for r in rows], valid=["16"], test=["16"])
    with pytest.raises(ManifestError, match=r"speakers \['99'\] are not in the data"):
        speaker_splits([r.speaker for r in rows], test=["99"])
    with pytest.raises(ManifestError, match="1 row.* have no speaker; splits go by speaker, never by clip"):
        speaker_splits(["1", None], test=["1"])


def arctic_emotions(folder, shared_data):
    """Six ARCTIC clips with invented emotions, two speakers (aew, axb): a small emotion-labelled dataset."""
    folder.mkdir(exist_ok=True)
    clips = sorted((shared_data / "speech").glob("*.wav"))
    emotions = ["happy", "sad", "neutral", "angry", "happy", "calm"]
    lines = ["id,audio,text,emotion,speaker"]
    for clip, emotion in zip(clips, emotions):
        shutil.copy(clip, folder / clip.name)
        lines.append(f"{clip.stem},{clip.name},it was a day,{emotion},{clip.stem.split('_')[3]}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_eval_on_emotion_labelled_speech_prints_the_mapping_and_chooses_speakers(tmp_path, shared_data, capsys):
    """Scored by the bundled model."""
    arctic_emotions(tmp_path, shared_data)
    assert main(["eval", str(tmp_path), "--speakers", "axb", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["emotion_mapping"] == EmotionMapping().to_dict()
    assert set(result["emotions"]["per_emotion"]) == {"angry", "happy", "calm"}  # speaker axb's three clips
    assert sum(e["rows"] for e in result["emotions"]["per_emotion"].values()) == 3
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"scores": {"happy": 1.0, "sad": -1.0, "angry": -1.0}}))
    assert main(["eval", str(tmp_path), "--emotion-mapping", str(mapping)]) == 0
    out = capsys.readouterr().out
    assert "emotion -> sentiment: happy +1, angry -1, sad -1" in out and "balanced_acc" in out
    assert main(["eval", str(tmp_path), "--plot", str(tmp_path / "eval.png")]) == 0  # + score/weight by emotion
    assert (tmp_path / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["eval", str(tmp_path), "--speakers", "nobody"]) == 2
    assert "no rows of speakers ['nobody']" in capsys.readouterr().err


def test_train_on_emotion_labelled_speech_splits_by_speaker_and_records_the_mapping(tmp_path, shared_data, capsys):
    data = arctic_emotions(tmp_path / "data", shared_data)
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"scores": {"happy": 2.0, "sad": -2.0, "angry": -1.0, "neutral": 0, "calm": 0}}))
    out = tmp_path / "head"
    args = ["train", str(data), "--out", str(out), "--epochs", "3", "--json", "--audio-encoder", "acoustic"]
    assert main([*args, "--valid-speakers", "axb", "--emotion-mapping", str(mapping)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["extra"]["emotion_mapping"]["scores"]["happy"] == 2.0
    assert config["extra"]["encoders"]["audio"]["kind"] == "acoustic"
    capsys.readouterr()
    assert main(["eval", str(data), "--checkpoint", str(out), "--speakers", "axb"]) == 0
    assert "emotion -> sentiment: happy +2, calm +0, neutral +0, angry -1, sad -2" in capsys.readouterr().out
    assert main(args) == 2  # no speakers: there is no split to select on
    assert "has no train/valid splits; for emotion-labelled speech give --valid-speakers" in capsys.readouterr().err


def test_detection_reads_only_manifests_as_text(tmp_path, monkeypatch):
    """A feature file or pickle is told by its suffix; it is never opened as a manifest."""
    from pathlib import Path

    names = ("data.safetensors", "aligned_50.pkl")
    for name in names:
        (tmp_path / name).write_bytes(b"\x00\xff" * 64)
    opened = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self.name) or real_open(self, *a, **k))
    assert [detect_dataset_kind(tmp_path / name) for name in names] == ["features", "mmsa"]
    assert opened == []
    (tmp_path / "clips.jsonl").write_text('\n{"id": "a", "audio": "a.wav", "emotion": "sad"}\n')
    assert detect_dataset_kind(tmp_path / "clips.jsonl") == "emotion"


def test_missing_or_unreadable_inputs_are_named(tmp_path):
    with pytest.raises(ManifestError, match=f"{tmp_path} holds no manifest.csv or manifest.jsonl"):
        read_emotion_manifest(tmp_path)
    (tmp_path / "clips.tsv").write_text("id\taudio\temotion\n")
    with pytest.raises(ManifestError, match=r"clips.tsv: an emotion manifest is .csv or .jsonl, got '.tsv'"):
        read_emotion_manifest(tmp_path / "clips.tsv")
    (tmp_path / "mapping.json").write_text("{not json")
    with pytest.raises(ManifestError, match="cannot read the emotion mapping '.*mapping.json'"):
        EmotionMapping.load(tmp_path / "mapping.json")
    with pytest.raises(ManifestError, match="cannot read the emotion mapping '.*absent.json'"):
        EmotionMapping.load(tmp_path / "absent.json")


def test_only_the_rows_evaluated_are_encoded(tmp_path, shared_data, monkeypatch):
    """`eval --speakers` / `--split` encode those rows only (three actors of eighteen, one fold of two)."""
    from fastdaf.errors import InputError
    from fastdaf.extractor import FeatureExtractor, load_data

    encoded = []
    real_extract = FeatureExtractor.extract
    monkeypatch.setattr(
        FeatureExtractor,
        "extract",
        lambda self, texts, *a, **k: encoded.extend(k["names"]) or real_extract(self, texts, *a, **k),
    )
    data = load_data(arctic_emotions(tmp_path / "emo", shared_data), speakers=["axb"])
    assert len(data) == 3 and set(data.info["speakers"].values()) == {"axb"} and sorted(encoded) == sorted(data.ids)
    with pytest.raises(InputError, match=r"no rows of speakers \['nobody'\]; it has \['aew', 'axb'\]"):
        load_data(tmp_path / "emo", speakers=["nobody"])
    folder = tmp_path / "mosei"
    folder.mkdir()
    for split in ("train", "valid"):
        (folder / f"{split}.csv").write_text(
            f",sentence,polarity\n{split}1,a fine {split} day,1.0\n{split}2,bad,-1.0\n"
        )
    encoded.clear()
    data = load_data(folder, splits=("valid",))
    assert data.splits == ["valid", "valid"] and encoded == ["valid1", "valid2"]
    assert len(load_data(folder, splits=("test",))) == 4  # no such split: every row, and split() names those there are
