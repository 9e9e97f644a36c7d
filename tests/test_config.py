import json

import pytest

import fastdaf
from fastdaf import ConfigError, DAFConfig, DAFHead
from fastdaf.config import MAX_INPUT_DIM


def test_defaults_and_json_round_trip():
    cfg = DAFConfig(modalities={"text": 768, "audio": 74}, fusion="static", n_outputs=7)
    assert cfg.modality_names == ("text", "audio")
    assert cfg.output_names[0] == "sentiment" and len(cfg.output_names) == 7
    data = json.loads(cfg.to_json())
    assert data["modalities"] == {"text": 768, "audio": 74}
    again = DAFConfig.from_dict(data)
    assert again == cfg
    assert again.modality_names == ("text", "audio")  # order is kept


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        DAFConfig({"text": 8}, 64)  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(modalities={}), "non-empty mapping"),
        (dict(modalities={"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}), "at most 4"),
        (dict(modalities={"Text": 8}), "'Text'"),
        (dict(modalities={"text": 0}), "'text'"),
        (dict(modalities={"text": 8.0}), "'text'"),
        (dict(modalities={"text": 8}, projection_size=0), "projection_size"),
        (dict(modalities={"text": 8}, dropout=1.0), "dropout"),
        (dict(modalities={"text": 8}, activation="swish"), "gelu"),
        (dict(modalities={"text": 8}, temperature=0), "temperature"),
        (dict(modalities={"text": 8}, fusion="late"), "dynamic"),
        (dict(modalities={"text": 8}, n_outputs=2, output_names=["a"]), "output_names"),
    ],
)
def test_invalid_configs_name_the_problem(kwargs, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")) as info:
        mods = kwargs.pop("modalities")
        DAFConfig(mods, **kwargs)
    assert isinstance(info.value, fastdaf.FastDAFError)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match="unknown DAF config field"):
        DAFConfig.from_dict({"modalities": {"text": 8}, "heads": 3})


@pytest.mark.parametrize("fusion", ["dynamic", "static", "mean", "concat"])
def test_n_weights_counts_what_the_head_allocates(fusion):
    cfg = DAFConfig(
        {"text": 12, "audio": 6, "video": 3},
        fusion=fusion,
        n_outputs=3,
        projection_size=10,
        attention_size=7,
        hidden_size=9,
    )
    assert cfg.n_weights == sum(t.numel() for t in DAFHead(cfg).state_dict().values())
    with pytest.raises(ConfigError, match="more than the 67,108,864 accepted"):
        DAFConfig({"text": MAX_INPUT_DIM, "audio": MAX_INPUT_DIM}, projection_size=1024, fusion=fusion)
