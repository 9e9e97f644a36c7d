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
from triton.runtime.driver import driver

from .offline import SHARED_MEMORY_LIMIT

ACTIVATION_IDS = {"gelu": 0, "relu": 1, "tanh": 2, "silu": 3}
FUSION_IDS = {"dynamic": 0, "static": 1, "mean": 2}
NEG_INIT = tl.constexpr(-1.0e30)  # finite start of the running max, so exp(running - new) never sees inf - inf


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
    x_ptr,
    stride_x,
    w_ptr,
    b_ptr,
    K,
    mask_ptr,
    score_w_ptr,
    score_b_ptr,
    score_v_ptr,
    static_ptr,
    rows,
    row_ok,
    m_run,
    l_run,
    z,
    temperature,
    IDX: tl.constexpr,
    M: tl.constexpr,
    HAS_MASK: tl.constexpr,
    P: tl.constexpr,
    P_PAD: tl.constexpr,
    A: tl.constexpr,
    BLOCK_A: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_K: tl.constexpr,
    ACT: tl.constexpr,
    FUSION: tl.constexpr,
    PREC: tl.constexpr,
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
            u = tl.load(
                score_w_ptr + offs_p[:, None] * A + offs_a[None, :], mask=p_ok[:, None] & a_ok[None, :], other=0.0
            )
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
    # z is kept in the output MLP's operand dtype (fp16 for fp16 inputs: half the registers; it is
    # rounded to that dtype before the MLP's dot anyway), updated in fp32
    z = (z.to(tl.float32) * alpha[:, None] + p[:, None] * h).to(z.dtype)
    return s, m_new, l_run, z


