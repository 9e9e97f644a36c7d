"""Encoder backends: bucketed padding is exact, no host synchronisation in what graphs capture,
ONNX exports match eager in onnxruntime, and every unsupported choice is refused clearly."""

import numpy as np
import pytest
import soundfile
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fastdaf.encoders.runners as backends
from fastdaf.config import DAFConfig
from fastdaf.encoders import AcousticEncoder, SpeechEncoder, TextEncoder
from fastdaf.encoders.runners import (
    BucketedRunner,
    Buckets,
    ExactShapes,
    InputSpec,
    export_onnx,
    graph_policy,
    make_runner,
    pad_to,
    resolve_backend,
)
from fastdaf.errors import EncoderError, UnsupportedError
from fastdaf.head import DAFHead

SENTENCES = ["a short one", "this one is quite a lot longer than the first sentence here", "mid length words"]
# ops that need tensor data on the host: they would break CUDA-graph capture (and sync the stream)
HOST_SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "unique", "_unique2", "item"}


class OpRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def assert_no_host_sync(fn):
    with OpRecorder() as rec:
        fn()
    assert not rec.ops & HOST_SYNC_OPS, rec.ops & HOST_SYNC_OPS


@pytest.fixture(scope="module")
def clips():
    from builders import SHARED_DATA

    paths = sorted((SHARED_DATA / "speech").glob("*.wav"))[:3]
    if not paths:
        pytest.skip("shared speech clips missing")
    return [torch.from_numpy(soundfile.read(p, dtype="float32")[0]) for p in paths]


def text_inputs(enc, sentences):
    batch = enc.tokenizer(sentences, padding=True, return_tensors="pt")
    return {k: batch[k] for k in ("input_ids", "attention_mask")}


def test_bucketed_text_core_is_exact_and_pool_bounded(tiny_models):
    enc = TextEncoder(tiny_models["bert"], layer=[1, 2])
    runner = BucketedRunner(
        enc.core,
        {"input_ids": InputSpec(pad=0), "attention_mask": InputSpec(pad=0)},
        Buckets(batch=(1, 2, 4), length=(8, 16, 32)),
        max_graphs=2,
    )
    for sentences in (SENTENCES[:1], SENTENCES, SENTENCES[1:]):
        inputs = text_inputs(enc, sentences)
        torch.testing.assert_close(runner(inputs), enc.core(**inputs), rtol=1e-5, atol=1e-5)
    assert len(runner.pool) == 2  # three buckets used, the least recently used evicted
    big = text_inputs(enc, SENTENCES * 2)  # batch 6 > largest bucket: runs as it is
    torch.testing.assert_close(runner(big), enc.core(**big))


def test_bucketed_acoustic_core_is_exact(clips):
    enc = AcousticEncoder()
    lengths = torch.tensor([c.numel() for c in clips])
    padded = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    specs = {"waveforms": InputSpec(pad=0.0), "lengths": InputSpec(has_length=False, length_pad="size")}
    runner = BucketedRunner(enc.core, specs, Buckets(batch=(4,), length=(80000,)))
    padded_inputs = pad_to({"waveforms": padded, "lengths": lengths}, specs, 4, 80000)
    assert padded_inputs["lengths"].tolist() == lengths.tolist() + [80000]
    torch.testing.assert_close(
        runner({"waveforms": padded, "lengths": lengths}), enc.core(padded, lengths), rtol=1e-4, atol=1e-3
    )


