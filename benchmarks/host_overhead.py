"""Host-side Python cost of one FusedDAFHead call before Triton's own launch (kernel call stubbed).

At batch 1 the fused head's target is "within 1.5x of an empty Triton launch", so whatever Python
runs before the launch counts. Runs on CPU (the kernel is never executed):

    TRITON_INTERPRET=1 python benchmarks/host_overhead.py
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from fastdaf import DAFConfig, DAFHead  # noqa: E402
from fastdaf.fused import FusedDAFHead  # noqa: E402


class _NoLaunch:
    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


def best_of(call, *, reps: int = 5, n: int = 3000) -> float:
    for _ in range(200):
        call()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(n):
            call()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def main() -> int:
    cfg = DAFConfig({"text": 768, "audio": 74}, projection_size=256)
    fused = FusedDAFHead.from_head(DAFHead(cfg).eval())
    feats = {"text": torch.randn(1, 768), "audio": torch.randn(1, 74)}
    present = torch.ones(1, 2, dtype=torch.bool)
    out = (torch.empty(1, 1), torch.empty(1, 2))
    fused(feats, out=out, check=False)
    fused(feats, present, out=out, check=False)
    for plan in fused._plans.values():
        plan.kernel = _NoLaunch()
    result = {
        "no_mask_us": best_of(lambda: fused(feats, out=out, check=False)),
        "mask_us": best_of(lambda: fused(feats, present, out=out, check=False)),
        "mask_checked_us": best_of(lambda: fused(feats, present, out=out)),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
