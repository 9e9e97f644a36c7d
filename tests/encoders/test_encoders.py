import pytest
import soundfile
import torch

from fastdaf.encoders import (
    Encoded,
    PrecomputedEncoder,
    SpeechEncoder,
    TextEncoder,
    load_encoder,
    masked_mean,
    normalize_mosei,
)
from fastdaf.errors import EncoderError, InputError

SENTENCES = ["this is sp another of my favorite albums", "i did not like it at all", "ok", "sp great movie sp"]


def test_mosei_normaliser():
    assert normalize_mosei("  this is sp another sp  of   mine sp") == "this is another of mine"
    assert normalize_mosei("sp sp") == ""
    assert normalize_mosei("spa spelling") == "spa spelling"  # only the bare token goes


def test_masked_mean_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    torch.testing.assert_close(masked_mean(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))


def test_default_text_encoder_is_minilm_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = TextEncoder()
    out = enc.encode(SENTENCES)
    assert out.vectors.shape == (4, 384) and enc.dim == 384 and torch.isfinite(out.vectors).all()
    # semantically close sentences are closer than unrelated ones
    a, b, c = enc.encode(["i loved this film", "i really enjoyed the movie", "the invoice is attached"]).vectors
    cos = torch.nn.functional.cosine_similarity
    assert cos(a, b, dim=0) > cos(a, c, dim=0) + 0.2


@pytest.mark.parametrize("pooling, layer", [("mean", None), ("cls", None), ("pooler", None), ("mean", 1)])
def test_text_pooling_is_batch_independent(tiny_models, pooling, layer):
    enc = TextEncoder(tiny_models["bert"], pooling=pooling, layer=layer, batch_size=4)
    together = enc.encode(SENTENCES).vectors
    alone = torch.cat([enc.encode([s]).vectors for s in SENTENCES])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    assert together.shape == (4, 32)


def test_text_layer_and_pooling_choices_differ(tiny_models):
    base = TextEncoder(tiny_models["bert"]).encode(SENTENCES).vectors
    assert not torch.allclose(base, TextEncoder(tiny_models["bert"], layer=1).encode(SENTENCES).vectors)
    assert not torch.allclose(base, TextEncoder(tiny_models["bert"], pooling="cls").encode(SENTENCES).vectors)


def test_text_layer_mixing_averages_pooled_layers(tiny_models):
    mixed = TextEncoder(tiny_models["bert"], layer=[1, 2]).encode(SENTENCES).vectors
    one = TextEncoder(tiny_models["bert"], layer=1).encode(SENTENCES).vectors
    two = TextEncoder(tiny_models["bert"], layer=2).encode(SENTENCES).vectors
    torch.testing.assert_close(mixed, (one + two) / 2, rtol=1e-5, atol=1e-6)
    assert TextEncoder(tiny_models["bert"], layer=[1, 2]).spec()["layer"] == [1, 2]
    with pytest.raises(EncoderError, match="pooler"):
        TextEncoder(tiny_models["bert"], layer=[1, 2], pooling="pooler")


def test_text_truncation_is_reported(tiny_models):
    enc = TextEncoder(tiny_models["bert"], max_length=8)
    out = enc.encode(["a short one", "this sentence is certainly much longer than eight tokens in total"])
    assert out.notes[0] is None and "truncated from" in out.notes[1] and "to 8 tokens" in out.notes[1]


def test_text_encoder_errors(tiny_models, tmp_path):
    with pytest.raises(EncoderError, match="cannot load the text tokenizer"):
        TextEncoder(str(tmp_path / "missing-model"))
    with pytest.raises(EncoderError, match="pooling 'max'"):
        TextEncoder(tiny_models["bert"], pooling="max")
    with pytest.raises(EncoderError, match="layer 9 does not exist"):
        TextEncoder(tiny_models["bert"], layer=9)
    enc = TextEncoder(tiny_models["bert"])
    with pytest.raises(InputError, match="position 1 .* empty after normalisation"):
        enc.encode(["fine", "sp  sp"])
    with pytest.raises(InputError, match="position 0 must be a string"):
        enc.encode([3])
    with pytest.raises(EncoderError, match="no CUDA device"):
        TextEncoder(tiny_models["bert"], device="cuda") if not torch.cuda.is_available() else pytest.skip("has CUDA")