@triton.jit
def daf_head_kernel(
    x0_ptr,
    x1_ptr,
    x2_ptr,
    x3_ptr,
    sx0,
    sx1,
    sx2,
    sx3,
    w0_ptr,
    w1_ptr,
    w2_ptr,
    w3_ptr,
    b0_ptr,
    b1_ptr,
    b2_ptr,
    b3_ptr,
    K0,
    K1,
    K2,
    K3,
    mask_ptr,
    score_w_ptr,
    score_b_ptr,
    score_v_ptr,
    static_ptr,
    mlp_w1_ptr,
    mlp_b1_ptr,
    mlp_w2_ptr,
    mlp_b2_ptr,
    out_ptr,
    weights_ptr,
    B,
    temperature,
    B_BUCKET,
    USE0: tl.constexpr,
    USE1: tl.constexpr,
    USE2: tl.constexpr,
    USE3: tl.constexpr,
    M: tl.constexpr,
    HAS_MASK: tl.constexpr,
    P: tl.constexpr,
    P_PAD: tl.constexpr,
    A: tl.constexpr,
    BLOCK_A: tl.constexpr,
    H: tl.constexpr,
    BLOCK_H: tl.constexpr,
    NO: tl.constexpr,
    NO_PAD: tl.constexpr,
    ACT: tl.constexpr,
    FUSION: tl.constexpr,
    PREC: tl.constexpr,
    PREC2: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    m_run = tl.full((BLOCK_B,), NEG_INIT, tl.float32)
    l_run = tl.zeros((BLOCK_B,), dtype=tl.float32)
    z = tl.zeros((BLOCK_B, P_PAD), dtype=mlp_w1_ptr.dtype.element_ty)
    neg = tl.full((BLOCK_B,), float("-inf"), tl.float32)
    s0, s1, s2, s3 = neg, neg, neg, neg
    # four explicit steps, not a loop: each modality has its own pointer arguments and constexpr
    # flag, which Triton can only select at compile time (a repetition kept on purpose: they differ only in k)
    # fmt: off
    if USE0:
        s0, m_run, l_run, z = _modality_step(
            x0_ptr, sx0, w0_ptr, b0_ptr, K0, mask_ptr, score_w_ptr, score_b_ptr, score_v_ptr, static_ptr,
            rows, row_ok, m_run, l_run, z, temperature, 0, M, HAS_MASK, P, P_PAD, A, BLOCK_A, BLOCK_B, BLOCK_K,
            ACT, FUSION, PREC, PREC2)
    if USE1:
        s1, m_run, l_run, z = _modality_step(
            x1_ptr, sx1, w1_ptr, b1_ptr, K1, mask_ptr, score_w_ptr, score_b_ptr, score_v_ptr, static_ptr,
            rows, row_ok, m_run, l_run, z, temperature, 1, M, HAS_MASK, P, P_PAD, A, BLOCK_A, BLOCK_B, BLOCK_K,
            ACT, FUSION, PREC, PREC2)
    if USE2:
        s2, m_run, l_run, z = _modality_step(
            x2_ptr, sx2, w2_ptr, b2_ptr, K2, mask_ptr, score_w_ptr, score_b_ptr, score_v_ptr, static_ptr,
            rows, row_ok, m_run, l_run, z, temperature, 2, M, HAS_MASK, P, P_PAD, A, BLOCK_A, BLOCK_B, BLOCK_K,
            ACT, FUSION, PREC, PREC2)
    if USE3:
        s3, m_run, l_run, z = _modality_step(
            x3_ptr, sx3, w3_ptr, b3_ptr, K3, mask_ptr, score_w_ptr, score_b_ptr, score_v_ptr, static_ptr,
            rows, row_ok, m_run, l_run, z, temperature, 3, M, HAS_MASK, P, P_PAD, A, BLOCK_A, BLOCK_B, BLOCK_K,
            ACT, FUSION, PREC, PREC2)
    # fmt: on

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
    z = z.to(tl.float32) * tl.where(any_present, inv_l, float("nan"))[:, None]
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


# The tile search space. BLOCK_K follows the weight dtype (128-byte rows of a K-chunk: 64 fp16 or
# 32 fp32 values), so the autotuner only chooses rows per program and warps. Two pipeline stages
# for the projection loop: the third stage Triton uses by default costs a whole extra x/W chunk
# of shared memory (P=512 fp32 tiles did not fit an H100 block with it) for a loop of 2-24 trips.
TILE_ROWS = (16, 32, 64, 128)
TILE_WARPS = (4, 8)
NUM_STAGES = 2
# Values a thread holds of the big tiles: one [BLOCK_B, P_PAD] tile (the projection accumulator
# and the fused vector are both live through a modality step), plus, for bf16 inputs, the x chunk
# converted to fp32 in registers. Measured with ptxas for sm_90 (tests/test_gpu_compile.py, four
# modalities): at 32 values a thread tiles spill 40-3,000 bytes; at 16, at most a few words. With
# fp16 inputs (whose fused vector is fp16) and at most two modalities, 64 values with 8 warps and 32
# with 4 spill nothing (128-row P=128 and 64-row P=256 tiles: 225-252 registers); 128 values spill
# 1,000-2,700 bytes (RESULTS.md, "The head's memory traffic").
MAX_VALUES_PER_THREAD = 16
MAX_VALUES_PER_THREAD_FP16_TWO_MODALITIES = {4: 32, 8: 64}  # by num_warps
# Before Hopper (no wgmma), tiles of 64 or more rows spill 16-700 bytes even at 16 values a thread
# (sm_80, measured the same way); 32 rows do not.
MAX_ROWS_BEFORE_HOPPER = 32
# Where no tile stays under it (P=512), the 16-row 8-warp tile: the least spilling one measured
# (16 warps cap ptxas at 128 registers and spill more; one stage spills more).
FALLBACK_ROWS, FALLBACK_WARPS = 16, 8


def block_k_for(weight_bytes: int) -> int:
    return 64 if weight_bytes == 2 else 32


# Columns per chunk of the scoring matrix U and the MLP's W1, by padded projection size (64 below
# 128). A chunk is loaded in a loop of two or more trips, so Triton copies it to shared memory
# asynchronously instead of through registers: with 64-column chunks (one trip at P=128 and A=64) the
# copy went through registers, and a 128-row P=128 fp16 tile or a 64-row P=256 one spilled; with
# these neither does (ptxas, sm_90; RESULTS.md, "The head's memory traffic"). At P=512 16 columns
# spilled more than 32 (972 against 456 bytes, fp32, four modalities), so 32 stay.
CHUNK_COLUMNS = {128: 32, 256: 16, 512: 32}


def chunk_size(n: int, p_pad: int) -> int:
    """Columns per chunk of the scoring matrix U [P, A] and the MLP's W1 [P, H] (CHUNK_COLUMNS)."""
    return _pow2(n, high=CHUNK_COLUMNS.get(p_pad, 64))


def shared_memory_estimate(
    block_b: int,
    block_k: int,
    p_pad: int,
    block_a: int,
    block_h: int,
    no_pad: int,
    weight_bytes: int,
    num_stages: int = NUM_STAGES,
) -> int:
    """Upper estimate of Triton's shared-memory allocation for one tile, in bytes.

    Triton stages dot operands in shared memory and reuses it between phases, so the peak is the
    largest phase: the pipelined projection chunks (x is converted to the weights' dtype before its
    dot, so both count at the weight size), the scoring dot (h and a U chunk) or the MLP (z, a W1
    chunk, the hidden chunk, a W2 chunk); plus layout-conversion scratch, measured at up to
    max(BLOCK_B, 32)^2 elements. tests/test_gpu_compile.py checks it against the compiler's figure.
    """
    projection = num_stages * (block_b * block_k + block_k * p_pad) * weight_bytes
    scoring = (block_b * p_pad + p_pad * block_a) * weight_bytes
    mlp = (block_b * p_pad + p_pad * block_h + block_b * block_h + block_h * no_pad) * weight_bytes
    return max(projection, scoring, mlp) + max(block_b, 32) ** 2 * weight_bytes


def tile_fits(
    block_b: int,
    num_warps: int,
    *,
    p_pad: int,
    block_a: int,
    block_h: int,
    no_pad: int,
    weight_bytes: int,
    converts_input: bool,
    n_modalities: int,
    arch: int,
    shared_limit: int,
) -> bool:
    """A tile is kept when its big tiles stay in registers and its shared memory fits the device."""
    if arch < 90 and block_b > MAX_ROWS_BEFORE_HOPPER:
        return False
    block_k = block_k_for(weight_bytes)
    per_thread = (block_b * p_pad + (block_b * block_k if converts_input else 0)) // (32 * num_warps)
    limit = (
        MAX_VALUES_PER_THREAD_FP16_TWO_MODALITIES[num_warps]
        if weight_bytes == 2 and n_modalities <= 2
        else MAX_VALUES_PER_THREAD
    )
    smem = shared_memory_estimate(block_b, block_k, p_pad, block_a, block_h, no_pad, weight_bytes)
    return per_thread <= limit and smem <= shared_limit


def _tile(block_b: int, num_warps: int, weight_bytes: int) -> dict[str, int]:
    return {"BLOCK_B": block_b, "BLOCK_K": block_k_for(weight_bytes), "num_warps": num_warps, "num_stages": NUM_STAGES}


def _all_tiles(weight_bytes: int) -> list[dict[str, int]]:
    return [_tile(b, w, weight_bytes) for b in TILE_ROWS for w in TILE_WARPS]


def feasible_tiles(
    projection_size: int,
    dtype: torch.dtype,
    *,
    n_modalities: int = 4,
    attention_size: int = 64,
    hidden_size: int = 128,
    n_outputs: int = 1,
    arch: int = 90,
    shared_limit: int | None = None,
    batch: int | None = None,
) -> list[dict[str, int]]:
    """The tiles the autotuner may choose for this head shape, input dtype and number of given
    modalities on a GPU of compute capability `arch` x10 (each usable as a pinned `block_config`);
    never empty: if none fits, the fallback tile. shared_limit: the device's per-block shared
    memory (default: that of an H100 for arch >= 90, of an A100 below)."""
    if shared_limit is None:
        shared_limit = SHARED_MEMORY_LIMIT[90 if arch >= 90 else 80]
    p_pad = _pow2(projection_size)
    weight_bytes = 2 if dtype == torch.float16 else 4  # bf16 inputs run on fp32 weights (fastdaf.fused)
    shape = dict(
        p_pad=p_pad,
        block_a=chunk_size(attention_size, p_pad),
        block_h=chunk_size(hidden_size, p_pad),
        no_pad=_pow2(n_outputs),
        weight_bytes=weight_bytes,
        converts_input=dtype == torch.bfloat16,
        n_modalities=n_modalities,
        arch=arch,
        shared_limit=shared_limit,
    )
    rows_cap = max(16, triton.next_power_of_2(batch)) if batch is not None else None
    kept = [
        t
        for t in _all_tiles(weight_bytes)
        if tile_fits(t["BLOCK_B"], t["num_warps"], **shape) and (rows_cap is None or t["BLOCK_B"] <= rows_cap)
    ]
    return kept or [_tile(FALLBACK_ROWS, FALLBACK_WARPS, weight_bytes)]


def _tuning_configs() -> list[triton.Config]:
    """Every tile of either weight dtype; `_prune` keeps those of the call's dtype and shape."""
    return [
        triton.Config(
            {"BLOCK_B": t["BLOCK_B"], "BLOCK_K": t["BLOCK_K"]}, num_warps=t["num_warps"], num_stages=t["num_stages"]
        )
        for weight_bytes in (4, 2)
        for t in _all_tiles(weight_bytes)
    ]


def _current_device() -> dict[str, int]:
    """The current device's architecture and per-block shared memory (read per call: cheap, and
    right when the target changes, as it does under fastdaf.kernels.offline)."""

    active = driver.active
    device = active.get_current_device()
    return {
        "arch": active.get_current_target().arch,
        "shared_limit": int(active.utils.get_device_properties(device)["max_shared_mem"]),
    }


def _prune(configs, named_args, **kwargs):
    """Keep the tiles of this call's weight dtype that fit registers and this device's shared memory
    and are not far larger than the batch."""
    given = sum(bool(kwargs[f"USE{i}"]) for i in range(4))
    tiles = feasible_tiles(
        kwargs["P"],
        named_args["x0_ptr"].dtype,
        n_modalities=given,
        attention_size=kwargs["A"],
        hidden_size=kwargs["H"],
        n_outputs=kwargs["NO"],
        batch=named_args["B"],
        **_current_device(),
    )
    wanted = {(t["BLOCK_B"], t["BLOCK_K"], t["num_warps"]) for t in tiles}
    return [c for c in configs if (c.kwargs["BLOCK_B"], c.kwargs["BLOCK_K"], c.num_warps) in wanted]


daf_head_kernel_tuned = triton.autotune(
    configs=_tuning_configs(),
    key=["B_BUCKET", "K0", "K1", "K2", "K3", "P", "A", "H", "NO", "M", "FUSION", "HAS_MASK"],
    prune_configs_by={"early_config_prune": _prune},
)(daf_head_kernel)

# The interpreter runs every config the autotuner would try; tests use one small fixed tile instead.
INTERPRETER_CONFIG = {"BLOCK_B": 16, "BLOCK_K": 32}
# Arguments after B_BUCKET are compile-time constants: the compiled launcher takes them and ignores them.
_CONSTEXPR_NAMES = daf_head_kernel.arg_names[daf_head_kernel.arg_names.index("B_BUCKET") + 1 :]
_MASK_SLOT = daf_head_kernel.arg_names.index("mask_ptr")
_OUT_SLOT = daf_head_kernel.arg_names.index("out_ptr")  # then weights, B, temperature, B_BUCKET


def batch_bucket(batch: int) -> int:
    """Autotuning key for the batch: one tuned config per power-of-two bucket."""
    return 1 << max(batch - 1, 0).bit_length()


def _pow2(n: int, low: int = 16, high: int | None = None) -> int:
    p = max(low, 1 << max(n - 1, 0).bit_length())
    return p if high is None else min(p, high)


# The direct launch calls a compiled kernel's launcher itself, with the layout of Triton 3.6's CUDA launcher:
# (grid x, y, z, stream, function, packed metadata, launch metadata, enter hook, exit hook, *arguments,
# *constexprs). That layout is Triton's private business and changes between releases, so the direct launch runs
# only on the releases it was written and checked for; on any other every call goes through Triton's own dispatch
# (correct everywhere, tens of microseconds more host time per call).
DIRECT_LAUNCH_TRITON = ("3.6",)
_COMPILED_KERNEL_PARTS = ("run", "function", "packed_metadata")  # what _keep takes from Triton's CompiledKernel


def direct_launch_unsupported_reason() -> str | None:
    """Why the direct launch is off with this Triton (None: it is on)."""
    release = ".".join(triton.__version__.split(".")[:2])
    if release not in DIRECT_LAUNCH_TRITON:
        return (
            f"Triton {triton.__version__}: the direct launch is written for the launcher of Triton "
            f"{', '.join(DIRECT_LAUNCH_TRITON)}; every call goes through Triton's own dispatch"
        )
    runtime = getattr(getattr(triton, "knobs", None), "runtime", None)
    if not all(hasattr(runtime, hook) for hook in ("launch_enter_hook", "launch_exit_hook")):
        return f"Triton {triton.__version__} has no triton.knobs.runtime launch hooks; Triton's own dispatch is used"
    return None


def _no_launch_hooks() -> bool:
    """Triton 3.6 keeps launch hooks in (normally empty) chains; the direct launch passes None for
    them and for the launch metadata only hooks read, which the launcher treats as "no hook"."""
    runtime = triton.knobs.runtime
    return not _hook_calls(runtime.launch_enter_hook) and not _hook_calls(runtime.launch_exit_hook)


def _hook_calls(hook) -> bool:
    return hook is not None and (getattr(hook, "calls", None) is None or bool(hook.calls))


def int_class(value: int) -> tuple[bool, bool, bool]:
    """What Triton specialises an integer argument on: equal to 1 (a constant), divisible by 16,
    too big for int32. Pointers specialise on 16-byte alignment."""
    return value == 1, value % 16 == 0, value >= 2**31


def _four(values: list, fill) -> list:
    """A per-modality argument list padded to the kernel's four modality slots."""
    return list(values) + [fill] * (4 - len(values))


class DAFHeadLaunch:
    """The one launcher of the fused head, prepared once per (weights, dtype, given modalities, mask).

    Everything that does not change between calls (weight pointers, constexprs, the kernel to call)
    is fixed here, so a call only binds the inputs and outputs. Shapes and dtypes are the caller's
    (fastdaf.fused) to check.

    The first call for a specialisation goes through Triton (the autotuner picks a tile, the JIT
    compiles it); the compiled kernel is then kept under that call's specialisation key (batch
    bucket, and what Triton specialises the per-call integers and pointers on, see `int_class`) and
    later calls with the same key launch it directly: Triton's autotuner dispatch and argument
    binder cost tens of microseconds of host time per call, more than an empty launch on an H100.
    `direct=False` always goes through Triton (for comparison), as does a call while a Triton launch
    hook is installed (profilers).

    proj_w[i]: [K_i, P] (None where the modality is not given); score_w: [P, A]; mlp_w1: [P, H];
    mlp_w2: [H, NO]. Matrix weights are fp32 or fp16, never bf16: Triton 3.6's interpreter multiplies
    bf16 operands wrongly (the tests run there), and bf16 weights cost accuracy (see fastdaf.fused).
    precision applies to the projection dots, second_precision to the scoring and output-MLP
    dots (tf32 or ieee for fp32 operands; fp16 operands ignore it). block_config
    ({"BLOCK_B", "BLOCK_K"}, optional "num_warps" (4) and "num_stages" (2)) pins the tile instead of autotuning.
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
        direct: bool = True,
    ) -> None:
        M = len(proj_w)
        self.given = [i for i, w in enumerate(proj_w) if w is not None]
        self.weight_args = (
            *_four([w if w is not None else score_w for w in proj_w], score_w),
            *_four([b if b is not None else score_b for b in proj_b], score_b),
            *_four([w.shape[0] if w is not None else 0 for w in proj_w], 0),
        )
        self.model_args = (score_w, score_b, score_v, static_logits, mlp_w1, mlp_b1, mlp_w2, mlp_b2)
        self.temperature = float(temperature)
        used = _four([w is not None for w in proj_w], False)
        p_pad = _pow2(projection_size)
        self.meta = dict(
            USE0=used[0],
            USE1=used[1],
            USE2=used[2],
            USE3=used[3],
            M=M,
            HAS_MASK=has_mask,
            P=projection_size,
            P_PAD=p_pad,
            A=attention_size,
            BLOCK_A=chunk_size(attention_size, p_pad),
            H=hidden_size,
            BLOCK_H=chunk_size(hidden_size, p_pad),
            NO=n_outputs,
            NO_PAD=_pow2(n_outputs),
            ACT=ACTIVATION_IDS[activation],
            FUSION=FUSION_IDS[fusion],
            PREC=precision,
            PREC2=second_precision,
        )
        if block_config is None and interpreting():
            block_config = INTERPRETER_CONFIG
        if block_config is not None:
            self.meta.update({"num_warps": 4, "num_stages": NUM_STAGES, **block_config})
            self.kernel, self.block_b = daf_head_kernel, block_config["BLOCK_B"]
        else:
            self.kernel, self.block_b = daf_head_kernel_tuned, None
        self.direct = direct and not interpreting() and direct_launch_unsupported_reason() is None
        self._compiled: dict[tuple, tuple] = {}
        # argument list with the fixed arguments in place; the inputs, strides, mask, out, weights,
        # B, temperature and bucket slots are filled per call
        self._template = [None] * 4 + [0] * 4 + list(self.weight_args) + [None] + list(self.model_args) + [None] * 5
        self._absent_slots = [i for i in range(4) if i not in self.given]
        self._batch_keys: dict[int, tuple] = {}

    def _bind(self, xs, mask, out, weights) -> tuple[list, tuple]:
        """The call's arguments and its specialisation key: the batch bucket (the autotuner's
        choice) and what Triton specialises the per-call arguments on (`int_class`; 16-byte alignment
        of pointers); weights and constants are fixed."""
        args = self._template.copy()
        anchor = xs[self.given[0]]
        for slot in self._absent_slots:
            args[slot] = anchor
        key = []
        for i in self.given:
            x = xs[i]
            args[i] = x
            stride = args[4 + i] = x.stride(0)
            key += (x.data_ptr() % 16 == 0, int_class(stride))
        B = out.shape[0]
        batch = self._batch_keys.get(B)
        if batch is None:
            batch = (batch_bucket(B), int_class(B))
            if len(self._batch_keys) < 4096:
                self._batch_keys[B] = batch
        if mask is None:
            mask = out
        else:
            key.append(mask.data_ptr() % 16 == 0)
        args[_MASK_SLOT] = mask
        args[_OUT_SLOT:] = out, weights, B, self.temperature, batch[0]
        key += (*batch, out.data_ptr() % 16 == 0, weights.data_ptr() % 16 == 0)
        return args, tuple(key)

    def __call__(
        self, xs: list[torch.Tensor | None], mask: torch.Tensor | None, out: torch.Tensor, weights: torch.Tensor
    ) -> None:
        """xs[i]: [B, K_i] with unit inner stride (None where not given); mask: uint8 [B, M] or None;
        out: fp32 [B, NO]; weights: fp32 [B, M]. No host synchronisation happens here."""
        args, key = self._bind(xs, mask, out, weights)
        B = args[-3]
        if self.direct:
            entry = self._compiled.get(key)
            if entry is not None and _no_launch_hooks():
                run, function, packed, block_b, constants, stream_of, device = entry
                run(
                    (B + block_b - 1) // block_b,
                    1,
                    1,
                    stream_of(device),
                    function,
                    packed,
                    None,
                    None,
                    None,
                    *args,
                    *constants,
                )
                return
        if self.block_b is not None:
            grid = ((B + self.block_b - 1) // self.block_b,)
        else:

            def grid(cfg: dict) -> tuple[int]:
                return ((B + cfg["BLOCK_B"] - 1) // cfg["BLOCK_B"],)

        compiled = self.kernel[grid](*args, **self.meta)
        if self.direct and compiled is not None:
            self._keep(key, compiled)

    def _keep(self, key: tuple, compiled) -> None:
        if not all(hasattr(compiled, part) for part in _COMPILED_KERNEL_PARTS):
            self.direct = False  # not the CompiledKernel the direct launch was written for: stay with Triton
            return
        config = self.meta if self.block_b is not None else {**self.meta, **self.kernel.best_config.all_kwargs()}
        constants = tuple(config[name] for name in _CONSTEXPR_NAMES)
        device = driver.active.get_current_device()
        self._compiled[key] = (
            compiled.run,
            compiled.function,
            compiled.packed_metadata,
            config["BLOCK_B"],
            constants,
            driver.active.get_current_stream,
            device,
        )
