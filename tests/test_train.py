import json

import pytest
import torch

from fastdaf import ConfigError, DAFConfig, DAFHead, FeatureFileError, FeatureSet, InputError, train_head
from fastdaf.cli import main as cli_main
from fastdaf.metrics import sentiment_metrics
from fastdaf.synthetic import make_cue_task
from fastdaf.train import drop_modalities, predict_features


@pytest.fixture(scope="module")
def cue_task():
    data, informative = make_cue_task(seed=0)
    test_rows = [i for i, s in enumerate(data.splits) if s == "test"]
    return data.split("train"), data.split("valid"), data.split("test"), informative[test_rows]


def small_cfg(modalities, **kw):
    return DAFConfig(modalities, projection_size=64, attention_size=32, hidden_size=64, **kw)


def only(data: FeatureSet, modality: str) -> FeatureSet:
    i = list(data.features).index(modality)
    return FeatureSet({modality: data.features[modality]}, data.present[:, i : i + 1], data.labels)


def test_dynamic_fusion_beats_static_mean_and_unimodal(cue_task):
    train, valid, test, informative = cue_task
    mae, follows = {}, {}
    for fusion in ("dynamic", "static", "mean"):
        result = train_head(small_cfg(train.modalities, fusion=fusion), train, valid, epochs=200, patience=15)
        score, weights = predict_features(result.head, test)
        mae[fusion] = sentiment_metrics(score, test.labels)["MAE"]
        follows[fusion] = float((weights.argmax(1) == informative).float().mean())
        if fusion == "dynamic":
            weight_on_informative = float(weights.gather(1, informative[:, None]).mean())
    for modality in train.modalities:
        result = train_head(
            small_cfg({modality: train.modalities[modality]}),
            only(train, modality),
            only(valid, modality),
            epochs=200,
            patience=15,
        )
        score, _ = predict_features(result.head, only(test, modality))
        mae[modality] = sentiment_metrics(score, test.labels)["MAE"]
    print("held-out MAE", mae, "weights follow informative", follows)
    for other in ("static", "mean", "text", "audio"):
        assert mae["dynamic"] < 0.9 * mae[other], (other, mae)
    assert follows["dynamic"] > 0.9 and weight_on_informative > 0.85
    assert follows["static"] < 0.6 and follows["mean"] < 0.6


