"""Host cost of one FusedDAFHead call, launch stubbed: Triton's dispatch against the direct launch.

At batch 1 the fused head's target is "within 1.5x of an empty Triton launch", so every microsecond
of Python before the driver's launch counts. This runs on a CPU: the kernel is compiled for sm_90
with Triton's real compiler (fastdaf.kernels.offline) and the launch itself is a no-op, so what is
timed is fastdaf's checks and binding plus either Triton's autotuner dispatch and argument binder
(`triton_dispatch`: FusedDAFHead.direct_launch = False, what every call cost before) or the cached
direct launch (`direct`), side by side in one process, best of 5 rounds of 3000 calls.

    python benchmarks/host_overhead.py            # TRITON_INTERPRET must be unset
"""

from __future__ import annotations

import json
import os
import sys
import time

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    sys.exit("host_overhead: unset TRITON_INTERPRET (the kernel must be compiled, not interpreted)")

import torch  # noqa: E402

from fastdaf import DAFConfig, DAFHead  # noqa: E402
from fastdaf.bench import environment  # noqa: E402
from fastdaf.fused import FusedDAFHead  # noqa: E402
from fastdaf.kernels.offline import NoLaunch, offline_target  # noqa: E402


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
    head = DAFHead(cfg).eval()
    feats = {"text": torch.randn(1, 768), "audio": torch.randn(1, 74)}
    present = torch.ones(1, 2, dtype=torch.bool)
    out = (torch.empty(1, 1), torch.empty(1, 2))
    result = {"environment": environment(torch.device("cpu")), "unit": "us per call, launch stubbed"}
    with offline_target(90), torch.no_grad():
        heads = {"triton_dispatch": FusedDAFHead.from_head(head), "direct": FusedDAFHead.from_head(head)}
        heads["triton_dispatch"].direct_launch = False
        for name, fused in heads.items():
            fused(feats, out=out, check=False)  # compiles (and "autotunes") once
            fused(feats, present, out=out, check=False)
            before = NoLaunch.launches
            result[name] = {
                "no_mask": best_of(lambda: fused(feats, out=out, check=False)),
                "mask": best_of(lambda: fused(feats, present, out=out, check=False)),
                "mask_checked": best_of(lambda: fused(feats, present, out=out)),
            }
            assert NoLaunch.launches > before, "the stubbed launch was never reached"
    result["ratio_dispatch_over_direct"] = {
        k: result["triton_dispatch"][k] / result["direct"][k] for k in result["direct"]
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
