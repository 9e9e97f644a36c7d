"""One pitch track per clip (issue 25, item 5): the speech check and the built-in features read the same YIN
track, judge speech by the same rule, and a prediction tracks each clip's pitch once."""

import numpy as np
import pytest
import soundfile
import torch

from fastdaf import SentimentPredictor
from fastdaf.audio import pitch
from fastdaf.audio.acoustic import SAMPLE_RATE, acoustic_features_and_speech
from fastdaf.audio.loading import load_audio
from fastdaf.audio.pitch import no_speech_reason, speech_reason
from fastdaf.examples import ARCTIC_PROMPTS, EXAMPLE_CLIP


def decibels(db: float) -> float:
    return 10 ** (db / 20)


def clips_to_judge(shared_data) -> dict[str, torch.Tensor]:
    """Speech, non-speech and the edges between them: quiet speech, speech in noise, speech beside a bang."""
    speech = {p.stem: load_audio(p, target_rate=SAMPLE_RATE).samples for p in sorted(shared_data.glob("speech/*.wav"))}
    example = torch.from_numpy(soundfile.read(EXAMPLE_CLIP, dtype="float32")[0])
    rng = np.random.default_rng(0)
    t = torch.arange(5 * SAMPLE_RATE) / SAMPLE_RATE
    noise = torch.from_numpy(rng.standard_normal(example.numel())).float()
    bang = torch.from_numpy(rng.standard_normal(SAMPLE_RATE // 5)).float().mul(0.5).clamp(-1, 1)  # about -6 dBFS
    aew2 = speech["cmu_arctic_us_aew_a0002"]
    return {
        **speech,
        "silence": torch.zeros(3 * SAMPLE_RATE),
        "white noise": 0.1 * torch.from_numpy(rng.standard_normal(3 * SAMPLE_RATE)).float(),
        "low-level hum": 0.001 * (torch.sin(2 * torch.pi * 50 * t) + 0.3 * torch.sin(2 * torch.pi * 150 * t)),
        "speech 35 dB down": decibels(-35) * aew2,
        "speech 40 dB down": decibels(-40) * aew2,
        "speech 45 dB down": decibels(-45) * aew2,
        "speech in noise, 0 dB SNR": example + noise * example.std() / noise.std(),
        # a noise burst, then speech whose voiced frames sit about 40 dB under it (-47..-52 dBFS): speech is
        # judged frame by frame, so the burst hides nothing (against the clip's loudest frame it would)
        "bang, then quiet speech": torch.cat([bang, torch.zeros(SAMPLE_RATE), decibels(-30) * example]),
        "bang, then speech": torch.cat([bang, torch.zeros(SAMPLE_RATE), example]),
    }


def test_the_speech_check_and_the_features_judge_every_clip_alike(shared_data):
    clips = clips_to_judge(shared_data)
    _, speech, voiced = acoustic_features_and_speech(list(clips.values()))  # one padded batch
    judged = {}
    for k, (name, clip) in enumerate(clips.items()):
        alone = acoustic_features_and_speech([clip])
        assert (int(alone[1]), int(alone[2])) == (int(speech[k]), int(voiced[k])), name  # padding changes nothing
        judged[name] = speech_reason(int(speech[k]), int(voiced[k]))
        assert no_speech_reason(clip) == judged[name], name
    assert all(judged[name] is None for name in clips if name.startswith("cmu_arctic"))
    assert judged["speech 35 dB down"] is None and judged["speech in noise, 0 dB SNR"] is None
    assert judged["bang, then speech"] is None and judged["bang, then quiet speech"] is None
    assert judged["silence"] == judged["white noise"] == "no voiced frames"
    assert judged["low-level hum"].startswith("only 0 voiced frame(s) at -55 dBFS or louder")
    assert judged["speech 45 dB down"].startswith("only 0 voiced frame(s) at -55 dBFS or louder")


@pytest.fixture
def yin_calls(monkeypatch) -> list[int]:
    """How many times YIN's difference function runs (once per pitch-tracked batch or speech-check chunk)."""
    calls = []
    real = pitch._yin_difference

    def counted(padded, *args):
        calls.append(padded.shape[0])
        return real(padded, *args)

    monkeypatch.setattr(pitch, "_yin_difference", counted)
    return calls


@pytest.mark.parametrize(
    ("checkpoint", "expected"),
    [("fast", "the built-in features' track, the speech check reads it"), ("default", "the speech check's own")],
)
def test_a_prediction_tracks_each_clip_once(shared_data, yin_calls, checkpoint, expected):
    predictor = SentimentPredictor(checkpoint)
    names = ["aew_a0001", "axb_a0004", "aew_a0002"]
    clips = [str(shared_data / "speech" / f"cmu_arctic_us_{name}.wav") for name in names]
    yin_calls.clear()
    predictor.predict(ARCTIC_PROMPTS[names[0]], clips[0])
    assert yin_calls == [1], expected  # one track of one clip (the speech check needs one chunk of speech)
    yin_calls.clear()
    records = predictor.predict_batch([ARCTIC_PROMPTS[n] for n in names], clips)
    assert all(r.weights["audio"] > 0 for r in records)
    # the built-in features track the batch once; another encoder's speech check tracks each clip once
    assert yin_calls == ([3] if checkpoint == "fast" else [1, 1, 1]), expected
