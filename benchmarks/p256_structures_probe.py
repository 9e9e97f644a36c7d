"""A compile probe, not a benchmark (it writes no benchmark rows: nothing runs, fastdaf.bench_rows is not used):
which structure of a 128-row P=256 fp16 two-modality head fits sm_90's registers?

Issue 23 asks for 50% of the HBM roofline at P=256, which needs >= 112 rows per read of the weights; the fused
head's 128-row tile spills (benchmarks/RESULTS.md, "The head's memory traffic"). Each structure here is the
smallest kernel that keeps what the real one must keep live, text (768) then audio (74) at P=256, compiled through
the ordinary launch path for sm_90 without a GPU (fastdaf.kernels.offline) and judged by the wheel's ptxas:

- `fused`:   the kernel's own structure, reduced: two projections, the first one's activation carried across the
             second projection's K loop as the fused vector (no scoring, no MLP). --pack holds that fp16 vector two
             values a register (inline PTX; Triton's fp16 tensors take a register a value), --tma loads the weights
             by tensor descriptor (TMA) instead of pointer tensors.
- `fold`:    no fused vector: each modality's step scores its projection (U by TMA, one dot) and folds it into the
             output MLP's first layer, q_m = h_m W1 (TMA); only q_1 [rows, 128] is carried across the second
             projection, and the softmax combines q_1 and q_2 at the end. --pack as above, for q_1.
- `fold-acc`: as `fold`, but one running q accumulated in the dot (q = (p h) W1 + alpha q), flash-attention style.
- `recompute`: nothing carried across a projection but scores: audio projected and scored (its activation
             dropped), text projected, scored and folded into q = (p_t h_t) W1, then audio projected again in two
             P halves of 128 columns, each folded into q; weights by TMA. --bare leaves out the biases, the presence
             mask, the modality-weights output and W2 (what the real kernel adds).

    python benchmarks/p256_structures_probe.py                  # the table in RESULTS.md (about a minute)
    python benchmarks/p256_structures_probe.py fold --rows 128 --warps 8 --stages 1
    python benchmarks/p256_structures_probe.py recompute --bare

Run with TRITON_INTERPRET unset.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

import fastdaf  # noqa: F401 - kernels/ as fastdaf.kernels
from fastdaf.kernels.daf_head import _activation, _tanh
from fastdaf.kernels.offline import offline_target, record_compiles, use_private_cache

P, A, H, TEXT, AUDIO, BATCH, BLOCK_K = 256, 64, 128, 768, 74, 4096, 64


@triton.jit
def _pack(v):
    """[R, C] -> [R, C // 2] int32 holding two fp16 values each (opaque to LLVM, so they stay packed)."""
    lo, hi = tl.split(tl.reshape(v.to(tl.float16), (v.shape[0], v.shape[1] // 2, 2)))
    return tl.inline_asm_elementwise("mov.b32 $0, {$1, $2};", "=r,h,h", [lo, hi], dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _unpack(w):
    lo, hi = tl.inline_asm_elementwise(
        "mov.b32 {$0, $1}, $2;", "=h,=h,r", [w], dtype=(tl.float16, tl.float16), is_pure=True, pack=1
    )
    j = tl.join(lo, hi)
    return tl.reshape(j, (j.shape[0], j.shape[1] * 2)).to(tl.float32)


@triton.jit
def _project(
    x_ptr,
    K,
    w,
    rows,
    row_ok,
    N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    TMA: tl.constexpr,
    col0=0,
    b_ptr=None,
    BIAS: tl.constexpr = False,
):
    """gelu(x @ W[:, col0:col0 + N] (+ b)) of the rows, fp32 accumulation; W [K, N] by tensor descriptor (any
    col0) or by pointers (the whole width)."""
    acc = tl.zeros((rows.shape[0], N), dtype=tl.float32)
    offs_k = tl.arange(0, BLOCK_K)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + offs_k
        x = tl.load(x_ptr + rows[:, None] * K + kk[None, :], mask=row_ok[:, None] & (kk < K)[None, :], other=0.0)
        if TMA:
            wk = w.load([k0, col0])
        else:
            wk = tl.load(w + kk[:, None] * N + tl.arange(0, N)[None, :], mask=(kk < K)[:, None], other=0.0)
        acc = tl.dot(x, wk, acc)
    if BIAS:
        acc += tl.load(b_ptr + col0 + tl.arange(0, N))[None, :]
    return _activation(acc, 0)


@triton.jit
def fused_kernel(
    x0,
    w0,
    x1,
    w1,
    out_ptr,
    B,
    P: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_K: tl.constexpr,
    TMA: tl.constexpr,
    PACK: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    z = _project(x0, 768, w0, rows, row_ok, P, BLOCK_K, TMA)
    z = _pack(z) if PACK else z.to(tl.float16)
    h = _project(x1, 74, w1, rows, row_ok, P, BLOCK_K, TMA)
    z = _unpack(z) if PACK else z.to(tl.float32)
    z = (0.5 * z + 0.5 * h).to(tl.float16)
    tl.store(out_ptr + rows[:, None] * P + tl.arange(0, P)[None, :], z, mask=row_ok[:, None])


@triton.jit
def _score(h, u, v_ptr, A: tl.constexpr):
    t = _tanh(tl.dot(h, u.load([0, 0])))
    return tl.sum(t * tl.load(v_ptr + tl.arange(0, A))[None, :], axis=1)


@triton.jit
def fold_kernel(
    x0,
    w0,
    x1,
    w1,
    u,
    v_ptr,
    w1m,
    out_ptr,
    B,
    P: tl.constexpr,
    A: tl.constexpr,
    H: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PACK: tl.constexpr,
    ACCUMULATE: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    h = _project(x0, 768, w0, rows, row_ok, P, BLOCK_K, True).to(tl.float16)
    s0 = _score(h, u, v_ptr, A)
    if ACCUMULATE:  # one running q, rescaled as each modality's score arrives (as flash attention does)
        q = tl.dot(h, w1m.load([0, 0]))  # p0 = 1 at the running max s0
        h = _project(x1, 74, w1, rows, row_ok, P, BLOCK_K, True).to(tl.float16)
        s1 = _score(h, u, v_ptr, A)
        m = tl.maximum(s0, s1)
        alpha, p1 = tl.exp(s0 - m), tl.exp(s1 - m)
        q = tl.dot((h.to(tl.float32) * p1[:, None]).to(tl.float16), w1m.load([0, 0]), q * alpha[:, None])
        g = q / (alpha + p1)[:, None]
    else:
        q0 = tl.dot(h, w1m.load([0, 0]))
        q0 = _pack(q0) if PACK else q0
        h = _project(x1, 74, w1, rows, row_ok, P, BLOCK_K, True).to(tl.float16)
        s1 = _score(h, u, v_ptr, A)
        q1 = tl.dot(h, w1m.load([0, 0]))
        q0 = _unpack(q0) if PACK else q0
        m = tl.maximum(s0, s1)
        p0, p1 = tl.exp(s0 - m), tl.exp(s1 - m)
        g = (q0 * p0[:, None] + q1 * p1[:, None]) / (p0 + p1)[:, None]
    tl.store(out_ptr + rows, tl.sum(_activation(g, 0), axis=1), mask=row_ok)


@triton.jit
def recompute_kernel(
    xt,
    wt,
    bt_ptr,
    xa,
    wa,
    wa_half,
    ba_ptr,
    u,
    v_ptr,
    w1m_half,
    b1_ptr,
    w2_ptr,
    mask_ptr,
    out_ptr,
    wts_ptr,
    B,
    P: tl.constexpr,
    A: tl.constexpr,
    H: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_K: tl.constexpr,
    FULL: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    if FULL:
        present_t = tl.load(mask_ptr + rows * 2, mask=row_ok, other=0) != 0
        present_a = tl.load(mask_ptr + rows * 2 + 1, mask=row_ok, other=0) != 0
    else:
        present_t, present_a = row_ok, row_ok
    # audio, first pass: only its score is kept
    h = _project(xa, 74, wa, rows, row_ok, P, BLOCK_K, True, 0, ba_ptr, FULL)
    h = tl.where(present_a[:, None], h, 0.0).to(tl.float16) if FULL else h.to(tl.float16)
    s_a = tl.where(present_a, _score(h, u, v_ptr, A), float("-inf"))
    # text: projected, scored and folded into the MLP's pre-activation q
    h = _project(xt, 768, wt, rows, row_ok, P, BLOCK_K, True, 0, bt_ptr, FULL)
    h = tl.where(present_t[:, None], h, 0.0).to(tl.float16) if FULL else h.to(tl.float16)
    s_t = tl.where(present_t, _score(h, u, v_ptr, A), float("-inf"))
    m = tl.maximum(s_a, s_t)
    p_a, p_t = tl.exp(s_a - m), tl.exp(s_t - m)
    lo, hi = tl.reshape((h.to(tl.float32) * p_t[:, None]).to(tl.float16), (BLOCK_B, 2, P // 2)).permute(0, 2, 1).split()
    q = tl.dot(hi, w1m_half.load([P // 2, 0]), tl.dot(lo, w1m_half.load([0, 0])))
    # audio again, in two halves of P, each folded into q
    for half in tl.static_range(2):
        h = _project(xa, 74, wa_half, rows, row_ok, P // 2, BLOCK_K, True, half * (P // 2), ba_ptr, FULL)
        h = tl.where(present_a[:, None], h, 0.0) if FULL else h
        q = tl.dot((h * p_a[:, None]).to(tl.float16), w1m_half.load([half * (P // 2), 0]), q)
    weight_sum = p_a + p_t
    offs_h = tl.arange(0, H)
    if FULL:
        tl.store(wts_ptr + rows * 2, p_t / weight_sum, mask=row_ok)
        tl.store(wts_ptr + rows * 2 + 1, p_a / weight_sum, mask=row_ok)
        g = _activation(q / weight_sum[:, None] + tl.load(b1_ptr + offs_h)[None, :], 0)
        out = tl.sum(g * tl.load(w2_ptr + offs_h).to(tl.float32)[None, :], axis=1)
    else:
        out = tl.sum(_activation(q / weight_sum[:, None], 0), axis=1)
    tl.store(out_ptr + rows, out, mask=row_ok)


def compile_structure(
    structure: str, rows: int, warps: int, stages: int, tma: bool, pack: bool, bare: bool = False
) -> dict:
    """Compile one structure for sm_90 and return ptxas's registers and spills (and Triton's shared memory)."""
    f16 = torch.float16

    def weights(k: int, n: int, block: list[int]) -> torch.Tensor | TensorDescriptor:
        w = torch.randn(k, n).to(f16)
        return TensorDescriptor(w, [k, n], [n, 1], block) if tma or structure != "fused" else w

    x0, x1 = torch.randn(BATCH, TEXT).to(f16), torch.randn(BATCH, AUDIO).to(f16)
    w0, w1 = weights(TEXT, P, [BLOCK_K, P]), weights(AUDIO, P, [BLOCK_K, P])
    grid = (BATCH // rows,)
    kernel = {"fused": fused_kernel, "recompute": recompute_kernel}.get(structure, fold_kernel)
    with offline_target(90, kernel), record_compiles() as compiled:
        if structure == "fused":
            out = torch.empty(BATCH, P, dtype=f16)
            fused_kernel[grid](
                x0,
                w0,
                x1,
                w1,
                out,
                BATCH,
                P=P,
                BLOCK_B=rows,
                BLOCK_K=BLOCK_K,
                TMA=tma,
                PACK=pack,
                num_warps=warps,
                num_stages=stages,
            )
        elif structure == "recompute":
            wa_half = weights(AUDIO, P, [BLOCK_K, P // 2])
            u, w1m_half = weights(P, A, [P, A]), weights(P, H, [P // 2, H])
            recompute_kernel[grid](
                x0,
                w0,
                torch.randn(P),
                x1,
                w1,
                wa_half,
                torch.randn(P),
                u,
                torch.randn(A),
                w1m_half,
                torch.randn(H),
                torch.randn(H).to(f16),
                torch.ones(BATCH, 2, dtype=torch.uint8),
                torch.empty(BATCH),
                torch.empty(BATCH, 2),
                BATCH,
                P=P,
                A=A,
                H=H,
                BLOCK_B=rows,
                BLOCK_K=BLOCK_K,
                FULL=not bare,
                num_warps=warps,
                num_stages=stages,
            )
        else:
            u, w1m = weights(P, A, [P, A]), weights(P, H, [P, H])
            fold_kernel[grid](
                x0,
                w0,
                x1,
                w1,
                u,
                torch.randn(A),
                w1m,
                torch.empty(BATCH),
                BATCH,
                P=P,
                A=A,
                H=H,
                BLOCK_B=rows,
                BLOCK_K=BLOCK_K,
                PACK=pack,
                ACCUMULATE=structure == "fold-acc",
                num_warps=warps,
                num_stages=stages,
            )
    usage = compiled[-1].usage
    return {
        "structure": structure,
        "rows": rows,
        "warps": warps,
        "stages": stages,
        "tma": tma or structure != "fused",
        "pack": pack,
        "bare": bare,
        "registers": usage.registers,
        "spill_store_bytes": usage.spill_store_bytes,
        "shared_bytes": usage.shared_bytes,
    }


# (structure, rows, warps, stages, tma, pack[, bare]): the table in benchmarks/RESULTS.md
TABLE = [
    ("fused", 64, 8, 2, False, False),
    ("fused", 128, 8, 2, False, False),
    ("fused", 128, 8, 2, True, False),
    ("fused", 128, 8, 2, True, True),
    ("fused", 128, 8, 1, True, True),
    ("fold", 64, 8, 2, True, False),
    ("fold", 128, 8, 2, True, False),
    ("fold", 128, 8, 2, True, True),
    ("fold", 128, 8, 1, True, False),
    ("fold", 128, 8, 1, True, True),
    ("fold-acc", 128, 8, 2, True, False),
    ("fold-acc", 128, 8, 1, True, False),
    ("recompute", 128, 8, 2, True, False, True),
    ("recompute", 128, 8, 1, True, False, True),
    ("recompute", 128, 8, 2, True, False, False),
    ("recompute", 128, 8, 1, True, False, False),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "structure", nargs="?", choices=("fused", "fold", "fold-acc", "recompute"), help="default: the whole table"
    )
    parser.add_argument("--rows", type=int, default=128, help="BLOCK_B")
    parser.add_argument("--warps", type=int, default=8)
    parser.add_argument("--stages", type=int, default=2, help="software pipeline stages of the K loops")
    parser.add_argument("--tma", action="store_true", help="fused: weights by tensor descriptor (fold always is)")
    parser.add_argument("--pack", action="store_true", help="the carried fp16 tile two values a register")
    parser.add_argument("--bare", action="store_true", help="recompute: without biases, mask, weights output and W2")
    args = parser.parse_args(argv)
    use_private_cache()  # each ptxas report is this process's own
    todo = (
        TABLE
        if args.structure is None
        else [(args.structure, args.rows, args.warps, args.stages, args.tma, args.pack, args.bare)]
    )
    for case in todo:
        print(json.dumps(compile_structure(*case)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
