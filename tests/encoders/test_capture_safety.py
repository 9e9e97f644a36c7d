"""What a CUDA graph captures must not wait for the host or copy from it (issue 23): checked on CPU.

A CUDA graph replays the kernels recorded once; an operation that synchronises (`.item()`, `bool(t)`, ops whose
output size depends on the data) or copies host data to the device (`torch.tensor(python_list, device=...)`) inside
the captured region fails the capture on a GPU. No GPU is needed to find them: every such operation reaches
PyTorch's dispatcher as an op of its own (a tensor made from Python data is `aten.lift_fresh`), so each core the
graph runners capture (fastdaf.encoders.runners) and each head runs here under a dispatch mode that records them.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastdaf import DAFConfig, DAFHead

HOST_BOUND = {
    "aten.lift_fresh": "a tensor made from Python data (a host-to-device copy on CUDA)",
    "aten.lift_fresh_copy": "a tensor made from Python data (a host-to-device copy on CUDA)",
    "aten._local_scalar_dense": "a tensor read on the host (.item(), bool(), int(), float())",
    "aten.is_nonzero": "a tensor read on the host (if tensor:)",
    "aten.equal": "torch.equal, read on the host",
    "aten.nonzero": "an output size that depends on the data (synchronises)",
    "aten.masked_select": "an output size that depends on the data (synchronises)",
    "aten._unique2": "an output size that depends on the data (synchronises)",
    "aten.unique_consecutive": "an output size that depends on the data (synchronises)",
}


class HostBoundOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name in HOST_BOUND:
            self.found[name] = HOST_BOUND[name]
        if name == "aten.index" and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]):
            self.found["aten.index (boolean mask)"] = "an output size that depends on the data (synchronises)"
        return func(*args, **(kwargs or {}))


def host_bound_ops(fn, *args, **kwargs) -> dict[str, str]:
    fn(*args, **kwargs)  # warm-up outside the mode, as the graph runners do before capturing (caches fill here)
    with torch.no_grad(), HostBoundOps() as mode:  # not inference_mode: there .item() on CPU skips the dispatcher
        fn(*args, **kwargs)
    return mode.found


def test_the_tracer_finds_what_a_capture_refuses():
    """The check itself: each kind of host-bound operation is caught, and plain device work is not."""
    x = torch.randn(4)
    assert host_bound_ops(lambda: x + torch.tensor([1.0, 2.0, 3.0, 4.0])) == {
        "aten.lift_fresh": HOST_BOUND["aten.lift_fresh"]
    }
    assert "aten._local_scalar_dense" in host_bound_ops(lambda: x.sum().item())
    assert "aten.nonzero" in host_bound_ops(lambda: (x > 0).nonzero())
    assert "aten.index (boolean mask)" in host_bound_ops(lambda: x[x > 0])
    assert host_bound_ops(lambda: (x + torch.arange(4) * torch.full((), 0.5)).softmax(-1)) == {}


def test_acoustic_core_is_capture_safe():
    from fastdaf.encoders import AcousticEncoder

    encoder = AcousticEncoder(device="cpu")
    waves = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    assert host_bound_ops(encoder.core, waves, torch.tensor([16000, 12000])) == {}


def test_native_text_core_is_capture_safe(tiny_models):
    """fastdaf's own BERT (what BERT-architecture checkpoints run on, the bundled models' included). Other
    architectures run transformers' code, which reads a tensor on the host (transformers 5.25; see the next tests)."""
    from fastdaf.encoders import TextEncoder

    encoder = TextEncoder(str(tiny_models["bert"]), native=True, layer=[1, 2], device="cpu")
    tokens = encoder.tokenizer(["a short one", "and a longer sentence to pad"], padding=True, return_tensors="pt")
    assert host_bound_ops(encoder.core, tokens["input_ids"], tokens["attention_mask"]) == {}


