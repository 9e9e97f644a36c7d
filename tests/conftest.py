import os
import zlib
from pathlib import Path

import pytest
import torch
from builders import SHARED_DATA

# Triton kernels run on CPU tensors only in the interpreter; it must be chosen before triton.jit runs.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Benchmarks run by tests write no rows into the checkout's benchmarks/results.jsonl (subprocesses inherit this).
os.environ.setdefault("FASTDAF_BENCH_RESULTS", "none")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


# Random draws are seeded: FASTDAF_TEST_SEED=N replays or varies them (default 0); the seed is
# printed, so pytest shows it beside any failure.
TEST_SEED = int(os.environ.get("FASTDAF_TEST_SEED", "0"))


@pytest.fixture
def rng(request) -> torch.Generator:
    """A generator seeded from FASTDAF_TEST_SEED and the test's name: every test draws its own
    values, the same on every run, and a failure replays with the seed it prints."""
    seed = (TEST_SEED * 1_000_003 + zlib.crc32(request.node.nodeid.encode())) % 2**63
    print(f"random seed {seed} (FASTDAF_TEST_SEED={TEST_SEED})")
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def no_work(monkeypatch):
    """Any model load or data load fails the test: a refusal must come before the work."""
    import fastdaf.cli

    def work(*args, **kwargs):
        raise AssertionError("work started before the refusal")

    for name in ("SentimentPredictor", "FeatureExtractor", "extract_manifest", "load_data"):
        monkeypatch.setattr(fastdaf.cli, name, work)


@pytest.fixture(scope="module")
def text_extractor():
    """A FeatureExtractor with the default text encoder and no audio encoder."""
    from fastdaf.extractor import FeatureExtractor

    return FeatureExtractor("default", None)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Tiny random Hugging Face encoders saved to disk, loaded back by path like a user's checkpoint."""
    import transformers as tf

    from fastdaf.encoders import default_text_model_path

    root = tmp_path_factory.mktemp("tiny_models")
    paths = {}
    tokenizer = tf.AutoTokenizer.from_pretrained(default_text_model_path())
    bert = tf.BertModel(
        tf.BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
        )
    )
    paths["bert"] = root / "bert"
    bert.save_pretrained(paths["bert"])
    tokenizer.save_pretrained(paths["bert"])

    speech = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    extractor = tf.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )
    for name, model in {
        "wav2vec2": tf.Wav2Vec2Model(tf.Wav2Vec2Config(**speech)),
        "wav2vec2_layernorm": tf.Wav2Vec2Model(
            tf.Wav2Vec2Config(**speech, feat_extract_norm="layer", do_stable_layer_norm=True)
        ),
        "hubert": tf.HubertModel(tf.HubertConfig(**speech)),
        "wavlm": tf.WavLMModel(tf.WavLMConfig(**speech, num_buckets=16, max_bucket_distance=64)),
    }.items():
        paths[name] = root / name
        model.save_pretrained(paths[name])
        extractor.save_pretrained(paths[name])
    whisper = tf.WhisperModel(
        tf.WhisperConfig(
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=37,
            decoder_ffn_dim=37,
            num_mel_bins=80,
            vocab_size=64,
            max_target_positions=16,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            suppress_tokens=[],
            begin_suppress_tokens=[],
        )
    )
    paths["whisper"] = root / "whisper"
    whisper.save_pretrained(paths["whisper"])
    tf.WhisperFeatureExtractor(feature_size=80).save_pretrained(paths["whisper"])
    return {k: str(v) for k, v in paths.items()}
