"""Fused DAF head forward in one Triton launch (reference: `fastdaf.head.DAFHead`).

Each program owns BLOCK_B rows. For each modality (at most 4, unrolled at compile time) it
projects the rows (tl.dot over K-chunks, fp32 accumulation), applies the activation, scores the
projection, and folds it into an online softmax over modalities (running max and sum, as flash
attention does over keys), so only the current projection and the running fused vector are live.
Then the output MLP runs chunk by chunk over its hidden units, and the program writes the scores
and the modality weights. Input standardisation is folded into the projection weights on the host
(`fastdaf.fused`), so it costs nothing here.

Rows whose modalities are all absent get weights 0 and a NaN score (the kernel cannot raise; the
caller checks when it may synchronise).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

ACTIVATION_IDS = {"gelu": 0, "relu": 1, "tanh": 2, "silu": 3}
FUSION_IDS = {"dynamic": 0, "static": 1, "mean": 2}
NEG_INIT = -1.0e30  # finite start of the running max, so exp(running - new) never sees inf - inf


@triton.jit
def _tanh(x):
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


@triton.jit
def _activation(x, ACT: tl.constexpr):
    if ACT == 0:
        y = 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))
    elif ACT == 1:
        y = tl.maximum(x, 0.0)
    elif ACT == 2:
        y = _tanh(x)
    else:
        y = x * tl.sigmoid(x)
    return y


@triton.jit
def _modality_step(
    x_ptr, stride_x, w_ptr, b_ptr, K, mask_ptr, score_w_ptr, score_b_ptr, score_v_ptr, static_ptr,
    rows, row_ok, m_run, l_run, z, temperature,
    IDX: tl.constexpr, M: tl.constexpr, HAS_MASK: tl.constexpr,
    P: tl.constexpr, P_PAD: tl.constexpr, A: tl.constexpr, BLOCK_A: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, ACT: tl.constexpr, FUSION: tl.constexpr, PREC: tl.constexpr,
    PREC2: tl.constexpr,
):
    offs_p = tl.arange(0, P_PAD)
    p_ok = offs_p < P
    # projection: [BLOCK_B, K] @ [K, P], fp32 accumulation over K-chunks
    acc = tl.zeros((BLOCK_B, P_PAD), dtype=tl.float32)
    offs_k = tl.arange(0, BLOCK_K)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + offs_k
        k_ok = kk < K
        x = tl.load(x_ptr + rows[:, None] * stride_x + kk[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_ptr + kk[:, None] * P + offs_p[None, :], mask=k_ok[:, None] & p_ok[None, :], other=0.0)
        # bf16 inputs meet fp32 weights: converted in registers (exact), multiplied in tf32
        acc = tl.dot(x.to(w.dtype), w, acc, input_precision=PREC)
    bias = tl.load(b_ptr + offs_p, mask=p_ok, other=0.0).to(tl.float32)
    h = _activation(acc + bias[None, :], ACT)

    if HAS_MASK:
        present = tl.load(mask_ptr + rows * M + IDX, mask=row_ok, other=0) != 0
    else:
        present = row_ok
    # absent rows never reach the result, whatever their features hold (NaN included)
    h = tl.where(present[:, None], h, 0.0)

    if FUSION == 0:  # dynamic: s = v . tanh(U h + c), U streamed in chunks of BLOCK_A
        s = tl.zeros((BLOCK_B,), dtype=tl.float32)
        h_in = h.to(score_w_ptr.dtype.element_ty)
        for a0 in range(0, A, BLOCK_A):
            offs_a = a0 + tl.arange(0, BLOCK_A)
            a_ok = offs_a < A
            u = tl.load(score_w_ptr + offs_p[:, None] * A + offs_a[None, :], mask=p_ok[:, None] & a_ok[None, :], other=0.0)
            c = tl.load(score_b_ptr + offs_a, mask=a_ok, other=0.0).to(tl.float32)
            v = tl.load(score_v_ptr + offs_a, mask=a_ok, other=0.0).to(tl.float32)
            t = _tanh(tl.dot(h_in, u, input_precision=PREC2) + c[None, :])
            s += tl.sum(t * v[None, :], axis=1)
        s = s / temperature
    elif FUSION == 1:  # static: one learned logit per modality
        s = tl.zeros((BLOCK_B,), dtype=tl.float32) + tl.load(static_ptr + IDX).to(tl.float32) / temperature
    else:  # mean
        s = tl.zeros((BLOCK_B,), dtype=tl.float32)
    s = tl.where(present, s, float("-inf"))

    # online softmax over modalities
    m_new = tl.maximum(m_run, s)
    alpha = tl.exp(m_run - m_new)
    p = tl.exp(s - m_new)
    l_run = l_run * alpha + p
    z = z * alpha[:, None] + p[:, None] * h
    return s, m_new, l_run, z


@triton.jit
def daf_head_kernel(
    x0_ptr, x1_ptr, x2_ptr, x3_ptr, sx0, sx1, sx2, sx3,
    w0_ptr, w1_ptr, w2_ptr, w3_ptr, b0_ptr, b1_ptr, b2_ptr, b3_ptr, K0, K1, K2, K3,
    mask_ptr, score_w_ptr, score_b_ptr, score_v_ptr, static_ptr,
    mlp_w1_ptr, mlp_b1_ptr, mlp_w2_ptr, mlp_b2_ptr,
    out_ptr, weights_ptr, B, temperature, B_BUCKET,
    USE0: tl.constexpr, USE1: tl.constexpr, USE2: tl.constexpr, USE3: tl.constexpr,
    M: tl.constexpr, HAS_MASK: tl.constexpr,
    P: tl.constexpr, P_PAD: tl.constexpr, A: tl.constexpr, BLOCK_A: tl.constexpr,
    H: tl.constexpr, BLOCK_H: tl.constexpr, NO: tl.constexpr, NO_PAD: tl.constexpr,
    ACT: tl.constexpr, FUSION: tl.constexpr, PREC: tl.constexpr, PREC2: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    m_run = tl.full((BLOCK_B,), NEG_INIT, tl.float32)
    l_run = tl.zeros((BLOCK_B,), dtype=tl.float32)
    z = tl.zeros((BLOCK_B, P_PAD), dtype=tl.float32)
    neg = tl.full((BLOCK_B,), float("-inf"), tl.float32)
    s0, s1, s2, s3 = neg, neg, neg, neg
    # four explicit steps, not a loop: each modality has its own pointer arguments and constexpr
    # flag, which Triton can only select at compile time
    if USE0:
        s0, m_run, l_run, z = _modality_step(
            x0_ptr, sx0, w0_ptr, b0_ptr, K0, mask_ptr, score_w_ptr, score_b_ptr, score_v_ptr, static_ptr,
            rows, row_ok, m_run, l_run, z, temperature, 0, M, HAS_MASK, P, P_PAD, A, BLOCK_A, BLOCK_B, BLOCK_K, ACT, FUSION, PREC, PREC2)
    if USE1:
        s1, m_run, l_run, z = _modality_step(
            x1_ptr, sx1, w1_ptr, b1_ptr, K1, mask_ptr, score_w_ptr, score_b_ptr, score_v_ptr, static_ptr,
            rows, row_ok, m_run, l_run, z, temperature, 1, M, HAS_MASK, P, P_PAD, A, BLOCK_A, BLOCK_B, BLOCK_K, ACT, FUSION, PREC, PREC2)
    if USE2:
        s2, m_run, l_run, z = _modality_step(
            x2_ptr, sx2, w2_ptr, b2_ptr, K2, mask_ptr, score_w_ptr, score_b_ptr, score_v_ptr, static_ptr,
            rows, row_ok, m_run, l_run, z, temperature, 2, M, HAS_MASK, P, P_PAD, A, BLOCK_A, BLOCK_B, BLOCK_K, ACT, FUSION, PREC, PREC2)
    if USE3:
        s3, m_run, l_run, z = _modality_step(
            x3_ptr, sx3, w3_ptr, b3_ptr, K3, mask_ptr, score_w_ptr, score_b_ptr, score_v_ptr, static_ptr,
            rows, row_ok, m_run, l_run, z, temperature, 3, M, HAS_MASK, P, P_PAD, A, BLOCK_A, BLOCK_B, BLOCK_K, ACT, FUSION, PREC, PREC2)

    # modality weights: exactly 0 for absent modalities; rows with none present get 0 everywhere
    any_present = l_run > 0
    inv_l = tl.where(any_present, 1.0 / tl.where(any_present, l_run, 1.0), 0.0)
    w_base = weights_ptr + rows * M
    tl.store(w_base + 0, tl.exp(s0 - m_run) * inv_l, mask=row_ok)
    if M > 1:
        tl.store(w_base + 1, tl.exp(s1 - m_run) * inv_l, mask=row_ok)
    if M > 2:
        tl.store(w_base + 2, tl.exp(s2 - m_run) * inv_l, mask=row_ok)
    if M > 3:
        tl.store(w_base + 3, tl.exp(s3 - m_run) * inv_l, mask=row_ok)

    # fused vector, then the output MLP chunk by chunk over its hidden units
    z = z * tl.where(any_present, inv_l, float("nan"))[:, None]
    offs_p = tl.arange(0, P_PAD)
    p_ok = offs_p < P
    offs_o = tl.arange(0, NO_PAD)
    o_ok = offs_o < NO
    z_in = z.to(mlp_w1_ptr.dtype.element_ty)
    out = tl.zeros((BLOCK_B, NO_PAD), dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)
        h_ok = offs_h < H
        w1 = tl.load(mlp_w1_ptr + offs_p[:, None] * H + offs_h[None, :], mask=p_ok[:, None] & h_ok[None, :], other=0.0)
        b1 = tl.load(mlp_b1_ptr + offs_h, mask=h_ok, other=0.0).to(tl.float32)
        hidden = _activation(tl.dot(z_in, w1, input_precision=PREC2) + b1[None, :], ACT)
        hidden = tl.where(h_ok[None, :], hidden, 0.0)
        w2 = tl.load(mlp_w2_ptr + offs_h[:, None] * NO + offs_o[None, :], mask=h_ok[:, None] & o_ok[None, :], other=0.0)
        out = tl.dot(hidden.to(mlp_w2_ptr.dtype.element_ty), w2, out, input_precision=PREC2)
    b2 = tl.load(mlp_b2_ptr + offs_o, mask=o_ok, other=0.0).to(tl.float32)
    out = out + b2[None, :]
    tl.store(out_ptr + rows[:, None] * NO + offs_o[None, :], out, mask=row_ok[:, None] & o_ok[None, :])


# --------------------------------------------------------------------------------------- launcher
def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _tuning_configs() -> list[triton.Config]:
    """The search space the autotuner measures on the GPU, per (P, A, H, dims, batch bucket, dtype)."""
    configs = []
    for block_b in (16, 32, 64, 128):
        for block_k in (32, 64):
            for warps in (4, 8):
                configs.append(triton.Config({"BLOCK_B": block_b, "BLOCK_K": block_k}, num_warps=warps, num_stages=2))
    return configs


def _prune(configs, named_args, **kwargs):
    """Drop tiles whose fused vector and accumulator could not stay on chip, and tiles far larger than the batch."""
    p_pad, batch = named_args["P_PAD"] if "P_PAD" in named_args else kwargs["P_PAD"], named_args["B"]
    kept = [c for c in configs if c.kwargs["BLOCK_B"] * p_pad <= 16384 and (c.kwargs["BLOCK_B"] <= max(16, triton.next_power_of_2(batch)))]
    return kept or configs[:1]


daf_head_kernel_tuned = triton.autotune(
    configs=_tuning_configs(),
    key=["B_BUCKET", "K0", "K1", "K2", "K3", "P", "A", "H", "NO", "M", "FUSION", "HAS_MASK"],
    prune_configs_by={"early_config_prune": _prune},
)(daf_head_kernel)

# The interpreter runs every config the autotuner would try; tests use one small fixed tile instead.
INTERPRETER_CONFIG = {"BLOCK_B": 16, "BLOCK_K": 32}


def batch_bucket(batch: int) -> int:
    """Autotuning key for the batch: one tuned config per power-of-two bucket."""
    return 1 << max(batch - 1, 0).bit_length()


def _pow2(n: int, low: int = 16, high: int | None = None) -> int:
    p = max(low, 1 << max(n - 1, 0).bit_length())
    return p if high is None else min(p, high)


class DAFHeadLaunch:
    """The one launcher of the fused head, prepared once per (weights, dtype, given modalities, mask).

    Everything that does not change between calls (weight pointers, constexprs, the kernel to call)
    is fixed here, so a call only binds the inputs and outputs: the Python cost before Triton's own
    launch stays a few microseconds. Shapes and dtypes are the caller's (fastdaf.fused) to check.

    proj_w[i]: [K_i, P] (None where the modality is not given); score_w: [P, A]; mlp_w1: [P, H];
    mlp_w2: [H, NO]. Matrix weights are fp32 or fp16, never bf16: Triton 3.6's interpreter multiplies
    bf16 operands wrongly (the tests run there), and bf16 weights cost accuracy (see fastdaf.fused).
    precision applies to the projection dots, second_precision to the scoring and output-MLP
    dots (tf32 or ieee for fp32 operands; fp16 operands ignore it). block_config
    ({"BLOCK_B", "BLOCK_K"}, optional "num_warps") pins the tile instead of autotuning.
    """

    def __init__(
        self,
        proj_w: list[torch.Tensor | None],
        proj_b: list[torch.Tensor | None],
        score_w: torch.Tensor,
        score_b: torch.Tensor,
        score_v: torch.Tensor,
        static_logits: torch.Tensor,
        mlp_w1: torch.Tensor,
        mlp_b1: torch.Tensor,
        mlp_w2: torch.Tensor,
        mlp_b2: torch.Tensor,
        *,
        has_mask: bool,
        projection_size: int,
        attention_size: int,
        hidden_size: int,
        n_outputs: int,
        activation: str,
        fusion: str,
        temperature: float,
        precision: str,
        second_precision: str,
        block_config: dict[str, int] | None = None,
    ) -> None:
        M = len(proj_w)
        self.given = [i for i, w in enumerate(proj_w) if w is not None]
        pad = lambda seq, fill: list(seq) + [fill] * (4 - len(seq))  # noqa: E731
        self.weight_args = (
            *pad([w if w is not None else score_w for w in proj_w], score_w),
            *pad([b if b is not None else score_b for b in proj_b], score_b),
            *pad([w.shape[0] if w is not None else 0 for w in proj_w], 0),
        )
        self.model_args = (score_w, score_b, score_v, static_logits, mlp_w1, mlp_b1, mlp_w2, mlp_b2)
        self.temperature = float(temperature)
        used = pad([w is not None for w in proj_w], False)
        self.meta = dict(
            USE0=used[0], USE1=used[1], USE2=used[2], USE3=used[3], M=M, HAS_MASK=has_mask,
            P=projection_size, P_PAD=_pow2(projection_size), A=attention_size, BLOCK_A=_pow2(attention_size, high=64),
            H=hidden_size, BLOCK_H=_pow2(hidden_size, high=64), NO=n_outputs, NO_PAD=_pow2(n_outputs),
            ACT=ACTIVATION_IDS[activation], FUSION=FUSION_IDS[fusion], PREC=precision, PREC2=second_precision,
        )
        if block_config is None and interpreting():
            block_config = INTERPRETER_CONFIG
        if block_config is not None:
            self.meta.update(block_config)
            self.kernel, self.block_b = daf_head_kernel, block_config["BLOCK_B"]
        else:
            self.kernel, self.block_b = daf_head_kernel_tuned, None

    def __call__(self, xs: list[torch.Tensor | None], mask: torch.Tensor | None, out: torch.Tensor, weights: torch.Tensor) -> None:
        """xs[i]: [B, K_i] with unit inner stride (None where not given); mask: uint8 [B, M] or None;
        out: fp32 [B, NO]; weights: fp32 [B, M]. No host synchronisation happens here."""
        B = out.shape[0]
        anchor = xs[self.given[0]]
        x_args = [anchor] * 4
        strides = [0] * 4
        for i in self.given:
            x_args[i] = xs[i]
            strides[i] = xs[i].stride(0)
        if self.block_b is not None:
            grid = ((B + self.block_b - 1) // self.block_b,)
        else:
            grid = lambda cfg: ((B + cfg["BLOCK_B"] - 1) // cfg["BLOCK_B"],)  # noqa: E731
        self.kernel[grid](
            *x_args, *strides, *self.weight_args, mask if mask is not None else out, *self.model_args,
            out, weights, B, self.temperature, batch_bucket(B), **self.meta,
        )
