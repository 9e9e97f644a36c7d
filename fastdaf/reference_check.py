"""The reference-check kit: how every fast path of the head is checked against `DAFHead`.

One place for what the kernel tests (tests/test_fused_head.py), `fastdaf-bench` and
benchmarks/gpu_check.py share: random heads with non-trivial weights, the reference head
evaluated in float64 on the same (already rounded) inputs, the norm-wise relative error, and the
tolerance for each input dtype and dot precision.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .config import DAFConfig
from .head import DAFHead

# Norm-wise relative error ||got - want|| / ||want|| allowed against float64, keyed by input dtype
# and, for fp32, the precision of the dots. For heads with weights ~N(0, 0.4), the largest the
# tests use:
# - fp32 "ieee": full fp32 dots; measured at most a few 1e-6 in the interpreter.
# - fp32 "tf32": tf32 keeps 10 mantissa bits, each operand off by at most u = 2^-11 = 4.9e-4 (2u
#   if the hardware truncates), over three chained dots (projection, scoring, output MLP). The
#   interpreter computes these dots in full fp32, so only a GPU run (benchmarks/gpu_check.py) checks
#   this bound. An emulation (tf32-rounded operands in a float64 reference, 120 heads,
#   benchmarks/accuracy_checks.py, RESULTS.md) gives a median of 1.1e-3 but a worst score error of
#   1.9e-2 (weights 1.6e-2) at text 768 + audio 74, P=256: above this bound, so a GPU run may flag
#   tf32 cases that are rounding, not a bug; its recorded errors decide whether the bound moves.
# - fp16: fp16 operands (u = 4.9e-4) with fp32 accumulation: worst 5.8e-3 over 70 heads.
# - bf16: bf16 inputs on fp32 weights in tf32 dots, compared on the same rounded inputs.
# A lone output of one row can cancel to near zero while its terms are large, which says nothing of
# the kernel: single-row checks use several outputs.
TOLERANCE: dict[tuple[str, str | None], float] = {
    ("fp32", "ieee"): 1e-4,
    ("fp32", "tf32"): 1e-2,
    ("fp16", None): 2e-2,
    ("bf16", None): 2e-2,
}
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def tolerance(dtype: torch.dtype, precision: str = "tf32") -> float:
    """TOLERANCE for inputs of `dtype`; `precision` ("ieee" or "tf32") matters for fp32 only."""
    name = DTYPE_NAMES[dtype]
    return TOLERANCE[(name, precision if name == "fp32" else None)]


def random_head(
    config: DAFConfig,
    device: torch.device | str = "cpu",
    seed: int = 0,
    *,
    generator: torch.Generator | None = None,
    weight_std: float = 0.05,
) -> DAFHead:
    """A head with random (non-zero) weights and standardisation: checks and timings never run on zeros.

    weight_std 0.05 keeps scores in range (timing); the kernel checks use 0.4, which gives
    non-trivial modality weights. `generator` overrides `seed`.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    head = DAFHead(config)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0.0, weight_std, generator=g)
        for m, d in config.modalities.items():
            head.set_input_stats(m, torch.randn(d, generator=g), torch.rand(d, generator=g) + 0.5)
    return head.to(device).eval()


def reference64(head: DAFHead, features: Mapping[str, Tensor], present: Tensor | None) -> tuple[Tensor, Tensor]:
    """(score, weights) of the reference head evaluated in float64 on the given inputs, on their device."""
    device = next(iter(features.values())).device
    ref = DAFHead(head.config).to(device).double().eval()
    ref.load_state_dict(head.state_dict())
    with torch.no_grad():
        out = ref({m: x.double() for m, x in features.items()}, present)
    return out.score, out.weights


def relative_error(got: Tensor, want: Tensor) -> float:
    """Norm-wise relative error ||got - want|| / ||want||, the measure the tolerances refer to."""
    return ((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-12)).item()
