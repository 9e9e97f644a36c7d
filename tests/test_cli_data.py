"""fastdaf train / eval / ablate end to end, on the data kinds they accept."""

import csv
import json

import numpy as np
from builders import dump, mmsa_split

from fastdaf import DAFHead
from fastdaf.cli import main as cli_main
from fastdaf.data import load_mmsa_pickle
from fastdaf.metrics import METRIC_NAMES, sentiment_metrics
from fastdaf.synthetic import make_cue_task
from fastdaf.train import predict_features


def run_json(argv, capsys):
    code = cli_main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_train_and_eval_on_an_mmsa_pickle(tmp_path, capsys):
    rng = np.random.default_rng(0)
    pkl = dump(
        {s: mmsa_split(n, 6, aligned=False, rng=rng) for s, n in (("train", 60), ("valid", 20), ("test", 20))},
        tmp_path / "unaligned_50.pkl",
    )
    ckpt = tmp_path / "ckpt"
    run_json(["train", str(pkl), "--out", str(ckpt), "--epochs", "3", "--json"], capsys)
    head = DAFHead.from_pretrained(ckpt)
    assert dict(head.config.modalities) == {"text": 8, "audio": 5, "video": 3}
    result = run_json(["eval", str(pkl), "--checkpoint", str(ckpt), "--json"], capsys)  # default split: test
    assert list(result) == ["metrics", "weights"]  # "controls" only with --controls
    metrics = result["metrics"]
    assert list(metrics) == list(METRIC_NAMES)
    test = load_mmsa_pickle(pkl).split("test")
    score, _ = predict_features(head, test)
    assert metrics == sentiment_metrics(score, test.labels)


def write_mosei_split(path, rows, first=0):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "sentence", "polarity", "happiness", "sadness", "anger", "surprise", "disgust", "fear"])
        for i, (text, label) in enumerate(rows, start=first):
            writer.writerow([f"vid{i // 3}[{i % 3}]", text, label, 0, 0, 0, 0, 0, 0])


def test_train_on_transcripts_records_the_encoders(tmp_path, capsys):
    words = {"great": 2.0, "wonderful": 2.5, "fine": 0.5, "bad": -2.0, "awful": -2.5, "meh": 0.0}
    rng = np.random.default_rng(1)
    rows = [(f"this sp was {w} really", v) for w, v in (list(words.items())[i] for i in rng.integers(0, 6, size=60))]
    folder = tmp_path / "mosei"
    folder.mkdir()
    write_mosei_split(folder / "train.csv", rows[:45])
    write_mosei_split(folder / "valid.csv", rows[45:], first=45)
    ckpt = tmp_path / "ckpt"
    report = run_json(["train", str(folder), "--out", str(ckpt), "--epochs", "30", "--json"], capsys)
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["extra"]["encoders"]["text"]["model"] == "default"
    assert meta["config"]["modalities"] == {"text": 384}
    # the checkpoint's own encoders are used to evaluate transcripts
    metrics = run_json(["eval", str(folder / "valid.csv"), "--checkpoint", str(ckpt), "--json"], capsys)["metrics"]
    assert metrics == report["valid_metrics"]
    assert metrics["Non0_acc_2"] > 0.7  # positive and negative words are told apart


def test_ablate_writes_table_and_plot(tmp_path, capsys):
    data, _ = make_cue_task({"train": 600, "valid": 200}, seed=3)
    data.save(tmp_path / "cue.safetensors")
    out = tmp_path / "ablation"
    report = run_json(
        ["ablate", str(tmp_path / "cue.safetensors"), "--out", str(out), "--seeds", "2", "--epochs", "8", "--json"],
        capsys,
    )
    names = ["dynamic", "static", "mean", "concat", "text only", "audio only"]
    controls = [f"dynamic, {m} {kind}" for m in ("text", "audio") for kind in ("shuffled", "constant")]
    assert list(report["results"]) == [names[0], *controls, *names[1:]]  # controls beside the real row
    # on the cue task each modality carries the label in half the rows: both beat their controls
    assert report["controls"]["text"]["informative"] and report["controls"]["audio"]["informative"]
    table = (out / "ablation.md").read_text()
    for name in names:
        line = next(row for row in table.splitlines() if row.startswith(f"| {name} |"))
        assert line.count("+-") == len(METRIC_NAMES)
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    weights = report["results"]["dynamic"]["weights"]
    assert set(weights) == {"text", "audio"} and abs(weights["text"]["mean"] + weights["audio"]["mean"] - 1) < 1e-5


def test_eval_errors(tmp_path, capsys):
    assert cli_main(["eval", str(tmp_path / "nothing.bin")]) == 2
    assert "accepted" in capsys.readouterr().err
    data, _ = make_cue_task({"train": 50, "valid": 20}, seed=0)
    data.save(tmp_path / "cue.safetensors")
    assert cli_main(["eval", str(tmp_path / "cue.safetensors"), "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "no checkpoint directory" in capsys.readouterr().err


def test_bundled_model_beats_the_linear_probe_floor_on_mosei_valid(shared_data, capsys):
    """`fastdaf eval` with the default checkpoint on the real CMU-MOSEI valid transcripts (text only:
    no MOSEI audio here) must beat the ridge probe of ../shared/data/README.md (Non0_acc_2 0.804, MAE 0.638)."""
    metrics = run_json(["eval", str(shared_data / "cmu-mosei-text" / "valid.csv"), "--json"], capsys)["metrics"]
    assert metrics["MAE"] < 0.60 and metrics["Non0_acc_2"] > 0.804, metrics


def test_bundled_model_predicts_the_obvious(shared_data):
    import fastdaf

    good = fastdaf.predict("i absolutely loved this movie, it was wonderful and moving")
    bad = fastdaf.predict("this was a terrible waste of time, i hated every minute")
    assert good.score > 0.5 > -0.5 > bad.score
    assert (good.label, bad.label) == ("positive", "negative")
    clip = shared_data / "speech" / "cmu_arctic_us_axb_a0004.wav"
    both = fastdaf.predict("Lord, but I'm glad to see you again, Phil.", str(clip))
    assert both.weights["text"] > 0 and both.weights["audio"] > 0
