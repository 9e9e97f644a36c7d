"""Issue 13, findings 3, 5 and 8: one bad text row is that row's InputError, audio limits are checked from
the header before decoding, and audio without speech counts as absent (with a note) instead of being scored."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import fastdaf
from fastdaf import DAFConfig, DAFHead, SentimentPredictor
from fastdaf.audio.acoustic import FEATURE_DIM
from fastdaf.audio.loading import MAX_SECONDS, load_audio
from fastdaf.audio.pitch import no_speech_reason
from fastdaf.cli import main as cli_main
from fastdaf.encoders import Encoded
from fastdaf.errors import AudioDecodeError, AudioTooLongError, InputError
from fastdaf.examples import EXAMPLE_CLIP, EXAMPLE_TEXT
from fastdaf.extractor import FeatureExtractor, errors_path, extract_manifest

REPO = Path(__file__).resolve().parents[1]
RATE = 16_000
BAD_TEXT = "caf\udce9 au lait"  # the byte 0xE9 of Latin-1 "café" decoded with surrogateescape, as argv does


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random head recording the default encoders: behaviour, not accuracy."""
    torch.manual_seed(0)
    head = DAFHead(DAFConfig({"text": 384, "audio": FEATURE_DIM}))
    path = tmp_path_factory.mktemp("ckpt")
    head.save_pretrained(
        path, extra={"encoders": {"text": {"kind": "text", "model": "default"}, "audio": {"kind": "acoustic"}}}
    )
    return path


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return SentimentPredictor(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def text_extractor():
    return FeatureExtractor("default", None)


# ------------------------------------------------------------------------- 3: text that is not Unicode
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


def test_predictor_and_predict_refuse_only_the_bad_row(predictor):
    results = predictor.predict_each(["good words", BAD_TEXT, "more good words"], [None, None, None])
    assert isinstance(results[0], fastdaf.Prediction) and isinstance(results[2], fastdaf.Prediction)
    assert results[1].startswith("InputError: utterance 1: text holds '\\udce9' at character 3")
    with pytest.raises(InputError, match="surrogate"):
        predictor.predict(BAD_TEXT)
    with pytest.raises(InputError, match="surrogate"):
        fastdaf.predict("bad\udce9")  # the bundled model


def test_manifests_keep_every_other_row(checkpoint, text_extractor, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"id": "a", "text": "good"}\n{"id": "b", "text": "bad \\udce9"}\n{"id": "c", "text": "also good"}\n'
    )
    out = tmp_path / "out.jsonl"
    assert cli_main(["predict", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"] and rows[0]["score"] is not None and rows[2]["score"] is not None
    assert rows[1]["score"] is None and "InputError" in rows[1]["error"] and "line 2" in rows[1]["error"]
    summary = extract_manifest(manifest, tmp_path / "f.safetensors", text_extractor, progress=False)
    assert (summary["succeeded"], summary["failed"]) == (2, 1)
    report = json.loads(errors_path(tmp_path / "f.safetensors").read_text())
    assert report["id"] == "b" and report["error"].startswith("InputError")


def test_cli_single_mode_exits_2_on_a_non_utf8_argument(checkpoint):
    argv = [
        sys.executable,
        "-m",
        "fastdaf.cli",
        "predict",
        "--checkpoint",
        os.fsencode(checkpoint),
        "--text",
        b"caf\xe9",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(argv, capture_output=True, timeout=300, env=env)
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 2, err
    assert "InputError" not in err and "Traceback" not in err
    assert "text holds '\\udce9'" in err and "surrogate" in err


# ------------------------------------------------------------------- 5: limits read before decoding
@pytest.fixture
def no_decoding(monkeypatch):
    """Any decode fails the test: a refusal must come from the header alone."""

    def decoded(*args, **kwargs):
        raise AssertionError("samples were decoded before the refusal")

    monkeypatch.setattr(soundfile, "read", decoded)
    monkeypatch.setattr(soundfile.SoundFile, "read", decoded)


def test_too_long_audio_is_refused_from_the_header(tmp_path, no_decoding):
    path = tmp_path / "long.wav"
    seconds = MAX_SECONDS + 60  # 11 minutes of 8 kHz mono int16: 10.6 MB
    with soundfile.SoundFile(path, "w", 8000, 1, "PCM_16") as f:
        f.buffer_write(bytes(int(seconds * 8000) * 2), dtype="int16")
    message = f"{seconds:.1f} s of audio; at most {MAX_SECONDS:.0f} s is accepted"
    with pytest.raises(AudioTooLongError, match=message):
        load_audio(path)
    with pytest.raises(AudioTooLongError, match=message):
        load_audio(path.read_bytes())


def test_too_many_channels_are_refused_from_the_header(tmp_path, no_decoding):
    path = tmp_path / "nine.wav"
    soundfile.write(path, np.zeros((RATE, 9), np.float32), RATE)
    with pytest.raises(AudioDecodeError, match="9 channels; at most 8 are accepted") as info:
        load_audio(path)
    assert "nine.wav" in str(info.value)


def test_multichannel_files_are_downmixed_as_before(tmp_path):
    samples, rate = soundfile.read(EXAMPLE_CLIP, dtype="float32")
    channels = np.stack([samples * k for k in (0.5, 1.0, -0.25, 0.75)], axis=1)
    soundfile.write(tmp_path / "four.wav", channels, rate, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "four.wav").samples.numpy(), channels.mean(axis=1), atol=1e-7)


# --------------------------------------------------------------------------- 8: audio without speech
def non_speech() -> dict[str, np.ndarray]:
    t = np.arange(5 * RATE) / RATE
    rng = np.random.default_rng(0)
    return {
        "silence": np.zeros(5 * RATE),
        "dc offset": np.full(5 * RATE, 0.3),
        "white noise": 0.1 * rng.standard_normal(5 * RATE),
        "low-level hum": 0.001 * (np.sin(2 * np.pi * 50 * t) + 0.3 * np.sin(2 * np.pi * 150 * t)),
    }


def speech_clips(shared_data) -> list[Path]:
    clips = sorted((shared_data / "speech").glob("*.wav")) + sorted(EXAMPLE_CLIP.parent.glob("*.wav"))
    assert len(clips) == 7
    return clips


def test_real_speech_is_speech_and_non_speech_is_not(shared_data):
    for clip in speech_clips(shared_data):
        assert no_speech_reason(load_audio(clip, target_rate=RATE).samples) is None, clip.name
    quiet_late = np.concatenate(
        [np.zeros(60 * RATE), 10 ** (-30 / 20) * soundfile.read(EXAMPLE_CLIP, dtype="float32")[0]]
    )
    assert no_speech_reason(torch.from_numpy(quiet_late).float()) is None  # 30 dB quieter, after a minute of silence
    reasons = {name: no_speech_reason(torch.from_numpy(x).float()) for name, x in non_speech().items()}
    assert reasons["silence"] == reasons["dc offset"] == reasons["white noise"] == "no voiced frames"
    assert reasons["low-level hum"].startswith("only 0 voiced frame(s) at -55 dBFS or louder")


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


def test_predictions_treat_non_speech_audio_as_absent(predictor, checkpoint, tmp_path, capsys):
    for name, x in non_speech().items():
        both = predictor.predict(EXAMPLE_TEXT, x, sampling_rate=RATE)
        assert both.weights == {"text": 1.0, "audio": 0.0}, name
        assert any(n.startswith("audio has no speech") and n.endswith("treated as absent") for n in both.notes), name
        assert both.score == pytest.approx(predictor.predict(EXAMPLE_TEXT).score, abs=1e-5)
        with pytest.raises(InputError, match="audio has no speech"):
            predictor.predict(audio=x, sampling_rate=RATE)
    speech = predictor.predict(EXAMPLE_TEXT, str(EXAMPLE_CLIP))
    assert speech.weights["audio"] > 0 and not speech.notes
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(2 * RATE, np.float32), RATE)
    assert cli_main(["predict", "--checkpoint", str(checkpoint), "--text", EXAMPLE_TEXT, "--audio", str(silent)]) == 0
    assert "note: audio has no speech (no voiced frames): treated as absent" in capsys.readouterr().out
    assert cli_main(["predict", "--checkpoint", str(checkpoint), "--audio", str(silent)]) == 2
    assert "nothing to encode: audio has no speech" in capsys.readouterr().err


def test_manifest_rows_carry_their_notes(checkpoint, tmp_path):
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(2 * RATE, np.float32), RATE)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"id": i, "text": EXAMPLE_TEXT, "audio": str(a)}) + "\n"
            for i, a in (("quiet", silent), ("spoken", EXAMPLE_CLIP))
        )
    )
    out = tmp_path / "out.jsonl"
    assert cli_main(["predict", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--out", str(out)]) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert (
        rows["quiet"]["notes"] == ["audio has no speech (no voiced frames): treated as absent"]
        and rows["quiet"]["weights"]["audio"] == 0
    )
    assert rows["spoken"]["notes"] == [] and rows["spoken"]["weights"]["audio"] > 0
