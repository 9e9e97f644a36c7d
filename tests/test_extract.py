import csv
import json
import shutil

import numpy as np
import pytest
import soundfile
import torch
import torchaudio
from builders import BAD_TEXT, RATE, non_speech, speech_clips

from fastdaf.cli import main as cli_main
from fastdaf.encoders import Encoded
from fastdaf.errors import AudioNotFoundError, InputError
from fastdaf.examples import ARCTIC_PROMPTS as PROMPTS
from fastdaf.extractor import FeatureExtractor, errors_path, extract_manifest
from fastdaf.features import FeatureSet


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor()  # the defaults: MiniLM text + built-in acoustic features


@pytest.fixture
def corpus(tmp_path, shared_data):
    audio = tmp_path / "audio"
    audio.mkdir()
    for name in PROMPTS:
        shutil.copy(shared_data / "speech" / f"cmu_arctic_us_{name}.wav", audio / f"{name}.wav")
    (audio / "corrupt.wav").write_bytes(b"RIFF" + b"\x00" * 64)
    rows = [
        ("u1", PROMPTS["aew_a0001"], "audio/aew_a0001.wav", "1.0", "train"),
        ("u2", PROMPTS["aew_a0002"], "", "-0.5", "train"),  # text only
        ("u3", "", "audio/axb_a0004.wav", "2", "valid"),  # audio only
        ("bad_missing", "hello there", "audio/nope.wav", "0", "train"),
        ("bad_corrupt", "hello there", "audio/corrupt.wav", "0", "train"),
        ("bad_empty", "sp sp", "", "0", "train"),
        ("bad_label", "fine text", "", "very positive", "train"),
        ("u4", PROMPTS["axb_a0005"], str(audio / "axb_a0005.wav"), "", "valid"),  # absolute path, no label
    ]
    path = tmp_path / "manifest.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "audio", "label", "split"])
        writer.writerows(rows)
    return path


def test_manifest_with_bad_rows(corpus, tmp_path, extractor):
    out = tmp_path / "features.safetensors"
    summary = extract_manifest(corpus, out, extractor, batch_size=3, progress=False)
    assert (summary["rows"], summary["succeeded"], summary["failed"], summary["skipped_already_done"]) == (8, 4, 4, 0)
    data = FeatureSet.load(out)
    assert data.ids == ["u1", "u2", "u3", "u4"] and data.splits == ["train", "train", "valid", "valid"]
    assert data.modalities == {"text": 384, "audio": extractor.audio.dim}
    assert data.present.tolist() == [[True, True], [True, False], [False, True], [True, True]]
    assert torch.all(data.features["audio"][1] == 0) and torch.all(data.features["text"][2] == 0)
    assert data.labels[:3].tolist() == [1.0, -0.5, 2.0] and torch.isnan(data.labels[3])
    assert data.info["encoders"] == extractor.spec()
    report = [json.loads(line) for line in errors_path(out).read_text().splitlines()]
    reasons = {r["id"]: r["error"] for r in report}
    assert set(reasons) == {
        "bad_missing",
        "bad_corrupt",
        "bad_empty",
        "bad_label",
    }  # (duplicate ids: data/test_manifests.py)
    assert reasons["bad_missing"].startswith("AudioNotFoundError") and "nope.wav" in reasons["bad_missing"]
    assert reasons["bad_corrupt"].startswith("AudioDecodeError") and "corrupt.wav" in reasons["bad_corrupt"]
    assert "empty after normalisation" in reasons["bad_empty"]
    assert "label" in reasons["bad_label"]
    assert all("line" in r for r in report)

    # the file holds exactly what the Python API computes for the same utterances
    api = extractor.extract([PROMPTS["aew_a0001"]], [str(corpus.parent / "audio" / "aew_a0001.wav")])
    torch.testing.assert_close(api.features["text"][0], data.features["text"][0])
    torch.testing.assert_close(api.features["audio"][0], data.features["audio"][0])

    # a rerun skips finished rows; fixing a bad row gets it extracted
    again = extract_manifest(corpus, out, extractor, progress=False)
    assert (again["succeeded"], again["skipped_already_done"], again["failed"]) == (0, 4, 4)
    shutil.copy(corpus.parent / "audio" / "aew_a0001.wav", corpus.parent / "audio" / "nope.wav")
    fixed = extract_manifest(corpus, out, extractor, progress=False)
    assert (fixed["succeeded"], fixed["failed"]) == (1, 3)
    assert FeatureSet.load(out).ids == ["u1", "u2", "u3", "u4", "bad_missing"]


