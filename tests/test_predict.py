"""fastdaf.predict, SentimentPredictor and `fastdaf predict`, offline, on the real CMU ARCTIC clips."""

import concurrent.futures
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from builders import BAD_TEXT, RATE, REPO, non_speech

import fastdaf
from fastdaf import DAFConfig, DAFHead, SentimentPredictor
from fastdaf.cli import main as cli_main
from fastdaf.errors import (
    AudioDecodeError,
    AudioNotFoundError,
    AudioTooLongError,
    AudioTooShortError,
    InputError,
    NonFiniteAudioError,
    SamplingRateError,
    UnsupportedAudioFormatError,
    UnsupportedError,
)
from fastdaf.examples import ARCTIC_PROMPTS as PROMPTS
from fastdaf.examples import EXAMPLE_CLIP, EXAMPLE_TEXT
from fastdaf.extractor import errors_path, extract_manifest
from fastdaf.pipeline import sentiment_label


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A head with random weights that records the default encoders (behaviour, not accuracy)."""
    from fastdaf.audio.acoustic import FEATURE_DIM

    torch.manual_seed(0)
    head = DAFHead(DAFConfig({"text": 384, "audio": FEATURE_DIM}, n_outputs=2, output_names=["sentiment", "happiness"]))
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.3)
    path = tmp_path_factory.mktemp("ckpt")
    head.save_pretrained(
        path,
        extra={
            "encoders": {
                "text": {"kind": "text", "model": "default", "layer": [1, 2, 3, 4, 5, 6]},
                "audio": {"kind": "acoustic"},
            }
        },
    )
    return path


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return SentimentPredictor(checkpoint)


@pytest.fixture(scope="module")
def clips(request):
    from builders import SHARED_DATA

    folder = SHARED_DATA / "speech"
    if not folder.is_dir():
        pytest.skip("shared speech clips missing")
    return {name: str(folder / f"cmu_arctic_us_{name}.wav") for name in PROMPTS}


def test_one_utterance_text_audio_both(predictor, clips, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    both = predictor.predict(PROMPTS["axb_a0004"], clips["axb_a0004"])
    assert isinstance(both, fastdaf.Prediction) and -3 <= both.score <= 3
    assert both.label == sentiment_label(both.score) and set(both.weights) == {"text", "audio"}
    assert abs(sum(both.weights.values()) - 1) < 1e-5 and set(both.outputs) == {"happiness"}
    text_only = predictor.predict(PROMPTS["axb_a0004"])
    audio_only = predictor.predict(audio=clips["axb_a0004"])
    assert text_only.weights == {"text": 1.0, "audio": 0.0} and audio_only.weights == {"text": 0.0, "audio": 1.0}
    assert json.loads(json.dumps(both.to_dict()))["weights"] == both.weights


def test_labels_follow_documented_thresholds():
    assert [sentiment_label(s) for s in (-3, -0.5, -0.49, 0, 0.49, 0.5, 3)] == [
        "negative",
        "negative",
        "neutral",
        "neutral",
        "neutral",
        "positive",
        "positive",
    ]


def test_batch_equals_single_in_order(predictor, clips):
    names = list(PROMPTS)
    texts = [PROMPTS[n] if i % 3 != 2 else None for i, n in enumerate(names)]
    audios = [clips[n] if i % 3 != 1 else None for i, n in enumerate(names)]
    batch = predictor.predict(texts, audios)
    single = [predictor.predict(t, a) for t, a in zip(texts, audios)]
    for b, s in zip(batch, single):
        assert b.score == pytest.approx(s.score, abs=1e-4)  # stated tolerance: 1e-4 on the score
        assert b.weights == pytest.approx(s.weights, abs=1e-5)


def test_arrays_bytes_and_paths_agree(predictor, clips):
    path = clips["aew_a0003"]
    samples, rate = soundfile.read(path, dtype="float32")
    with open(path, "rb") as f:
        raw = f.read()
    results = [
        predictor.predict(PROMPTS["aew_a0003"], a, sampling_rate=r)
        for a, r in ((path, None), (raw, None), (samples, rate), (torch.from_numpy(samples), rate))
    ]
    for r in results[1:]:
        assert r.score == pytest.approx(results[0].score, abs=1e-5)


def test_fused_head_gives_the_reference_result(checkpoint, clips):
    fused = SentimentPredictor(checkpoint, head_backend="fused")  # through the Triton interpreter on CPU
    reference = SentimentPredictor(checkpoint, head_backend="reference")
    texts = [PROMPTS["axb_a0004"], None, PROMPTS["aew_a0001"]]
    audios = [clips["axb_a0004"], clips["axb_a0005"], None]
    for f, r in zip(fused.predict(texts, audios), reference.predict(texts, audios)):
        assert f.score == pytest.approx(r.score, rel=1e-4, abs=1e-4)
        assert f.weights == pytest.approx(r.weights, abs=1e-4)


def test_many_threads_each_get_their_own_result(predictor, clips):
    names = list(PROMPTS)
    jobs = [(PROMPTS[names[i % 6]] if i % 4 else None, clips[names[(i * 5) % 6]] if i % 3 else None) for i in range(48)]
    jobs = [(t, a) if (t or a) else (PROMPTS[names[0]], None) for t, a in jobs]
    expected = [predictor.predict(t, a).score for t, a in jobs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda job: predictor.predict(*job).score, jobs))
    assert got == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(audio="/nonexistent/clip.wav"), AudioNotFoundError, "clip.wav"),
        (dict(audio=b"RIFF" + b"\0" * 64), AudioDecodeError, "corrupt"),
        (dict(audio=b"just some text, not audio"), UnsupportedAudioFormatError, "not an audio format"),
        (dict(audio=np.zeros(100, dtype=np.float32), sampling_rate=16000), AudioTooShortError, "at least"),
        (dict(audio=np.full(16000, np.nan, dtype=np.float32), sampling_rate=16000), NonFiniteAudioError, "NaN"),
        (dict(audio=np.zeros(16000, dtype=np.float32)), SamplingRateError, "sampling_rate is required"),
        (dict(audio=np.zeros(16000, dtype=np.float32), sampling_rate=10), SamplingRateError, "10 Hz"),
        (dict(audio=np.zeros(4000 * 601, dtype=np.float32), sampling_rate=4000), AudioTooLongError, "at most"),
        (dict(text="sp sp"), InputError, "empty after normalisation"),
        (dict(), InputError, "needs text, audio or both"),
        (dict(text=42), InputError, "must be a string"),
    ],
)
def test_bad_inputs_raise_specific_errors(predictor, kwargs, error, words):
    with pytest.raises(error, match=words):
        predictor.predict(**kwargs)


def test_predictor_errors(checkpoint, tmp_path):
    with pytest.raises(InputError, match="head_backend"):
        SentimentPredictor(checkpoint, head_backend="magic")
    with pytest.raises(fastdaf.CheckpointError, match="no checkpoint directory"):
        SentimentPredictor(tmp_path / "nothing")


def test_cli_single_and_bad_input(checkpoint, clips, capsys):
    assert (
        cli_main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint),
                "--text",
                PROMPTS["axb_a0005"],
                "--audio",
                clips["axb_a0005"],
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["id", "score", "label", "weights", "outputs", "notes", "error"]  # the manifest's too
    assert out["id"] is None and out["error"] is None and set(out["weights"]) == {"text", "audio"}
    for argv, words in (
        (["--audio", "/no/such.wav"], "no such audio file"),
        (["--audio", __file__], "'.py' is not an audio format"),
        ([], "give --text and/or --audio"),
    ):
        assert cli_main(["predict", "--checkpoint", str(checkpoint), *argv]) == 2
        assert words in capsys.readouterr().err


@pytest.mark.parametrize("model", ["bundled", "two outputs"])
def test_one_output_schema_for_one_utterance_and_manifests_json_and_csv(model, checkpoint, clips, tmp_path, capsys):
    """The same record everywhere (fastdaf.records.result_record); CSV flattens it; no always-empty field."""
    ckpt = [] if model == "bundled" else ["--checkpoint", str(checkpoint)]
    text, audio = PROMPTS["axb_a0004"], clips["axb_a0004"]
    assert cli_main(["predict", *ckpt, "--text", text, "--audio", audio, "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"id": "a", "text": text, "audio": audio}) + "\n" + '{"id": "bad", "audio": "no.wav"}\n'
    )
    out_jsonl, out_csv = tmp_path / "o.jsonl", tmp_path / "o.csv"
    for out in (out_jsonl, out_csv):
        assert cli_main(["predict", *ckpt, "--manifest", str(manifest), "--out", str(out)]) == 0
    capsys.readouterr()
    good, bad = map(json.loads, out_jsonl.read_text().splitlines())
    extra = ["outputs"] if model == "two outputs" else []
    keys = ["id", "score", "label", "weights", *extra, "notes", "error"]
    assert list(single) == list(good) == list(bad) == keys
    assert single["id"] is None and good["id"] == "a" and bad["id"] == "bad"
    assert {k: v for k, v in single.items() if k != "id"} == {k: v for k, v in good.items() if k != "id"}
    assert bad["score"] is None and bad["weights"] is None and "AudioNotFoundError" in bad["error"]
    assert isinstance(single["weights"], dict) and isinstance(single["notes"], list)
    if extra:
        assert list(single["outputs"]) == ["happiness"]
    rows = list(csv.DictReader(out_csv.open()))
    flat = ["id", "score", "label", "weights.text", "weights.audio", *(["outputs.happiness"] if extra else [])]
    assert list(rows[0]) == [*flat, "notes", "error"]
    assert float(rows[0]["score"]) == good["score"] and float(rows[0]["weights.audio"]) == good["weights"]["audio"]
    assert json.loads(rows[0]["notes"]) == good["notes"] and rows[1]["error"] == bad["error"]


def test_cli_manifest_with_bad_rows(checkpoint, clips, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    (tmp_path / "broken.wav").write_bytes(b"RIFF" + b"\0" * 64)
    rows = [
        ("a", PROMPTS["axb_a0004"], clips["axb_a0004"]),
        ("b", "", "missing.wav"),
        ("c", PROMPTS["axb_a0006"], ""),
        ("d", "", "broken.wav"),
        ("e", "sp", ""),
        ("f", "", clips["aew_a0002"]),
    ]
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "audio"])
        w.writerows(rows)
    out_csv = tmp_path / "out.csv"
    assert (
        cli_main(["predict", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--out", str(out_csv)]) == 0
    )
    assert "3 predicted, 3 failed, of 6 rows" in capsys.readouterr().err
    got = list(csv.DictReader(out_csv.open()))
    assert [r["id"] for r in got] == ["a", "b", "c", "d", "e", "f"]  # nothing lost, order kept
    errors = {r["id"]: r["error"] for r in got if r["error"]}
    assert set(errors) == {"b", "d", "e"}
    assert "AudioNotFoundError" in errors["b"] and "AudioDecodeError" in errors["d"] and "empty" in errors["e"]
    predictor = SentimentPredictor(checkpoint)
    assert float(got[0]["score"]) == pytest.approx(
        predictor.predict(PROMPTS["axb_a0004"], clips["axb_a0004"]).score, abs=1e-3
    )
    assert float(got[2]["weights.audio"]) == 0.0 and float(got[5]["weights.text"]) == 0.0
    # JSONL on stdout
    assert cli_main(["predict", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in lines] == ["a", "b", "c", "d", "e", "f"] and lines[1]["score"] is None


def test_fused_backend_refused_on_cpu_without_interpreter(checkpoint, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(UnsupportedError, match="runs on CUDA"):
        SentimentPredictor(checkpoint, head_backend="fused")


def test_checkpoint_standardisation_that_divides_by_zero_is_refused_at_load(checkpoint, tmp_path, capsys):
    head = DAFHead.from_pretrained(checkpoint)
    with torch.no_grad():
        head.input_std_audio[:3] = 0.0  # written around set_input_stats, which stores 1 for such features
    extra = json.loads((checkpoint / "config.json").read_text())["extra"]
    head.save_pretrained(tmp_path / "zero-std", extra=extra)
    with pytest.raises(fastdaf.CheckpointError, match="'input_std_audio' has 3 entries <= 1e-06"):
        SentimentPredictor(tmp_path / "zero-std")
    assert cli_main(["predict", "--checkpoint", str(tmp_path / "zero-std"), "--text", "fine"]) == 2
    assert "input_std_audio" in capsys.readouterr().err


def test_a_score_that_overflows_is_an_error_never_nan(checkpoint, clips, tmp_path, capsys):
    """Finite weights so large that the score overflows pass every load check; the utterance then fails with a
    NonFiniteScoreError (predict raises, manifests record it) and JSON output stays valid."""
    head = DAFHead.from_pretrained(checkpoint)
    with torch.no_grad():
        head.mlp_hidden.weight.mul_(1e20)
        head.mlp_out.weight.mul_(1e20)
    extra = json.loads((checkpoint / "config.json").read_text())["extra"]
    head.save_pretrained(tmp_path / "huge", extra=extra)
    predictor = SentimentPredictor(tmp_path / "huge")
    with pytest.raises(fastdaf.errors.NonFiniteScoreError, match="utterance 0: the model's score"):
        predictor.predict("this was awful")
    assert predictor.predict_each(["fine"], [None])[0].startswith("NonFiniteScoreError: utterance 0")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,text,audio\na,this was awful,\nb,,{clips['axb_a0004']}\n")
    out = tmp_path / "out.jsonl"
    assert (
        cli_main(["predict", "--checkpoint", str(tmp_path / "huge"), "--manifest", str(manifest), "--out", str(out)])
        == 0
    )  # failed rows are recorded, the run succeeds
    capsys.readouterr()
    records = [
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))
        for line in out.read_text().splitlines()
    ]
    assert [r["id"] for r in records] == ["a", "b"]
    assert all(r["score"] is None and r["error"].startswith("NonFiniteScoreError") for r in records)


INVISIBLE = {
    "zero-width space": "\u200b\u200b",
    "byte order mark": "\ufeff",
    "NUL": "\x00",
    "bidi override": "\u202e\u202c",
    "lone combining marks": "\u0301\u0308",
    "tag characters": "\U000e0041\U000e0042",
    "private use": "\ue000\uf8ff",
    "unassigned": "\U0003fffe",
    "mixed with spaces": " \u200b\u00a0\ufeff ",
}


@pytest.mark.parametrize("text", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_text_without_a_visible_character_is_absent(predictor, clips, text):
    with pytest.raises(InputError, match="nothing to encode: text empty after normalisation \\(no visible character"):
        predictor.predict(text)
    with_audio = predictor.predict(text, clips["axb_a0004"])
    assert with_audio.weights["text"] == 0.0 and with_audio.weights["audio"] == 1.0
    assert with_audio.notes == ["text empty after normalisation (no visible character): treated as absent"]
    assert predictor.predict("\u200bfine\u200b").weights["text"] == 1.0  # visible text keeps its invisible company


# ------------------------------------------------------------------- a bad text row is that row's error (issue 13)
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


# ------------------------------------------------------------------- audio without speech is absent (issue 13)
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
