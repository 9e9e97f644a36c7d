"""`FusedDAFHead`: the DAF head forward as one Triton launch, same call and result as `DAFHead`.

Built from a trained reference head with `FusedDAFHead.from_head(head)`: the input standardisation
is folded into the projection weights (W' = W / std, b' = b - W' mean, in float64), weights are laid
out [in, out] for the kernel, and copies in fp16/bf16 are made once per device so fp32, fp16 and
bf16 inputs all run without per-call conversion. Inference only.

Precision: fp16 inputs multiply fp16 operands (weights rounded to fp16) with fp32 accumulation,
everywhere. bf16 inputs keep every weight in fp32: each bf16 input tile is converted to fp32 in
registers (exact) and multiplied in tf32, because bf16 weights (8-bit mantissa) put the head's
output up to 6e-2 (norm-wise) off the float64 reference on random heads where small outputs cancel
(measured in the interpreter over 100 heads; fp16 weights: 1.2e-2). The input traffic stays bf16;
the dots run at the tf32 tensor-core rate, half of bf16's. fp32 inputs use tf32 dots by default
(`precision="ieee"` for full fp32).

On CUDA tensors it runs the autotuned kernel, launched directly after the first call per shape;
on CPU tensors only under TRITON_INTERPRET=1 (the tests) or, compiling for a GPU and launching
nothing, inside `fastdaf.kernels.offline.offline_target` (compile checks, host-cost benchmark). With
`check=False` and preallocated `out` buffers it does no host synchronisation, so a whole predict step
can be captured in a CUDA graph; rows with no modality present then get weights 0 and a NaN score
instead of an error.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .config import FUSION_MODES, DAFConfig
from .dtypes import DTYPES
from .errors import InputError, UnsupportedError
from .head import DAFHead, DAFOutput, check_inputs, require_each_row_present
from .kernels.daf_head import DAFHeadLaunch, interpreting
from .kernels.offline import offline_active

SUPPORTED_FUSION = tuple(f for f in FUSION_MODES if f != "concat")  # concat: the reference head


def _any_global_hook() -> bool:
    m = torch.nn.modules.module
    return bool(
        m._global_forward_hooks
        or m._global_forward_pre_hooks
        or m._global_backward_hooks
        or m._global_backward_pre_hooks
    )


SUPPORTED_DTYPES = tuple(DTYPES.values())
PRECISIONS = ("tf32", "ieee")
MAX_PROJECTION_SIZE = 512
MAX_OUTPUTS = 8


def unsupported_reason(
    config: DAFConfig, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> str | None:
    """Why the fused head cannot run this head (on `device`, with inputs of `dtype`, when given), or None.

    The one rule: FusedDAFHead refuses with it, and the predictor, fastdaf-bench and serving fall back to the
    reference head on it (auto) or raise it (fused asked for)."""
    if config.fusion not in SUPPORTED_FUSION:
        return f"the fused head supports fusion {list(SUPPORTED_FUSION)}, not {config.fusion!r}"
    if not 1 <= config.projection_size <= MAX_PROJECTION_SIZE:
        return f"the fused head supports projection_size 1..{MAX_PROJECTION_SIZE}, got {config.projection_size}"
    if config.n_outputs > MAX_OUTPUTS:
        return f"the fused head supports 1..{MAX_OUTPUTS} outputs, got {config.n_outputs}"
    if (
        device is not None
        and device.type != "cuda"
        and not (device.type == "cpu" and (interpreting() or offline_active()))
    ):
        return f"the fused head runs on CUDA tensors (on CPU only under TRITON_INTERPRET=1, for tests), not on {device}"
    if dtype is not None and dtype not in SUPPORTED_DTYPES:
        return f"the fused head takes fp32, fp16 or bf16 inputs, not {dtype}"
    return None


class FusedDAFHead(nn.Module):
    """Inference-only DAF head computed by the fused Triton kernel (see the module docstring)."""

    # After its first call per shape, the kernel is launched directly, past Triton's dispatch
    # (fastdaf.kernels.daf_head.DAFHeadLaunch); False keeps Triton's dispatch on every call.
    direct_launch: bool = True

    def __init__(
        self,
        config: DAFConfig,
        tensors: Mapping[str, Tensor],
        *,
        precision: str = "tf32",
        block_config: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        reason = unsupported_reason(config)
        if reason is not None:
            raise UnsupportedError(f"{reason}; use fastdaf.DAFHead for it")
        if precision not in PRECISIONS:
            raise UnsupportedError(f"precision must be one of {list(PRECISIONS)} (fp32 inputs only), got {precision!r}")
        if block_config is not None and not {"BLOCK_B", "BLOCK_K"} <= set(block_config):
            raise UnsupportedError(
                f"block_config needs BLOCK_B and BLOCK_K (optionally num_warps, num_stages), got {dict(block_config)}"
            )
        self.config = config
        self.precision = precision
        self.block_config = None if block_config is None else dict(block_config)
        for name, value in tensors.items():
            self.register_buffer(name, value.float().contiguous())
        self._by_dtype: dict[tuple[torch.dtype, torch.device], dict[str, Tensor]] = {}
        self._plans: dict[tuple, object] = {}
        self._sizes = (config.n_outputs, config.n_modalities)  # read on every call

    @classmethod
    def from_head(
        cls, head: DAFHead, *, precision: str = "tf32", block_config: Mapping[str, int] | None = None
    ) -> "FusedDAFHead":
        """Fold a trained reference head into the kernel's layout (on the head's device).

        precision: "tf32" (tensor cores) or "ieee" for fp32 inputs; half inputs always use their own.
        block_config: pin the kernel tile (e.g. {"BLOCK_B": 32, "BLOCK_K": 64, "num_warps": 4}) instead of autotuning.
        """
        if not isinstance(head, DAFHead):
            raise InputError(f"from_head needs a fastdaf.DAFHead, got {type(head).__name__}")
        cfg = head.config
        tensors: dict[str, Tensor] = {}
        with torch.no_grad():
            for m in cfg.modality_names:
                mean, std = (t.double() for t in head.input_stats(m))
                w = head.projections[m].weight.double() / std[None, :]  # [P, K]
                b = head.projections[m].bias.double() - w @ mean
                tensors[f"proj_w_{m}"] = w.t()
                tensors[f"proj_b_{m}"] = b
            P, A = cfg.projection_size, cfg.attention_size
            if cfg.fusion == "dynamic":
                tensors["score_w"] = head.score_hidden.weight.t()
                tensors["score_b"] = head.score_hidden.bias
                tensors["score_v"] = head.score_out.weight[0]
            else:  # unused by the kernel in these modes, but every pointer must be valid
                ref = head.mlp_out.weight
                tensors["score_w"], tensors["score_b"], tensors["score_v"] = (
                    ref.new_zeros(P, A),
                    ref.new_zeros(A),
                    ref.new_zeros(A),
                )
            logits = head.static_logits if cfg.fusion == "static" else head.mlp_out.weight.new_zeros(cfg.n_modalities)
            tensors["static_logits"] = logits
            tensors["mlp_w1"] = head.mlp_hidden.weight.t()
            tensors["mlp_b1"] = head.mlp_hidden.bias
            tensors["mlp_w2"] = head.mlp_out.weight.t()
            tensors["mlp_b2"] = head.mlp_out.bias
        return cls(cfg, tensors, precision=precision, block_config=block_config).to(head.mlp_out.weight.device).eval()

    # ------------------------------------------------------------------------ weights by dtype
    def _apply(self, fn, recurse=True):  # moving the module invalidates the per-dtype copies and plans
        self._by_dtype = {}
        self._plans = {}
        return super()._apply(fn, recurse)

    def weights_for(self, dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
        """Kernel weights in the input dtype (matmul operands) or fp32 (biases, logits); cached."""
        key = (dtype, device)
        if key not in self._by_dtype:
            keep_fp32 = ("proj_b_", "score_b", "score_v", "static_logits", "mlp_b1", "mlp_b2")
            weight_dtype = torch.float32 if dtype == torch.bfloat16 else dtype  # see the module docstring
            self._by_dtype[key] = {
                name: (t if name.startswith(keep_fp32) else t.to(weight_dtype)).to(device).contiguous()
                for name, t in self.named_buffers()
            }
        return self._by_dtype[key]

    # --------------------------------------------------------------------------------- forward
    def __call__(self, *args, **kwargs) -> DAFOutput:
        # nn.Module's dispatch costs about 1.5 us a call, as much as a tenth of a batch-1 call's
        # host time; with no hook registered anywhere it would only call forward
        if (
            self._forward_hooks
            or self._forward_pre_hooks
            or self._backward_hooks
            or self._backward_pre_hooks
            or _any_global_hook()
        ):
            return super().__call__(*args, **kwargs)
        return self.forward(*args, **kwargs)

    def forward(
        self,
        features: Mapping[str, Tensor],
        present: Tensor | None = None,
        *,
        out: tuple[Tensor, Tensor] | None = None,
        check: bool = True,
    ) -> DAFOutput:
        """Same call and result as DAFHead.forward; scores and weights are fp32.

        out: preallocated (score [B, n_outputs] fp32, weights [B, M] fp32) to write into.
        check: refuse rows with no modality present (a host sync); False for CUDA-graph capture.
        """
        cfg = self.config
        tensors, mask = check_inputs(cfg, features, present)
        given = [x for x in tensors if x is not None]
        first = given[0]
        dtype, device = first.dtype, first.device
        key = (dtype, device, tuple(x is not None for x in tensors), mask is not None)
        launch = self._plans.get(key)
        if launch is None:
            if dtype not in SUPPORTED_DTYPES:
                raise UnsupportedError(f"the fused head takes fp32, fp16 or bf16 features, got {dtype}")
            launch = self._plans[key] = self._make_plan(key)
        for x in given[1:]:
            if x.dtype != dtype or x.device != device:
                raise UnsupportedError(
                    "the fused head takes features of one dtype and device; got "
                    f"{[f'{x.dtype} on {x.device}' for x in given]}"
                )
        if check and mask is not None:
            require_each_row_present(mask)
        B = first.shape[0]
        n_outputs, n_modalities = self._sizes
        if out is None:
            score = torch.empty(B, n_outputs, device=device, dtype=torch.float32)
            weights = torch.empty(B, n_modalities, device=device, dtype=torch.float32)
        else:
            score, weights = out
            if (
                score.shape != (B, n_outputs)
                or weights.shape != (B, n_modalities)
                or score.dtype != torch.float32
                or weights.dtype != torch.float32
            ):
                raise InputError(f"out must be fp32 tensors of shapes [{B}, {n_outputs}] and [{B}, {n_modalities}]")
        if B > 0:
            xs = [x if x is None or x.stride(1) == 1 else x.contiguous() for x in tensors]
            launch(xs, None if mask is None else mask.contiguous().view(torch.uint8), score, weights)
        return DAFOutput(score=score.squeeze(-1) if n_outputs == 1 else score, weights=weights)

    def _make_plan(self, key: tuple):
        """Build the kernel launch for one (dtype, device, given modalities, mask) combination."""
        dtype, device, given, has_mask = key
        reason = unsupported_reason(self.config, device)
        if reason is not None:
            raise UnsupportedError(f"{reason}. Use fastdaf.DAFHead there.")
        cfg = self.config
        w = self.weights_for(dtype, device)
        names = cfg.modality_names
        return DAFHeadLaunch(
            [w[f"proj_w_{m}"] if g else None for m, g in zip(names, given)],
            [w[f"proj_b_{m}"] if g else None for m, g in zip(names, given)],
            w["score_w"],
            w["score_b"],
            w["score_v"],
            w["static_logits"],
            w["mlp_w1"],
            w["mlp_b1"],
            w["mlp_w2"],
            w["mlp_b2"],
            has_mask=has_mask,
            projection_size=cfg.projection_size,
            attention_size=cfg.attention_size,
            hidden_size=cfg.hidden_size,
            n_outputs=cfg.n_outputs,
            activation=cfg.activation,
            fusion=cfg.fusion,
            temperature=cfg.temperature,
            precision={torch.float32: self.precision, torch.bfloat16: "tf32", torch.float16: "ieee"}[
                dtype
            ],  # fp16 operands ignore it
            second_precision={torch.float32: self.precision, torch.bfloat16: "tf32", torch.float16: "ieee"}[dtype],
            block_config=self.block_config,
            direct=self.direct_launch,
        )