def test_whisper_core_is_capture_safe(tmp_path):
    from fastdaf.encoders.whisper import WhisperAudioEncoder, WhisperEncoder
    from fastdaf.encoders.whisper_weights import WhisperDims, save_whisper

    dims = WhisperDims(n_mels=80, d_model=32, n_heads=2, n_layers=2, ffn_dim=48, max_positions=1500, full_layers=2)
    save_whisper(tmp_path / "w", dims, WhisperAudioEncoder(dims).state_dict())
    encoder = WhisperEncoder(str(tmp_path / "w"), layer=2, pooling="mean+std", device="cpu")
    mel = torch.randn(2, 300, 80, generator=torch.Generator().manual_seed(0))
    assert host_bound_ops(encoder.core, mel, torch.tensor([300, 180])) == {}


@pytest.mark.parametrize("fusion", ["dynamic", "static", "mean", "concat"])
def test_reference_head_is_capture_safe_without_its_input_check(fusion):
    """check=False is the head's capture contract: the refusal of rows without modalities reads the mask on the
    host, so a captured call leaves it to its caller."""
    head = DAFHead(DAFConfig({"text": 12, "audio": 6}, fusion=fusion, n_outputs=2)).eval()
    features = {"text": torch.randn(3, 12), "audio": torch.randn(3, 6)}
    present = torch.tensor([[True, True], [True, False], [False, True]])
    assert host_bound_ops(head, features, present, check=False) == {}
    assert set(host_bound_ops(head, features, present)) == {"aten._local_scalar_dense"}


def test_fused_head_is_capture_safe_without_its_input_check():
    """The fused head's host side (fastdaf.fused: buffers, the mask's conversion, the launch) under the same
    contract as the reference head; its kernel runs in Triton's interpreter here, never on the dispatcher."""
    from fastdaf.fused import FusedDAFHead
    from fastdaf.reference_check import random_head

    fused = FusedDAFHead.from_head(random_head(DAFConfig({"text": 12, "audio": 6}, n_outputs=2)))
    features = {"text": torch.randn(3, 12), "audio": torch.randn(3, 6)}
    present = torch.tensor([[True, True], [True, False], [False, True]])
    out = (torch.empty(3, 2), torch.empty(3, 2))
    assert host_bound_ops(lambda: fused(features, present, out=out, check=False)) == {}
    assert set(host_bound_ops(fused, features, present)) == {"aten._local_scalar_dense"}


@pytest.mark.parametrize("name", ["wav2vec2", "wav2vec2_layernorm", "hubert", "wavlm", "whisper"])
def test_speech_cores_that_say_they_are_capturable_are(tiny_models, name):
    """transformers' speech models: those a CUDA graph may capture (`capturable`, which `auto` and `cudagraph`
    obey) read nothing on the host; masked wav2vec2-style models, whose mask transformers reads, say they are not."""
    import numpy as np

    from fastdaf.encoders.runners import resolve_backend
    from fastdaf.encoders.speech import SpeechEncoder
    from fastdaf.errors import UnsupportedError

    encoder = SpeechEncoder(tiny_models[name], device="cpu")
    inputs = encoder._inputs([np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1,
                              np.zeros(9000, dtype=np.float32)])  # fmt: skip
    found = host_bound_ops(encoder.core, **inputs)
    assert encoder.capturable == (name != "wav2vec2_layernorm")
    if encoder.capturable:
        assert found == {}
    else:
        cuda = torch.device("cuda")
        assert resolve_backend("auto", cuda, capturable=False) in ("eager", "tensorrt")
        with pytest.raises(UnsupportedError, match="host"):
            resolve_backend("cudagraph", cuda, capturable=False)


def test_transformers_text_models_are_never_captured(tiny_models):
    """A text checkpoint fastdaf's BERT does not run (here: forced) runs transformers' code, which is not
    capture-safe: `auto` keeps it off CUDA graphs. The bench's text cores (gpu_check's) run fastdaf's BERT."""
    from fastdaf.bench import text_core
    from fastdaf.encoders import TextEncoder

    encoder = TextEncoder(tiny_models["bert"], native=False, device="cpu")
    assert not encoder.capturable
    runner, _, _ = text_core("minilm", torch.device("cpu"), torch.float32, "eager", 128)
    ids = torch.randint(1000, 2000, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 9:] = 0
    assert host_bound_ops(runner.core, ids, mask) == {}
