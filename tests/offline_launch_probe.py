"""Run by tests/test_gpu_compile.py in a fresh process (the kernel must compile, not be interpreted):
the direct launch of a cached kernel passes the driver exactly what Triton's own dispatch passes,
and a call whose specialisation differs goes through Triton again. Prints one JSON object.

`--pretend-triton VERSION` makes triton report another version first: on one the direct launch was not
written for, every call must go through Triton's own dispatch (and still launch)."""

from __future__ import annotations

import json
import os
import sys

assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0")

import torch  # noqa: E402

from fastdaf import DAFConfig, DAFHead  # noqa: E402
from fastdaf.fused import FusedDAFHead  # noqa: E402
from fastdaf.kernels import daf_head  # noqa: E402
from fastdaf.kernels.offline import NoLaunch, offline_target  # noqa: E402

if "--pretend-triton" in sys.argv:
    import triton

    triton.__version__ = sys.argv[sys.argv.index("--pretend-triton") + 1]

triton_calls = 0
_run = daf_head.daf_head_kernel_tuned.run


def counting_run(*args, **kwargs):
    global triton_calls
    triton_calls += 1
    return _run(*args, **kwargs)


daf_head.daf_head_kernel_tuned.run = counting_run


def comparable(args: tuple) -> list:
    """The launcher's arguments: grid, stream, function, packed metadata, then (after the launch
    metadata and the two hook chains, which only matter when a hook is installed) every kernel argument."""
    args = args[:6] + args[9:]
    return [("tensor", a.data_ptr(), str(a.dtype)) if isinstance(a, torch.Tensor) else repr(a) for a in args]


def features(batch: int, misaligned: bool):
    text = torch.randn(batch, 768 + 1)
    text = text[:, 1:] if misaligned else text[:, :768]  # offset by 4 bytes: not 16-byte aligned
    return {"text": text, "audio": torch.randn(batch, 74)}


cfg = DAFConfig({"text": 768, "audio": 74}, projection_size=64, attention_size=32, hidden_size=32)
head = DAFHead(cfg).eval()
results = []
with offline_target(90), torch.no_grad():
    through_triton = FusedDAFHead.from_head(head)
    through_triton.direct_launch = False
    direct = FusedDAFHead.from_head(head)
    direct._by_dtype = through_triton._by_dtype  # the same weight tensors, so the arguments can be compared
    for batch, misaligned, with_mask in [
        (1, False, False),
        (16, False, True),
        (17, False, True),
        (17, True, True),
        (16, False, True),
        (1, False, False),
    ]:
        feats = features(batch, misaligned)
        present = torch.ones(batch, 2, dtype=torch.bool) if with_mask else None
        out = (torch.empty(batch, 1), torch.empty(batch, 2))
        through_triton(feats, present, out=out, check=False)
        want = comparable(NoLaunch.last_args)
        before, launches = triton_calls, NoLaunch.launches
        direct(feats, present, out=out, check=False)
        first = comparable(NoLaunch.last_args)
        first_via_triton = triton_calls > before
        before = triton_calls
        direct(feats, present, out=out, check=False)
        second = comparable(NoLaunch.last_args)
        launched = NoLaunch.launches - launches
        results.append(
            {
                "batch": batch,
                "misaligned": misaligned,
                "mask": with_mask,
                "first_via_triton": first_via_triton,
                "second_via_triton": triton_calls > before,
                "first_equal": first == want,
                "second_equal": second == want,
                "n_args": len(want),
                "launched": launched,
                "direct_enabled": direct.direct_launch and all(launch.direct for launch in direct._plans.values()),
            }
        )
print(json.dumps(results))
