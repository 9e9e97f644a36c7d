"""The bundled models: what their cards say is what their commands print, and the default one hears the voice."""

from __future__ import annotations

import json
import runpy

import pytest
from builders import REPO

from fastdaf import default_model
from fastdaf.checkpoint import encoder_specs, read_config
from fastdaf.cli import main


def card() -> dict:
    return read_config(default_model.path())[1]["model_card"]


def test_default_model_carries_its_audio_encoder_and_licences():
    """Offline with the core install alone: the Whisper weights are inside the checkpoint folder, with their licence
    and the model's own (inherited from RAVDESS)."""
    _, extra = read_config(default_model.path())
    assert extra["encoders"]["audio"]["model"] == "./whisper-encoder"
    folder = encoder_specs(default_model.path(), extra)["audio"]["model"]
    assert (default_model.DIRECTORY / "whisper-encoder" / "LICENSE").read_text().count("MIT License") == 1
    assert folder == str((default_model.DIRECTORY / "whisper-encoder").resolve())
    assert "CC BY-NC-SA 4.0" in (default_model.DIRECTORY / "LICENSE").read_text()
    assert "CC BY-NC-SA 4.0" in card()["licence"] and extra["emotion_mapping"]["scores"]["happy"] == 1.5
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"whisper-encoder/*"' in pyproject and '"fast/*"' in pyproject and '"LICENSE"' in pyproject


def test_held_out_actors_figures_reproduce_from_the_card_command(shared_data, capsys, monkeypatch):
    """The card's held-out-actor figures are what its `fastdaf eval` command prints (up to float noise across
    machines), and the audio is judged informative against every shuffled and constant control."""
    command = card()["evaluation"]["commands"]["held-out actors 16-18"]
    want = card()["evaluation"]["held-out actors 16-18"]
    monkeypatch.chdir(REPO)  # the command's data path is relative to the checkout
    assert main(command.split()[1:]) == 0
    got = json.loads(capsys.readouterr().out)
    for key in ("balanced_acc", "macro_F1", "acc_3", "Corr", "MAE"):
        assert got["emotions"][key] == pytest.approx(want["emotions"][key], abs=2e-3), key
    for emotion, e in want["emotions"]["per_emotion"].items():
        assert got["emotions"]["per_emotion"][emotion]["rows"] == e["rows"]
        assert got["emotions"]["per_emotion"][emotion]["mean_score"] == pytest.approx(e["mean_score"], abs=2e-3)
    assert got["controls"]["audio"]["informative"] is True
    assert got["emotion_mapping"] == want["emotion_mapping"]


def test_the_voice_decides_on_a_neutral_sentence(shared_data, capsys, monkeypatch):
    """The README's example: one sentence said happily and angrily by a held-out actor."""
    monkeypatch.setattr("sys.argv", ["emotion_in_the_voice.py"])
    runpy.run_path(str(REPO / "examples" / "emotion_in_the_voice.py"), run_name="__main__")
    lines = {
        line.split(" said ")[1].split()[0]: line for line in capsys.readouterr().out.splitlines() if " said " in line
    }

    def score(how: str) -> float:
        return float(lines[how].split("score ")[1].split()[0])

    def audio_weight(how: str) -> float:
        return float(lines[how].split("audio ")[1].split(",")[0])

    assert score("happily") > 0.5 and score("angrily") < -0.5
    assert audio_weight("happily") > 0.5 and audio_weight("angrily") > 0.5