def test_fixed_seed_is_reproducible_and_seeds_differ(cue_task):
    train, valid, _, _ = cue_task
    cfg = small_cfg(train.modalities)
    runs = [train_head(cfg, train, valid, epochs=3, seed=s) for s in (7, 7, 8)]
    a, b, c = (r.head.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert runs[0].history == runs[1].history


def test_training_leaves_global_rng_alone(cue_task):
    train, valid, _, _ = cue_task
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_head(small_cfg(train.modalities), train, valid, epochs=1)
    assert torch.equal(torch.rand(3), expected)


def test_standardisation_fitted_on_present_training_rows():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g) * torch.tensor([5.0, 0.1, 1.0]) + torch.tensor([10.0, -2.0, 0.0])
    present = torch.ones(200, 1, dtype=torch.bool)
    present[:50] = False
    x[:50] = 1000.0  # absent rows must not enter the statistics
    data = FeatureSet({"audio": x}, present, torch.randn(200, generator=g))
    head = train_head(DAFConfig({"audio": 3}), data.subset(range(50, 200)), data.subset(range(50, 200)), epochs=1).head
    mean, std = head.input_stats("audio")
    torch.testing.assert_close(mean, x[50:].mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(std, x[50:].std(0), rtol=1e-4, atol=1e-5)


def test_modality_dropout_keeps_one_modality_and_drops_at_rate():
    g = torch.Generator().manual_seed(0)
    present = torch.ones(20000, 3, dtype=torch.bool)
    present[::2, 2] = False
    kept = drop_modalities(present, 0.3, g)
    assert kept.any(dim=1).all()
    assert not (kept & ~present).any()  # never marks an absent modality present
    rate = 1 - kept[:, 0].float().mean()
    assert 0.2 < rate < 0.4


def test_modality_dropout_trains_a_head_that_serves_single_modalities(cue_task):
    train, valid, test, _ = cue_task
    result = train_head(small_cfg(train.modalities), train, valid, epochs=5, modality_dropout=0.5)
    text_only = result.head({"text": test.features["text"]})
    assert torch.all(text_only.weights[:, 1] == 0) and torch.isfinite(text_only.score).all()


@pytest.mark.parametrize(
    "change, error, words",
    [
        (dict(epochs=0), ConfigError, "epochs"),
        (dict(loss="hinge"), ConfigError, "loss 'hinge'"),
        (dict(modality_dropout=1.0), ConfigError, "modality_dropout"),
    ],
)
def test_bad_options(change, error, words, cue_task):
    train, valid, _, _ = cue_task
    with pytest.raises(error, match=words):
        train_head(small_cfg(train.modalities), train, valid, **change)


def test_incompatible_data_is_refused(cue_task):
    train, valid, _, _ = cue_task
    with pytest.raises(InputError, match="modalities"):
        train_head(small_cfg({"text": 32}), train, valid)
    unlabeled = FeatureSet(train.features, train.present)
    with pytest.raises(InputError, match="training features have no labels"):
        train_head(small_cfg(train.modalities), unlabeled, valid)


def test_feature_file_round_trip(tmp_path, cue_task):
    train, _, _, _ = cue_task
    data = train.subset(range(10))
    data.present[3, 1] = False
    data.ids = [f"u{i}" for i in range(10)]
    data.splits = ["train"] * 8 + ["valid"] * 2
    path = data.save(tmp_path / "f.safetensors")
    back = FeatureSet.load(path)
    assert back.ids == data.ids and back.splits == data.splits and list(back.features) == ["text", "audio"]
    assert torch.equal(back.present, data.present) and torch.equal(back.labels, data.labels)
    assert torch.equal(back.features["audio"], data.features["audio"])
    assert len(back.split("valid")) == 2


def test_feature_file_errors(tmp_path):
    with pytest.raises(FeatureFileError, match="no feature file at"):
        FeatureSet.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nope" * 8)
    with pytest.raises(FeatureFileError, match="corrupt"):
        FeatureSet.load(bad)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(FeatureFileError, match="not a fastdaf feature file"):
        FeatureSet.load(tmp_path / "plain.safetensors")


def test_cli_train_writes_a_loadable_checkpoint(tmp_path, cue_task, capsys):
    train, valid, _, _ = cue_task
    from fastdaf.features import concat

    data = concat([train.subset(range(400)), valid.subset(range(100))])
    data.splits = ["train"] * 400 + ["valid"] * 100
    data.save(tmp_path / "feats.safetensors")
    code = cli_main(
        ["train", str(tmp_path / "feats.safetensors"), "--out", str(tmp_path / "ckpt"), "--epochs", "3", "--json"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    head = DAFHead.from_pretrained(tmp_path / "ckpt")
    score, _ = predict_features(head, valid.subset(range(100)))
    assert report["valid_metrics"] == sentiment_metrics(score, valid.labels[:100])
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["extra"]["training"]["seed"] == 0 and meta["extra"]["training"]["epochs"] == 3


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, capsys):
    code = cli_main(["train", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no dataset at" in err and "none.safetensors" in err and "accepted" in err


def test_cli_demo_json():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "fastdaf.cli", "demo", "--json", "--fusion", "dynamic", "static", "--epochs", "40"],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout)
    dyn, stat = report["results"]["dynamic"], report["results"]["static"]
    assert dyn["metrics"]["MAE"] < stat["metrics"]["MAE"]
    assert dyn["weights_follow_informative"] > 0.9
    assert len(dyn["examples"]) == 5 and set(dyn["examples"][0]["weights"]) == {"text", "audio"}
