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
from .dtypes import DTYPE_NAMES
from .fused import FusedDAFHead
from .head import DAFHead, check_inputs, full_mask, masked_softmax

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


# --------------------------------------------------------------------------- componentwise checks
# A single output can cancel to near zero while the terms that make it are large, and then its
# relative error says nothing of the kernel (gpu_check's B=1 check failed about 1 run in 10 at fp32
# tf32 that way, with no bug). The componentwise check divides each output's error by the size that
# rounding errors of the kernel's operands give it (`error_scales64`), which no cancellation can
# shrink. Bounds, per input dtype and dot precision: about 3x the worst of the kernel's rounding
# model (`kernel_rounding_model64`: every dot operand rounded as the compiled kernel rounds it, tf32
# by truncation) over 400 random heads at gpu_check's shapes (benchmarks/gpu_check_bounds.py;
# RESULTS.md, "gpu_check's bounds"): worst 2.0e-3 (tf32), 1.8e-3 (bf16), 4.7e-4 (fp16), 6e-8 (ieee).
# A typical score is a seventh of its scale (median 0.14), so a bug that moves a score by 4% of its
# value (tf32), or 1.5% (fp16), fails.
COMPONENTWISE_TOLERANCE: dict[tuple[str, str | None], float] = {
    ("fp32", "ieee"): 1e-5,
    ("fp32", "tf32"): 6e-3,
    ("fp16", None): 2e-3,
    ("bf16", None): 6e-3,
}
# the largest slope of each activation, |f'(x)| (gelu's is 1.13 near x = 0.75; silu's 1.1 near 2.4)
ACTIVATION_SLOPE = {"gelu": 1.13, "relu": 1.0, "tanh": 1.0, "silu": 1.1}


def _folded64(head: DAFHead, device: torch.device) -> dict[str, Tensor]:
    """The kernel's weights in float64 (the input standardisation folded in, as fastdaf.fused does)."""
    fused = FusedDAFHead.from_head(head).to(device)
    return {name: t.double() for name, t in fused.named_buffers()}


def _projections64(head: DAFHead, w: dict[str, Tensor], features: Mapping[str, Tensor], operand) -> dict:
    """Per given modality: (activated projection, scale of its terms) in float64, [B, P] each."""
    out = {}
    for m, x in features.items():
        x64, W, b = x.double(), w[f"proj_w_{m}"], w[f"proj_b_{m}"]
        out[m] = (head.activation(operand(x64) @ operand(W) + b), _terms(x64, None, W, b))
    return out


def _terms(x: Tensor, x_scale: Tensor | None, W: Tensor, b: Tensor | None) -> Tensor:
    """Scale of y = x W + b: the root sum of squares of its terms x_i W_ij, of the errors x_scale
    carries in through W, and of the bias. Rounding errors of independent terms add like a random
    walk, so this is the size they reach, and no sign of any term can make it small."""
    sq = (x * x) @ (W * W)
    if x_scale is not None:
        sq = sq + (x_scale * x_scale) @ (W * W)
    if b is not None:
        sq = sq + b * b
    return sq.sqrt()


def error_scales64(head: DAFHead, features: Mapping[str, Tensor], present: Tensor | None) -> tuple[Tensor, Tensor]:
    """(score scale [B] or [B, NO], weight scale [B, M]) in float64: the size that rounding errors of
    relative size u in every operand give each output, over u (`_terms` at every dot of the kernel's
    operands, activation slopes for nonlinearities, the errors of the modality weights carried into the
    fused vector). Unlike an output itself, a scale cannot cancel to zero."""
    cfg = head.config
    device = next(iter(features.values())).device
    w = _folded64(head, device)
    slope = ACTIVATION_SLOPE[cfg.activation]
    mask = full_mask(*check_inputs(cfg, features, present))
    _, want_weights = reference64(head, features, present)
    proj = _projections64(head, w, features, lambda t: t)
    B = mask.shape[0]
    # a weight w_m = softmax(s)_m moves by dw_m = w_m (ds_m - sum_k w_k ds_k): with logit scales S_k,
    # at most w_m ((1 - w_m) S_m + sum_{k != m} w_k S_k); plus w_m for its own rounding (all of it in
    # static and mean fusion, where the logits are constants)
    W = want_weights.to(torch.float64)
    logit_scale = torch.zeros_like(W)
    if cfg.fusion == "dynamic":
        for i, m in enumerate(cfg.modality_names):
            if m in proj:
                h, a = proj[m]
                t_scale = _terms(h, slope * a, w["score_w"], w["score_b"])  # tanh's slope is at most 1
                t = torch.tanh(h @ w["score_w"] + w["score_b"])
                logit_scale[:, i] = _terms(t, t_scale, w["score_v"][:, None], None)[:, 0] / cfg.temperature
    others = (W * logit_scale).sum(dim=1, keepdim=True) - W * logit_scale
    weight_scale = W * ((1 - W) * logit_scale + others + 1.0)
    z_sq = torch.zeros(B, cfg.projection_size, dtype=torch.float64, device=device)
    z = torch.zeros_like(z_sq)
    for i, m in enumerate(cfg.modality_names):
        if m in proj:
            h, a = proj[m]
            keep = mask[:, i, None]
            wi = W[:, i, None]
            z = z + torch.where(keep, wi * h, 0.0)
            z_sq = z_sq + torch.where(keep, (wi * slope * a) ** 2 + (h * weight_scale[:, i, None]) ** 2, 0.0)
    hidden_pre = z @ w["mlp_w1"] + w["mlp_b1"]
    hidden_scale = slope * _terms(z, z_sq.sqrt(), w["mlp_w1"], w["mlp_b1"])
    score = _terms(head.activation(hidden_pre), hidden_scale, w["mlp_w2"], w["mlp_b2"])
    if cfg.n_outputs == 1:
        score = score.squeeze(-1)
    return score, weight_scale