def test_bucketed_masked_speech_core_is_exact(tiny_models, clips):
    enc = SpeechEncoder(tiny_models["wav2vec2_layernorm"])
    inputs = enc._inputs([c.numpy() for c in clips])
    specs = {
        "inputs": InputSpec(pad=0.0),
        "frames": InputSpec(has_length=False, pad=1),
        "attention_mask": InputSpec(pad=0),
    }
    runner = BucketedRunner(enc.core, specs, Buckets(batch=(4,), length=(16000 * 5,)))
    for got, want in zip(runner(inputs), enc.core(**inputs)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_graph_captured_cores_do_not_synchronise(tiny_models, clips, monkeypatch):
    # transformers skips its all-ones attention-mask shortcut (a host read) while a CUDA stream is
    # capturing; emulate capture so the recorder sees what a captured graph runs
    import transformers.utils.import_utils as hf_imports

    monkeypatch.setattr(hf_imports, "is_cuda_stream_capturing", lambda: True)
    text = TextEncoder(tiny_models["bert"], layer=[1, 2])
    assert_no_host_sync(lambda: text.core(**text_inputs(text, SENTENCES)))
    acoustic = AcousticEncoder()
    padded = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    assert_no_host_sync(lambda: acoustic.core(padded, torch.tensor([c.numel() for c in clips])))
    speech = SpeechEncoder(tiny_models["wav2vec2_layernorm"])
    inputs = speech._inputs([c.numpy() for c in clips])
    assert_no_host_sync(lambda: speech.core(**inputs))
    head = DAFHead(DAFConfig({"text": 32, "audio": 62})).eval()
    feats = {"text": torch.randn(3, 32), "audio": torch.randn(3, 62)}
    assert_no_host_sync(lambda: head(feats, torch.ones(3, 2, dtype=torch.bool), check=False))
    # the checked call does synchronise: the recorder sees it
    with OpRecorder() as rec:
        head(feats, torch.ones(3, 2, dtype=torch.bool))
    assert rec.ops & HOST_SYNC_OPS


def onnx_matches(core, example, other, output_names, tmp_path, atol):
    import onnxruntime as ort

    path = export_onnx(core, example, tmp_path / "core.onnx", output_names=output_names)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in other.items()})
    with torch.no_grad():
        want = core(**other)
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), atol=atol, rtol=1e-4)


@pytest.mark.parametrize("pooling, layer", [("mean", None), ("cls", [1, 2])])
def test_text_core_onnx_export_matches_eager(tiny_models, tmp_path, pooling, layer):
    enc = TextEncoder(tiny_models["bert"], pooling=pooling, layer=layer)
    onnx_matches(enc.core, text_inputs(enc, SENTENCES[:2]), text_inputs(enc, SENTENCES), ["vector"], tmp_path, 1e-5)


@pytest.mark.parametrize("name", ["wav2vec2_layernorm", "hubert"])
def test_speech_core_onnx_export_matches_eager(tiny_models, clips, tmp_path, name):
    enc = SpeechEncoder(tiny_models[name])
    example = enc._inputs([clips[0][:16000].numpy()])
    other = enc._inputs([clips[1][:24000].numpy()]) if not enc.pass_mask else enc._inputs([c.numpy() for c in clips])
    onnx_matches(enc.core, example, other, ["sums", "counts"], tmp_path, 1e-4)


def test_backend_choices_and_refusals(tiny_models):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("auto", cpu) == "eager"
    assert resolve_backend("auto", cuda, graph_safe=False) == "eager"
    assert resolve_backend("auto", cuda) in ("cudagraph", "tensorrt")
    assert resolve_backend("auto", cuda, exportable=False) == "cudagraph"
    with pytest.raises(UnsupportedError, match="runs on CUDA"):
        resolve_backend("cudagraph", cpu)
    assert resolve_backend("cudagraph", cuda, graph_safe=False) == "cudagraph"  # per exact shape (make_runner)
    with pytest.raises(UnsupportedError, match="features change with padding"):
        resolve_backend("tensorrt", cuda, graph_safe=False)
    with pytest.raises(UnsupportedError, match="Python package 'tensorrt'"):
        resolve_backend("tensorrt", cuda)  # TensorRT cannot be installed on these machines
    with pytest.raises(UnsupportedError, match="cannot be exported"):
        resolve_backend("tensorrt", cuda, exportable=False)
    with pytest.raises(EncoderError, match="backend 'fast'"):
        resolve_backend("fast", cpu)
    with pytest.raises(UnsupportedError, match="runs on CUDA"):
        TextEncoder(tiny_models["bert"], backend="cudagraph")


