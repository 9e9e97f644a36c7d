"""Evaluation beyond the metrics: modality weights, drop effect, and controls that tell a modality's real
contribution from the effect of its mere presence (fastdaf.evaluation, `fastdaf eval --controls`)."""

import json
import sys

import pytest
import torch

from fastdaf import DAFConfig, DAFHead, FeatureSet
from fastdaf.bench_rows import append_rows, bench_row
from fastdaf.cli import main as cli_main
from fastdaf.errors import MissingExtraError
from fastdaf.evaluation import control, evaluate, informative, weight_statistics
from fastdaf.metrics import METRIC_NAMES
from fastdaf.synthetic import make_cue_task
from fastdaf.train import TrainOptions, predict_features, train_head


@pytest.fixture(scope="module")
def text_only_task(tmp_path_factory):
    """The cue task with the label in text in every row; audio carries only distractors (and its cue)."""
    data, _ = make_cue_task({"train": 1500, "valid": 400, "test": 400}, seed=5, only="text")
    head = train_head(
        DAFConfig(data.modalities), data.split("train"), data.split("valid"), TrainOptions(epochs=25), seed=0
    ).head
    folder = tmp_path_factory.mktemp("task")
    data.save(folder / "cue.safetensors")
    head.save_pretrained(folder / "ckpt")
    return data.split("test"), head, folder


def test_the_informative_modality_beats_its_controls_and_the_other_does_not(text_only_task):
    test, head, _ = text_only_task
    result = evaluate(head, test, controls=True)
    assert list(result) == ["metrics", "weights", "controls"] and list(result["metrics"]) == list(METRIC_NAMES)
    text, audio = result["controls"]["text"], result["controls"]["audio"]
    assert text["informative"] is True and audio["informative"] is False
    # destroying text's content ruins the score; destroying audio's changes nothing measurable
    assert min(text["shuffled"]["MAE_per_seed"]) > result["metrics"]["MAE"] + 0.5
    assert abs(audio["shuffled"]["MAE"] - result["metrics"]["MAE"]) < 0.1
    assert len(text["constant"]["MAE_per_seed"]) == 5 and set(text["shuffled"]) >= set(METRIC_NAMES)


def test_controls_keep_presence_and_destroy_only_that_modalitys_content(rng):
    x = {"text": torch.randn(6, 3, generator=rng), "audio": torch.randn(6, 2, generator=rng)}
    present = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1], [1, 0], [1, 1]], dtype=torch.bool)
    data = FeatureSet(x, present, torch.zeros(6))
    shuffled = control(data, "audio", "shuffled", seed=1)
    constant = control(data, "audio", "constant", seed=2)
    rows = present[:, 1]
    assert torch.equal(shuffled.features["text"], x["text"]) and torch.equal(shuffled.present, present)
    # a permutation of the present rows' vectors; absent rows untouched
    got = sorted(map(tuple, shuffled.features["audio"][rows].tolist()))
    assert got == sorted(map(tuple, x["audio"][rows].tolist()))
    assert torch.equal(shuffled.features["audio"][~rows], x["audio"][~rows])
    assert (constant.features["audio"][rows] == constant.features["audio"][rows][0]).all()
    assert any(torch.equal(constant.features["audio"][rows][0], v) for v in x["audio"][rows])
    assert torch.equal(control(data, "audio", "shuffled", seed=1).features["audio"], shuffled.features["audio"])
    with pytest.raises(Exception, match="control 'zeros' is not accepted"):
        control(data, "audio", "zeros", seed=0)


def test_informative_needs_to_beat_every_seed_of_every_control():
    assert informative([0.5], {"shuffled": [0.6, 0.7], "constant": [0.55, 0.9]})
    assert not informative([0.5], {"shuffled": [0.6, 0.7], "constant": [0.49, 0.9]})
    assert not informative([0.5, 0.65], {"shuffled": [0.6, 0.7], "constant": [0.6]})


def test_weight_statistics_and_drop_effect_by_hand(rng):
    torch.manual_seed(0)
    head = DAFHead(DAFConfig({"text": 3, "audio": 2})).eval()
    x = {"text": torch.randn(40, 3, generator=rng), "audio": torch.randn(40, 2, generator=rng)}
    present = torch.ones(40, 2, dtype=torch.bool)
    present[::4, 1] = False  # audio absent in 10 rows
    present[1::4, 0] = False  # text absent in 10 rows
    data = FeatureSet(x, present, torch.zeros(40))
    stats = weight_statistics(head, data)
    score, weights = predict_features(head, data)
    for j, m in enumerate(("text", "audio")):
        w = weights[present[:, j], j].double()
        assert stats[m]["mean"] == pytest.approx(float(w.mean()), abs=1e-4)
        assert stats[m]["p50"] == pytest.approx(float(w.median()), abs=2e-2)
        assert stats[m]["p10"] <= stats[m]["p50"] <= stats[m]["p90"]
        both = present.all(dim=1)  # rows where dropping m leaves the other modality
        dropped = present[both].clone()
        dropped[:, j] = False
        without, _ = predict_features(head, FeatureSet({k: v[both] for k, v in x.items()}, dropped))
        assert stats[m]["drop_effect"] == pytest.approx(float((score[both] - without).abs().mean()), abs=1e-4)
    only_text = FeatureSet({"text": x["text"]}, torch.ones(40, 1, dtype=torch.bool), torch.zeros(40))
    head1 = DAFHead(DAFConfig({"text": 3})).eval()
    assert weight_statistics(head1, only_text)["text"]["drop_effect"] is None  # nothing would be left