def componentwise_error(got: Tensor, want: Tensor, scale: Tensor) -> float:
    """max |got - want| / scale over the outputs; infinite where one is NaN and the other is not
    (rows without modalities score NaN in both)."""
    got, want = got.double(), want.double()
    if bool((got.isnan() != want.isnan()).any()):
        return float("inf")
    both = ~want.isnan()
    if not bool(both.any()):
        return 0.0
    return ((got - want).abs()[both] / scale.expand_as(want)[both].clamp_min(1e-300)).max().item()


def tf32_truncate(t: Tensor) -> Tensor:
    """t rounded to tf32 as the tensor cores take fp32 operands: the low 13 of fp32's 23 mantissa bits
    dropped (truncation, not rounding to nearest)."""
    bits = t.float().view(torch.int32)
    return (bits & ~((1 << 13) - 1)).view(torch.float32).double()


def _fp16_rounded(t: torch.Tensor) -> torch.Tensor:
    return t.half().double()


def _fp32_rounded(t: torch.Tensor) -> torch.Tensor:
    return t.float().double()


def kernel_rounding_model64(
    head: DAFHead, features: Mapping[str, Tensor], present: Tensor | None, precision: str = "tf32"
) -> tuple[Tensor, Tensor]:
    """(score, weights) of the head computed the way the compiled fused kernel rounds, in float64
    otherwise: its weights (folded, in the operand dtype fastdaf.fused gives the kernel), and every dot
    operand rounded as the tensor cores take it: fp16 (inputs fp16: the projection, fused vector and
    hidden layer are converted to fp16 before their dots), tf32 truncation (fp32 inputs with "tf32",
    and bf16 inputs, which run on fp32 weights in tf32), fp32 (fp32 with "ieee"). The Triton interpreter
    computes every dot in full fp32, so this is how a CPU knows what a GPU's rounding may cost."""
    cfg = head.config
    dtype = next(iter(features.values())).dtype
    device = next(iter(features.values())).device
    kernel_weights = FusedDAFHead.from_head(head).to(device).weights_for(dtype, device)
    w = {name: t.double() for name, t in kernel_weights.items()}
    if dtype == torch.float16:
        operand = _fp16_rounded
    elif dtype == torch.float32 and precision == "ieee":
        operand = _fp32_rounded
    else:
        operand = tf32_truncate
    mask = full_mask(*check_inputs(cfg, features, present))
    proj = _projections64(head, w, features, operand)
    B, P = mask.shape[0], cfg.projection_size
    stacked = torch.stack(
        [
            torch.where(mask[:, i, None], proj[m][0], 0.0) if m in proj else torch.zeros(B, P, dtype=torch.float64)
            for i, m in enumerate(cfg.modality_names)
        ],
        dim=1,
    )
    if cfg.fusion == "dynamic":
        t = torch.tanh(operand(stacked) @ operand(w["score_w"]) + w["score_b"])
        logits = torch.where(mask, t @ w["score_v"], 0.0)
        weights = masked_softmax(logits, mask, cfg.temperature)
    elif cfg.fusion == "static":
        weights = masked_softmax(w["static_logits"].expand(B, -1), mask, cfg.temperature)
    else:
        weights = mask.double() / mask.sum(dim=1, keepdim=True).double()
    fused = (weights.unsqueeze(-1) * stacked).sum(dim=1)
    hidden = head.activation(operand(fused) @ operand(w["mlp_w1"]) + w["mlp_b1"])
    score = operand(hidden) @ operand(w["mlp_w2"]) + w["mlp_b2"]
    score = torch.where(mask.any(dim=1, keepdim=True), score, float("nan"))
    return (score.squeeze(-1) if cfg.n_outputs == 1 else score), weights