def test_compile_backend_matches_eager(tiny_models):
    eager = TextEncoder(tiny_models["bert"])
    compiled = TextEncoder(tiny_models["bert"], backend="compile")
    torch.testing.assert_close(
        compiled.encode(SENTENCES).vectors, eager.encode(SENTENCES).vectors, rtol=1e-4, atol=1e-5
    )
    assert isinstance(make_runner(eager.core, "eager", torch.device("cpu"), specs={}).core, torch.nn.Module)


class TimeNormalised(torch.nn.Module):
    """Like a group-norm feature encoder: zero padding changes every output."""

    def forward(self, inputs, frames):
        return (inputs - inputs.mean(dim=1, keepdim=True)).pow(2).mean(dim=1) + frames


def test_exact_shapes_run_cores_that_padding_would_change_unpadded_in_a_bounded_pool():
    specs = {"inputs": InputSpec(pad=0.0), "frames": InputSpec(has_length=False, pad=1)}
    policy = graph_policy(Buckets(batch=(1, 2, 4), length=(100, 200)), graph_safe=False)
    assert policy == ExactShapes(max_batch=4, max_length=200)
    assert policy.pick(3, 150) == (3, 150) and policy.pick(5, 150) is None and policy.pick(3, 201) is None
    assert policy.pick(2, None) == (2, None)
    assert graph_policy(Buckets(), graph_safe=True) == Buckets()
    core = TimeNormalised()
    made = []

    class Recording(BucketedRunner):  # the eager stand-in for CudaGraphRunner: same pool, same policy
        def make(self, example):
            made.append({n: tuple(t.shape) for n, t in example.items()})
            return super().make(example)

    runner = Recording(core, specs, policy, max_graphs=2)
    padded = BucketedRunner(core, specs, Buckets(batch=(4,), length=(200,)))
    g = torch.Generator().manual_seed(0)
    for batch, length in ((1, 150), (3, 150), (1, 150), (2, 120)):
        inputs = {"inputs": torch.randn(batch, length, generator=g), "frames": torch.full((batch,), 7)}
        want = core(**inputs)
        torch.testing.assert_close(runner(inputs), want, rtol=0, atol=0)
        assert not torch.allclose(padded(inputs), want)  # buckets would have changed the result
    assert made == [
        {"inputs": (1, 150), "frames": (1,)},
        {"inputs": (3, 150), "frames": (3,)},
        {"inputs": (2, 120), "frames": (2,)},
    ]
    assert list(runner.pool) == [(1, 150), (2, 120)]  # one entry per shape, least recently used evicted
    big = {"inputs": torch.randn(5, 150, generator=g), "frames": torch.full((5,), 7)}
    torch.testing.assert_close(runner(big), core(**big))  # beyond the bounds: eager, nothing captured
    assert len(made) == 3


def test_make_runner_gives_cudagraph_cores_that_padding_changes_exact_shapes(monkeypatch):
    built = {}

    class FakeGraphRunner:  # CudaGraphRunner needs a GPU; the choice of policy is what is tested
        def __init__(self, core, specs, buckets, *, max_graphs):
            built.update(buckets=buckets, max_graphs=max_graphs)

    monkeypatch.setattr(backends, "CudaGraphRunner", FakeGraphRunner)
    cuda = torch.device("cuda")
    buckets = Buckets(batch=(1, 8), length=(16000, 32000))
    make_runner(TimeNormalised(), "cudagraph", cuda, specs={}, buckets=buckets, graph_safe=False, max_graphs=3)
    assert built == {"buckets": ExactShapes(max_batch=8, max_length=32000), "max_graphs": 3}
    make_runner(TimeNormalised(), "cudagraph", cuda, specs={}, buckets=buckets)
    assert built["buckets"] is buckets
    assert isinstance(
        make_runner(TimeNormalised(), "auto", cuda, specs={}, buckets=buckets, graph_safe=False), backends.Runner
    )
    with pytest.raises(UnsupportedError, match="features change with padding"):
        make_runner(TimeNormalised(), "tensorrt", cuda, specs={}, graph_safe=False)
