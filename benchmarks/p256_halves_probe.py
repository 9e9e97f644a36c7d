"""A compile probe, not a benchmark (it writes no benchmark rows: nothing runs, fastdaf.bench_rows is not used):
does a 128-row P=256 fp16 head fit sm_90's registers if the narrow second modality is projected in two P halves?

Issue 23 asks for 50% of the HBM roofline at P=256; the fused head's 128-row tile spills 1,072 bytes there, all of
it from the second modality's step (benchmarks/RESULTS.md, "Where the 128-row P=256 tile's registers go"). This
kernel is the path that table suggests, written out for two modalities (768 then 74 wide, P=256, A=64, H=128, gelu,
dynamic fusion, a mask): the wide modality in one K loop with two [BLOCK_B, 128] accumulators, the fused vector
kept as two fp16 halves, the narrow one projected half by half with the first half's activation kept until its score
is known, the output MLP over the halves. It is compiled with Triton's real compiler for sm_90 and the wheel's ptxas
reports registers and spills; TWO=0 drops the second modality. Run with TRITON_INTERPRET unset:

    python benchmarks/p256_halves_probe.py BLOCK_B BLOCK_K BLOCK_A BLOCK_H NUM_WARPS TWO   # e.g. 128 64 16 16 8 1
"""

import argparse

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

import fastdaf  # noqa: F401 - kernels/ as fastdaf.kernels
from fastdaf.kernels.daf_head import _activation, _tanh
from fastdaf.kernels.offline import parse_ptxas_log, run_ptxas


@triton.jit
def _gelu(x):
    return _activation(x, 0)


