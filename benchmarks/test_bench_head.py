"""pytest-benchmark cases for the DAF head paths (`pytest benchmarks/ --benchmark-only`).

CPU: the reference head as it is and under torch.compile; CUDA: also the fused Triton head and both
under CUDA graphs. The same callables (and backend names) as `fastdaf-bench head`, so the two never
disagree on what they time. These cases write no benchmark rows (fastdaf.bench_rows): pytest-benchmark
keeps its own records (`--benchmark-json FILE`, `--benchmark-autosave`); `fastdaf-bench head` times
the same callables and appends its rows to benchmarks/results.jsonl.
"""

import pytest
import torch

from fastdaf import DAFConfig
from fastdaf.bench_head import BACKENDS, CUDA_ONLY, head_callables, random_features, synchronize
from fastdaf.encoders import pick_device
from fastdaf.reference_check import random_head

DEVICE = pick_device("auto")


@pytest.mark.parametrize("batch", [1, 64, 4096])
@pytest.mark.parametrize("backend", BACKENDS)
def test_head_latency(benchmark, backend, batch):
    if backend in CUDA_ONLY and DEVICE.type != "cuda":
        pytest.skip(f"{backend} needs a CUDA device")
    cfg = DAFConfig({"text": 768, "audio": 74}, projection_size=256)
    head = random_head(cfg, DEVICE)
    feats, present = random_features(cfg, batch, torch.float32, DEVICE)
    with torch.no_grad():
        fn = head_callables(head, feats, present, [backend])[backend]
        fn()  # compile / autotune / capture outside the timed rounds

        def call():
            fn()
            synchronize(DEVICE)

        benchmark.extra_info.update(device=str(DEVICE), batch=batch)
        benchmark(call)
