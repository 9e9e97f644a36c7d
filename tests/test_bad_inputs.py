"""Bad-input paths of the extractor, predictor and CLIs: the right exception type, a message naming the input."""

import pytest

from fastdaf import DAFConfig, DAFHead, SentimentPredictor
from fastdaf.bench import main as bench_main
from fastdaf.cli import main as cli_main
from fastdaf.errors import InputError
from fastdaf.extractor import FeatureExtractor, load_data


@pytest.fixture(scope="module")
def text_only_extractor():
    return FeatureExtractor("default", None)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    head = DAFHead(DAFConfig({"text": 384, "audio": 62}))
    path = tmp_path_factory.mktemp("ckpt")
    head.save_pretrained(
        path, extra={"encoders": {"text": {"kind": "text", "model": "default"}, "audio": {"kind": "acoustic"}}}
    )
    return path


def test_extractor_refuses_mismatched_inputs(text_only_extractor):
    with pytest.raises(InputError, match="audios has 1 entries for 2 utterances"):
        text_only_extractor.extract(["a", "b"], ["x.wav"])
    with pytest.raises(InputError, match="utterance 0: audio given but this extractor has no audio encoder"):
        text_only_extractor.extract(["a"], ["x.wav"])
    with pytest.raises(InputError, match="needs a text encoder, an audio encoder, or both"):
        FeatureExtractor(None, None)


def test_predictor_refuses_mismatched_inputs(checkpoint, tmp_path):
    predictor = SentimentPredictor(checkpoint)
    with pytest.raises(InputError, match=r"texts \(2\) and audios \(1\) differ in length"):
        predictor.predict_batch(["a", "b"], [None])
    with pytest.raises(InputError, match="pass lists for text and audio"):
        predictor.predict(["a", "b"], "clip.wav")
    text_head = DAFHead(DAFConfig({"text": 384}))
    text_head.save_pretrained(tmp_path / "text", extra={"encoders": {"text": {"kind": "text", "model": "default"}}})
    with pytest.raises(InputError, match="this model has no audio modality"):
        SentimentPredictor(tmp_path / "text").predict("fine", "clip.wav")
    wrong = DAFHead(DAFConfig({"text": 100}))
    wrong.save_pretrained(tmp_path / "wrong", extra={"encoders": {"text": {"kind": "text", "model": "default"}}})
    with pytest.raises(InputError, match="the text encoder gives 384-d vectors but the head expects 100"):
        SentimentPredictor(tmp_path / "wrong")


def test_predict_cli_refuses_bad_output_and_mixed_modes(checkpoint, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text\na,hello there\n")
    assert (
        cli_main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint),
                "--manifest",
                str(manifest),
                "--out",
                str(tmp_path / "out.txt"),
            ]
        )
        == 2
    )
    assert "--out must end in .csv or .jsonl, got 'out.txt'" in capsys.readouterr().err
    assert cli_main(["predict", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--text", "x"]) == 2
    assert "--manifest cannot be combined with --text/--audio" in capsys.readouterr().err


def test_bench_e2e_argument_checks(capsys):
    assert bench_main(["e2e", "--device", "cpu", "--tokens", "1"]) == 2
    assert "--tokens must be >= 2" in capsys.readouterr().err


def test_transcripts_need_a_text_encoder(tmp_path):
    path = tmp_path / "valid.csv"
    path.write_text(",sentence,polarity\nv[0],fine words,1.0\n")
    with pytest.raises(
        InputError, match=r"valid.csv holds transcripts, but the model has no text encoder \(it has \['audio'\]\)"
    ):
        load_data(path, encoders={"audio": {"kind": "acoustic"}})