@pytest.fixture
def speech_clips(shared_data):
    clips = []
    for name in ("aew_a0001", "axb_a0005", "axb_a0004"):
        samples, _ = soundfile.read(shared_data / "speech" / f"cmu_arctic_us_{name}.wav", dtype="float32")
        clips.append(torch.from_numpy(samples))
    return clips


@pytest.mark.parametrize("name", ["wav2vec2_layernorm", "whisper"])
def test_speech_pooling_is_batch_independent(tiny_models, speech_clips, name):
    enc = SpeechEncoder(tiny_models[name], batch_size=3)
    together = enc.encode(speech_clips)
    alone = torch.cat([enc.encode([c]).vectors for c in speech_clips])
    assert together.vectors.shape == (3, 32) and torch.isfinite(together.vectors).all()
    torch.testing.assert_close(together.vectors, alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["wav2vec2", "hubert", "wavlm"])
def test_group_norm_speech_encoders_are_batch_independent(tiny_models, speech_clips, name):
    # these feature encoders normalise over time (zero padding would shift results by up to ~50% on
    # random weights), so only equal-length windows share a batch
    enc = SpeechEncoder(tiny_models[name], batch_size=4)
    clips = speech_clips + [speech_clips[0].clone()]
    assert enc._batches([c.numpy() for c in clips]) == [[1], [2], [0, 3]]
    together = enc.encode(clips).vectors
    alone = torch.cat([enc.encode([c]).vectors for c in clips])
    assert together.shape == (4, 32) and torch.isfinite(together).all()
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(together[0], together[1])


def test_speech_layer_selection_and_windows(tiny_models, speech_clips):
    clip = speech_clips[0]  # 3.9 s
    last = SpeechEncoder(tiny_models["wav2vec2_layernorm"]).encode([clip]).vectors
    first = SpeechEncoder(tiny_models["wav2vec2_layernorm"], layer=1).encode([clip]).vectors
    assert not torch.allclose(last, first)
    windowed = SpeechEncoder(tiny_models["wav2vec2_layernorm"], window_seconds=1.5)
    out = windowed.encode([clip])
    assert out.notes == ["audio encoded in 3 windows of 1.5 s"]
    # the clip's vector is the frame-weighted mean of its windows' vectors: nothing is cut
    size = int(1.5 * 16000)
    pieces = [clip[i : i + size] for i in range(0, clip.numel(), size)]
    sums, counts = windowed._frame_sums([p.numpy() for p in pieces])
    torch.testing.assert_close(out.vectors[0], sums.sum(0) / counts.sum(), rtol=1e-5, atol=1e-5)


def test_precomputed_vectors_pass_through():
    enc = load_encoder("precomputed:3", modality="audio")
    out = enc.encode([[1, 2, 3], torch.tensor([4.0, 5.0, 6.0])])
    assert isinstance(out, Encoded) and torch.equal(out.vectors, torch.tensor([[1.0, 2, 3], [4, 5, 6]]))
    with pytest.raises(InputError, match="position 0 has 2 values, expected 3"):
        enc.encode([[1, 2]])
    with pytest.raises(InputError, match="NaN"):
        enc.encode([[1, float("nan"), 3]])


def test_load_encoder_specs_round_trip(tiny_models):
    enc = load_encoder(tiny_models["hubert"], modality="audio")
    assert isinstance(enc, SpeechEncoder) and enc.spec()["model"] == tiny_models["hubert"]
    again = load_encoder(enc.spec(), modality="audio")
    assert again.spec() == enc.spec()
    text = load_encoder({"kind": "text", "model": tiny_models["bert"], "pooling": "cls"}, modality="text")
    assert text.spec()["pooling"] == "cls"
    assert isinstance(PrecomputedEncoder("video", 35).spec(), dict)
    with pytest.raises(EncoderError, match="unknown encoder kind"):
        load_encoder({"kind": "magic"}, modality="audio")


def test_spec_with_unknown_keys_is_an_encoder_error():
    """A checkpoint's encoder spec is untrusted: an unknown key is refused by name, not a TypeError inside the
    encoder."""
    with pytest.raises(EncoderError, match=r"unknown key\(s\) \['bogus'\] in the text encoder spec"):
        load_encoder({"kind": "text", "bogus": 1}, modality="text")
    with pytest.raises(EncoderError, match="needs a 'model'"):
        load_encoder({"kind": "speech"}, modality="audio")