def test_eval_cli_json_layout_text_output_and_plot(text_only_task, capsys):
    _, _, folder = text_only_task
    data, ckpt, plot = str(folder / "cue.safetensors"), str(folder / "ckpt"), folder / "eval.png"
    argv = ["eval", data, "--checkpoint", ckpt, "--split", "test", "--controls", "--control-seeds", "3"]
    assert cli_main([*argv, "--json", "--plot", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result) == ["metrics", "weights", "controls"]
    assert set(result["weights"]["audio"]) == {"mean", "p10", "p50", "p90", "drop_effect"}
    assert set(result["controls"]["text"]) == {"shuffled", "constant", "informative"}
    assert len(result["controls"]["audio"]["constant"]["MAE_per_seed"]) == 3
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli_main(argv) == 0
    text = capsys.readouterr().out
    assert "text: informative" in text and "audio: carries no measurable information" in text
    assert "drop effect" in text


def test_missing_extras_are_named(text_only_task, tmp_path, monkeypatch, capsys):
    _, _, folder = text_only_task
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if fastdaf[plot] were not installed
    argv = [
        "eval",
        str(folder / "cue.safetensors"),
        "--checkpoint",
        str(folder / "ckpt"),
        "--plot",
        str(tmp_path / "p.png"),
    ]
    assert cli_main(argv) == 2
    assert "pip install 'fastdaf[plot]'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "h5py", None)
    from fastdaf.data import load_csd_folder

    for name in ("labels.csd", "covarep.csd"):
        (tmp_path / name).write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(MissingExtraError, match=r"pip install 'fastdaf\[data\]'"):
        load_csd_folder(tmp_path, modalities={"labels": "labels.csd", "audio": "covarep.csd"})


def test_benchmark_plots_name_the_missing_extra(tmp_path, monkeypatch, capsys):
    from fastdaf import bench

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert bench.main(["e2e", "--device", "cpu", "--plot", str(tmp_path / "e2e.png")]) == 2
    assert "pip install 'fastdaf[plot]'" in capsys.readouterr().err
    results = tmp_path / "r.jsonl"
    append_rows([bench_row("b", "w", device="cpu", backend="x", samples_ms=[1.0, 2.0])], results)
    assert bench.main(["plot", "--results", str(results), "--out", str(tmp_path / "p.png")]) == 2
    assert "pip install 'fastdaf[plot]'" in capsys.readouterr().err


def test_bad_evaluation_inputs_are_refused_naming_them(text_only_task, rng, capsys):
    from fastdaf.errors import InputError
    from fastdaf.evaluation import without

    x = {"text": torch.randn(4, 3, generator=rng), "audio": torch.randn(4, 2, generator=rng)}
    present = torch.tensor([[1, 0], [1, 0], [1, 0], [1, 0]], dtype=torch.bool)
    data = FeatureSet(x, present, torch.zeros(4))
    with pytest.raises(InputError, match=r"no modality 'video' in the data; it has \['text', 'audio'\]"):
        control(data, "video", "shuffled", seed=0)
    with pytest.raises(InputError, match="modality 'audio' is present in no row"):
        control(data, "audio", "constant", seed=0)
    with pytest.raises(InputError, match=r"without \['text'\] no row has a modality left"):
        without(data, ["text"])
    with pytest.raises(InputError, match="no labels to evaluate against"):
        evaluate(DAFHead(DAFConfig({"text": 3, "audio": 2})), FeatureSet(x, present))
    with pytest.raises(InputError, match=r"only='video' is not one of the modalities \['text', 'audio'\]"):
        make_cue_task({"train": 10}, only="video")
    _, _, folder = text_only_task
    argv = ["eval", str(folder / "cue.safetensors"), "--checkpoint", str(folder / "ckpt"), "--split", "test"]
    assert cli_main([*argv, "--drop", "video"]) == 2
    assert "no modality 'video' in the data; it has ['text', 'audio']" in capsys.readouterr().err
    assert cli_main([*argv, "--drop", "text", "--drop", "audio"]) == 2
    assert "without ['text', 'audio'] no row has a modality left to score" in capsys.readouterr().err
