"""fastdaf's native BERT computes what transformers' BertModel computes, on the default MiniLM and a tiny BERT."""

import pytest
import torch

from fastdaf.encoders import TextEncoder, default_text_model_path
from fastdaf.encoders.bert import load_native_bert
from fastdaf.errors import EncoderError

SENTENCES = [
    "this is sp another of my favorite albums now you might wonder",
    "i hated it.",
    "Ok!",
    "naïve café déjà vu, 3.5 stars",
]


@pytest.mark.parametrize("pooling, layer", [("mean", None), ("mean", [1, 2, 3, 4, 5, 6]), ("cls", 3), ("pooler", None)])
def test_native_minilm_matches_transformers(pooling, layer):
    native = TextEncoder(pooling=pooling, layer=layer, native=True)
    reference = TextEncoder(pooling=pooling, layer=layer, native=False)
    assert native.native and not reference.native
    a, b = native.encode(SENTENCES), reference.encode(SENTENCES)
    torch.testing.assert_close(a.vectors, b.vectors, rtol=1e-4, atol=2e-5)


def test_native_tokenizer_matches_transformers_with_truncation():
    native = TextEncoder(max_length=8, native=True)
    reference = TextEncoder(max_length=8, native=False)
    n = native.tokenizer(SENTENCES, padding=True, truncation=True, max_length=8, return_tensors="pt")
    r = reference.tokenizer(SENTENCES, padding=True, truncation=True, max_length=8, return_tensors="pt")
    assert torch.equal(n["input_ids"], r["input_ids"]) and torch.equal(n["attention_mask"], r["attention_mask"])
    assert native.encode(SENTENCES).notes == reference.encode(SENTENCES).notes


def test_native_tiny_bert_and_fallbacks(tiny_models, tmp_path):
    torch.testing.assert_close(
        TextEncoder(tiny_models["bert"], native=True).encode(SENTENCES).vectors,
        TextEncoder(tiny_models["bert"], native=False).encode(SENTENCES).vectors,
        rtol=1e-4,
        atol=1e-5,
    )
    assert load_native_bert(tmp_path) is None  # no checkpoint: transformers reports the problem
    with pytest.raises(EncoderError, match="native BERT"):
        TextEncoder(str(tmp_path), native=True)
    assert load_native_bert(default_text_model_path()) is not None