@triton.jit
def _projected_half(x_ptr, sx, w_ptr, b_ptr, K, cols, rows, row_ok, present, P: tl.constexpr, BLOCK_K: tl.constexpr):
    """gelu(x @ W[:, cols] + b[cols]) of the rows, zero where the modality is absent, in fp16."""
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros((rows.shape[0], cols.shape[0]), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + offs_k
        k_ok = kk < K
        x = tl.load(x_ptr + rows[:, None] * sx + kk[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        acc = tl.dot(x, tl.load(w_ptr + kk[:, None] * P + cols[None, :], mask=k_ok[:, None], other=0.0), acc)
    return tl.where(present[:, None], _gelu(acc + tl.load(b_ptr + cols)[None, :]), 0.0).to(tl.float16)


@triton.jit
def _score(ha, hb, cols_a, cols_b, u_ptr, c_ptr, v_ptr, present, A: tl.constexpr, BLOCK_A: tl.constexpr):
    """v . tanh(U^T h + c) from the projection's two halves; -inf where the modality is absent."""
    s = tl.zeros((ha.shape[0],), dtype=tl.float32)
    for a0 in range(0, A, BLOCK_A):
        offs_a = a0 + tl.arange(0, BLOCK_A)
        t = tl.dot(ha, tl.load(u_ptr + cols_a[:, None] * A + offs_a[None, :]))
        t = tl.dot(hb, tl.load(u_ptr + cols_b[:, None] * A + offs_a[None, :]), t)
        s += tl.sum(_tanh(t + tl.load(c_ptr + offs_a)[None, :]) * tl.load(v_ptr + offs_a)[None, :], axis=1)
    return tl.where(present, s, float("-inf"))


@triton.jit
def halves_kernel(
    x0_ptr,
    sx0,
    x1_ptr,
    sx1,
    w0_ptr,
    b0_ptr,
    w1_ptr,
    b1_ptr,
    K0,
    K1,
    mask_ptr,
    u_ptr,
    c_ptr,
    v_ptr,
    mw1_ptr,
    mb1_ptr,
    mw2_ptr,
    mb2,
    out_ptr,
    wts_ptr,
    B,
    BLOCK_B: tl.constexpr,
    BLOCK_K: tl.constexpr,
    P: tl.constexpr,
    PH: tl.constexpr,
    A: tl.constexpr,
    BLOCK_A: tl.constexpr,
    H: tl.constexpr,
    BLOCK_H: tl.constexpr,
    TWO: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    offs_h0 = tl.arange(0, PH)  # first half's columns
    offs_h1 = PH + tl.arange(0, PH)  # second half's
    offs_k = tl.arange(0, BLOCK_K)
    # ---- modality 0 (wide): both halves in one K loop, x read once
    acc_a = tl.zeros((BLOCK_B, PH), dtype=tl.float32)
    acc_b = tl.zeros((BLOCK_B, PH), dtype=tl.float32)
    for k0 in range(0, K0, BLOCK_K):
        kk = k0 + offs_k
        k_ok = kk < K0
        x = tl.load(x0_ptr + rows[:, None] * sx0 + kk[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        wa = tl.load(w0_ptr + kk[:, None] * P + offs_h0[None, :], mask=k_ok[:, None], other=0.0)
        wb = tl.load(w0_ptr + kk[:, None] * P + offs_h1[None, :], mask=k_ok[:, None], other=0.0)
        acc_a = tl.dot(x, wa, acc_a)
        acc_b = tl.dot(x, wb, acc_b)
    present0 = tl.load(mask_ptr + rows * 2, mask=row_ok, other=0) != 0
    za = tl.where(present0[:, None], _gelu(acc_a + tl.load(b0_ptr + offs_h0)[None, :]), 0.0).to(tl.float16)
    zb = tl.where(present0[:, None], _gelu(acc_b + tl.load(b0_ptr + offs_h1)[None, :]), 0.0).to(tl.float16)
    s0 = _score(za, zb, offs_h0, offs_h1, u_ptr, c_ptr, v_ptr, present0, A, BLOCK_A)
    m_run = tl.maximum(tl.full((BLOCK_B,), -1.0e30, tl.float32), s0)
    p0 = tl.exp(s0 - m_run)
    l_run = p0
    za = (za.to(tl.float32) * p0[:, None]).to(tl.float16)
    zb = (zb.to(tl.float32) * p0[:, None]).to(tl.float16)
    if TWO:
        # ---- modality 1 (narrow): half a, kept; half b; then the score and the fusion
        present1 = tl.load(mask_ptr + rows * 2 + 1, mask=row_ok, other=0) != 0
        ha = _projected_half(x1_ptr, sx1, w1_ptr, b1_ptr, K1, offs_h0, rows, row_ok, present1, P, BLOCK_K)
        hb = _projected_half(x1_ptr, sx1, w1_ptr, b1_ptr, K1, offs_h1, rows, row_ok, present1, P, BLOCK_K)
        s1 = _score(ha, hb, offs_h0, offs_h1, u_ptr, c_ptr, v_ptr, present1, A, BLOCK_A)
        m_new = tl.maximum(m_run, s1)
        alpha = tl.exp(m_run - m_new)
        p1 = tl.exp(s1 - m_new)
        l_run = l_run * alpha + p1
        inv = 1.0 / l_run
        za = ((za.to(tl.float32) * alpha[:, None] + p1[:, None] * ha.to(tl.float32)) * inv[:, None]).to(tl.float16)
        zb = ((zb.to(tl.float32) * alpha[:, None] + p1[:, None] * hb.to(tl.float32)) * inv[:, None]).to(tl.float16)
        tl.store(wts_ptr + rows * 2, tl.exp(s0 - m_new) * inv, mask=row_ok)
        tl.store(wts_ptr + rows * 2 + 1, p1 * inv, mask=row_ok)
    else:
        inv = 1.0 / l_run
        za = (za.to(tl.float32) * inv[:, None]).to(tl.float16)
        zb = (zb.to(tl.float32) * inv[:, None]).to(tl.float16)
        tl.store(wts_ptr + rows * 2, p0 * inv, mask=row_ok)
    # ---- output MLP over hidden chunks, the fused vector in halves
    out = tl.zeros((BLOCK_B,), dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        offs_hh = h0 + tl.arange(0, BLOCK_H)
        hid = tl.dot(za, tl.load(mw1_ptr + offs_h0[:, None] * H + offs_hh[None, :]))
        hid = tl.dot(zb, tl.load(mw1_ptr + offs_h1[:, None] * H + offs_hh[None, :]), hid)
        hid = _gelu(hid + tl.load(mb1_ptr + offs_hh)[None, :])
        out += tl.sum(hid * tl.load(mw2_ptr + offs_hh).to(tl.float32)[None, :], axis=1)
    tl.store(out_ptr + rows, out + mb2, mask=row_ok)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("BLOCK_B", 128), ("BLOCK_K", 64), ("BLOCK_A", 16), ("BLOCK_H", 16), ("NUM_WARPS", 8)):
        parser.add_argument(name, type=int, nargs="?", default=default)
    parser.add_argument("TWO", type=int, nargs="?", default=1, choices=(0, 1), help="1: the second modality too")
    args = parser.parse_args()
    BB, BK, BA, BH, warps, TWO = args.BLOCK_B, args.BLOCK_K, args.BLOCK_A, args.BLOCK_H, args.NUM_WARPS, args.TWO
    sig = {
        "x0_ptr": "*fp16",
        "sx0": "i32",
        "x1_ptr": "*fp16",
        "sx1": "i32",
        "w0_ptr": "*fp16",
        "b0_ptr": "*fp32",
        "w1_ptr": "*fp16",
        "b1_ptr": "*fp32",
        "K0": "i32",
        "K1": "i32",
        "mask_ptr": "*u8",
        "u_ptr": "*fp16",
        "c_ptr": "*fp32",
        "v_ptr": "*fp32",
        "mw1_ptr": "*fp16",
        "mb1_ptr": "*fp32",
        "mw2_ptr": "*fp16",
        "mb2": "fp32",
        "out_ptr": "*fp32",
        "wts_ptr": "*fp32",
        "B": "i32",
        "BLOCK_B": "constexpr",
        "BLOCK_K": "constexpr",
        "P": "constexpr",
        "PH": "constexpr",
        "A": "constexpr",
        "BLOCK_A": "constexpr",
        "H": "constexpr",
        "BLOCK_H": "constexpr",
        "TWO": "constexpr",
    }
    consts = {
        "BLOCK_B": BB,
        "BLOCK_K": BK,
        "P": 256,
        "PH": 128,
        "A": 64,
        "BLOCK_A": BA,
        "H": 128,
        "BLOCK_H": BH,
        "TWO": TWO,
    }
    attrs = {(i,): [["tt.divisibility", 16]] for i, k in enumerate(sig) if k.endswith("_ptr")}
    src = ASTSource(halves_kernel, sig, consts, attrs)
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": 2})
    u = parse_ptxas_log(run_ptxas(k.asm["ptx"], 90))
    print(vars(args), u, "shared", k.metadata.shared)


if __name__ == "__main__":
    main()