def test_jsonl_manifest_and_cli(tmp_path, shared_data, capsys):
    clip = shared_data / "speech" / "cmu_arctic_us_axb_a0005.wav"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "a", "text": "will we ever forget it", "audio": str(clip), "label": 0.5},
                {"id": "b", "text": "i love it", "label": "2.5"},
            ]
        )
        + "\n"
    )
    out = tmp_path / "f.safetensors"
    assert cli_main(["extract", str(manifest), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["succeeded"] == 2 and summary["failed"] == 0 and summary["error_report"] is None
    assert FeatureSet.load(out).labels.tolist() == [0.5, 2.5]
    assert cli_main(["extract", str(tmp_path / "none.csv"), "--out", str(out)]) == 2
    assert "no manifest at" in capsys.readouterr().err


def test_extract_api_strict_and_absent_modalities(extractor, shared_data):
    clip = str(shared_data / "speech" / "cmu_arctic_us_aew_a0003.wav")
    out = extractor.extract(["For the twentieth time that evening", None], [None, clip])
    assert out.present.tolist() == [[True, False], [False, True]] and out.errors == [None, None]
    with pytest.raises(AudioNotFoundError, match="missing.wav"):
        extractor.extract(["x"], ["missing.wav"])
    with pytest.raises(InputError, match="neither text nor audio"):
        extractor.extract([None], [None])
    lenient = extractor.extract(["fine", "also fine"], ["missing.wav", None], strict=False)
    assert lenient.errors[0].startswith("AudioNotFoundError") and lenient.errors[1] is None
    assert lenient.present.tolist() == [[False, False], [True, False]]


def test_same_clip_in_any_format_gives_the_same_features(extractor, shared_data, tmp_path):
    """The same recording at 16/22.05/44.1/48 kHz, mono/stereo, int16/float32, wav/flac gives the same
    features within 10% (norm-wise, each feature scaled by max(|value|, 1); measured worst 6.4% over
    the six clips, from the resampling round trip). 8 kHz audio has no 4-8 kHz band, so only its
    prosodic features (pitch, voicing, energy) are comparable: within 8% (measured worst 4%)."""
    from fastdaf.audio.acoustic import FEATURE_NAMES

    samples, rate = soundfile.read(shared_data / "speech" / "cmu_arctic_us_aew_a0001.wav", dtype="float32")
    variants = {}
    for target in (8000, 16000, 22050, 44100, 48000):
        wave = (
            torchaudio.functional.resample(torch.from_numpy(samples), rate, target).numpy()
            if target != rate
            else samples
        )
        for fmt, subtype, stereo in (("wav", "PCM_16", False), ("flac", "PCM_16", True), ("wav", "FLOAT", True)):
            data = np.stack([wave, wave], axis=1) if stereo else wave
            path = tmp_path / f"{target}_{subtype}_{int(stereo)}.{fmt}"
            soundfile.write(path, data, target, subtype=subtype)
            variants[path.name] = (target, str(path))
    names = list(variants)
    feats = extractor.extract(None, [variants[n][1] for n in names]).features["audio"]
    base = feats[names.index("16000_PCM_16_0.wav")]
    prosodic = torch.tensor([n.startswith(("f0_", "voiced", "log_energy")) for n in FEATURE_NAMES])

    def error(row, cols):
        scale = torch.maximum(
            base[cols].abs(), torch.ones_like(base[cols])
        )  # Hz- and dB-valued features do not dominate
        return float(((row[cols] - base[cols]) / scale).norm() / (base[cols] / scale).norm())

    for n, row in zip(names, feats):
        if variants[n][0] == 8000:
            assert error(row, prosodic) < 0.08, n
        else:
            assert error(row, torch.ones_like(prosodic)) < 0.10, n


def test_extract_api_refuses_a_bad_batch_size(tmp_path):
    (tmp_path / "m.csv").write_text("id,text\na,fine\n")
    for bad in (0, -3):
        with pytest.raises(InputError, match=f"batch_size must be an integer >= 1, got {bad}"):
            extract_manifest(tmp_path / "m.csv", tmp_path / "f.safetensors", None, batch_size=bad)


# ------------------------------------------------------------------- a bad text row is that row's error (issue 13)
@pytest.mark.parametrize("bad", [BAD_TEXT, "\ud800", "ok \ud83d\ude00 paired surrogates are still not UTF-8"])
def test_unencodable_text_is_an_input_error_naming_its_row(text_extractor, bad):
    with pytest.raises(UnicodeEncodeError):
        bad.encode("utf-8")
    out = text_extractor.extract(["fine words", bad, "more words"], names=["id 'a'", "id 'b'", "id 'c'"], strict=False)
    assert out.errors[0] is None and out.errors[2] is None
    assert out.errors[1].startswith("InputError: id 'b': text holds") and "surrogate" in out.errors[1]
    assert out.present[:, 0].tolist() == [True, False, True]
    with pytest.raises(InputError, match="utterance 0: text holds"):
        text_extractor.extract([bad])
    with pytest.raises(InputError, match="text at position 1"):
        text_extractor.text.encode(["fine", bad])


# ------------------------------------------------------------------- audio without speech is absent (issue 13)
class EightKiloHertzEncoder:
    """Any waveform encoder: the speech check must not depend on the built-in features or on 16 kHz."""

    modality, dim, sampling_rate = "audio", 3, 8000
    takes_waveforms = True  # the Encoder protocol (fastdaf.encoders.base)

    def spec(self):
        return {"kind": "test"}

    def encode(self, waves):
        return Encoded(torch.ones(len(waves), self.dim), [None] * len(waves))


@pytest.mark.parametrize("audio_encoder", ["acoustic", EightKiloHertzEncoder()], ids=["acoustic", "other-encoder"])
def test_audio_without_speech_is_absent_with_a_note(shared_data, audio_encoder):
    extractor = FeatureExtractor(None, audio_encoder)
    clips = [str(c) for c in speech_clips(shared_data)]
    noise = list(non_speech().values())
    out = extractor.extract(None, clips + noise, sampling_rates=[None] * len(clips) + [RATE] * len(noise), strict=False)
    assert out.errors[: len(clips)] == [None] * len(clips) and out.present[: len(clips), 0].all()
    for err in out.errors[len(clips) :]:
        assert err.startswith("InputError: utterance") and "nothing to encode: audio has no speech" in err
    with pytest.raises(InputError, match=r"utterance 0: nothing to encode: audio has no speech \(no voiced frames\)"):
        extractor.extract(None, [np.zeros(RATE, np.float32)], sampling_rates=[RATE])
