"""The reference DAF head in plain PyTorch: the definition every faster implementation is checked against.

Choices where the paper is silent (arXiv 2509.22729 gives no equations):

- Each modality m: x_m is standardised with stored per-feature mean/std (identity until fitted),
  then projected, h_m = act(W_m x_m + b_m), with dropout on h_m while training.
- `dynamic`: one scoring network shared by all modalities, s_m = v . tanh(U h_m + c) (additive,
  Bahdanau-style attention), weights = softmax(s / temperature) over the modalities present in the row.
- `static`: one learned logit per modality, the same for every row, softmax over the present ones.
- `mean`: equal weights over the present modalities.
- `concat`: early fusion, [h_1, ..., h_M] (absent ones as zeros) into the output MLP. It has no
  modality weighting; its reported weights are the uniform split over present modalities.
- Fusion z = sum_m w_m h_m; output MLP y = W_2 act(W_1 z + b_1) + b_2, linear output (not squashed into
  [-3, 3]: MMSA's metrics and L1 training use the raw value; `fastdaf.predict` clips for display).
- Absent modalities get weight exactly 0 and their features are never read into the result (even
  NaN features of an absent modality do not leak). A row with no modality present is an InputError.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from .checkpoint import read_config, read_state, save_checkpoint
from .config import DAFConfig
from .errors import CheckpointError, InputError

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}
# a feature's standard deviation at or below this is stored as 1 (it does not vary), and refused in a checkpoint
MIN_INPUT_STD = 1e-6


@dataclasses.dataclass
class DAFOutput:
    """What a head returns: `score` [B] (or [B, n_outputs]) and modality `weights` [B, M] in config order."""

    score: Tensor
    weights: Tensor


def check_inputs(
    config: DAFConfig, features: Mapping[str, Tensor], present: Tensor | None
) -> tuple[list[Tensor | None], Tensor | None]:
    """Validate a forward call; shared by the reference and fused heads so both accept and refuse the same calls.

    Returns the feature tensors in config order (None where a modality is left out, i.e. absent for
    every row) and the presence mask [B, M] with left-out columns cleared, or None when no `present`
    was given: then every given modality is present in every row, and no mask needs to exist.
    """
    if not isinstance(features, dict) and not isinstance(features, Mapping):
        raise InputError(f"features must be a mapping modality name -> tensor [B, dim], got {type(features).__name__}")
    modalities = config.modalities
    if not features:
        raise InputError(f"no features given; this head accepts {dict(modalities)} (name -> dim)")
    for name in features:
        if name not in modalities:
            unknown = sorted(set(features) - set(modalities))
            raise InputError(f"unknown modality {unknown}; this head accepts {list(modalities)}")
    tensors: list[Tensor | None] = []
    batch = None
    for name, dim in modalities.items():
        x = features.get(name)
        if x is None:
            tensors.append(None)
            continue
        if not isinstance(x, Tensor):
            raise InputError(f"features[{name!r}] must be a torch.Tensor, got {type(x).__name__}")
        shape = x.shape
        if len(shape) != 2 or shape[1] != dim:
            raise InputError(f"features[{name!r}] must have shape [B, {dim}], got {list(shape)}")
        if not x.is_floating_point():
            raise InputError(f"features[{name!r}] must be a floating-point tensor, got dtype {x.dtype}")
        if batch is None:
            batch = shape[0]
        elif shape[0] != batch:
            raise InputError(f"features[{name!r}] has batch size {shape[0]}, other modalities have {batch}")
        tensors.append(x)
    if present is None:
        return tensors, None
    if not isinstance(present, Tensor) or present.dtype != torch.bool:
        raise InputError(
            f"present must be a bool tensor [B, {config.n_modalities}], got "
            f"{getattr(present, 'dtype', type(present).__name__)}"
        )
    if present.shape != (batch, config.n_modalities):
        raise InputError(f"present must have shape [{batch}, {config.n_modalities}], got {list(present.shape)}")
    device = next(t for t in tensors if t is not None).device
    return tensors, _clear_left_out(present.to(device), tensors)


def _clear_left_out(mask: Tensor, tensors: list[Tensor | None]) -> Tensor:
    left_out = [i for i, t in enumerate(tensors) if t is None]
    if left_out:
        mask = mask.clone()
        for i in left_out:  # slice fills only: no host-to-device copy, so this can be graph-captured
            mask[:, i] = False
    return mask


def full_mask(tensors: list[Tensor | None], mask: Tensor | None) -> Tensor:
    """The presence mask check_inputs left implicit (None: every given modality present)."""
    if mask is not None:
        return mask
    given = next(t for t in tensors if t is not None)
    return _clear_left_out(torch.ones(given.shape[0], len(tensors), dtype=torch.bool, device=given.device), tensors)


def require_each_row_present(mask: Tensor) -> None:
    """Refuse rows without any modality (a host sync: the fused head leaves this to its caller)."""
    empty = ~mask.any(dim=1)
    if bool(empty.any()):
        rows = empty.nonzero().flatten()[:5].tolist()
        raise InputError(f"row(s) {rows} have no modality present; every row needs at least one")


def masked_softmax(logits: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """Softmax over present modalities; absent ones get exactly 0 (and rows with none get all 0)."""
    logits = (logits / temperature).masked_fill(~mask, float("-inf"))
    weights = torch.softmax(logits, dim=-1)
    return torch.nan_to_num(weights, nan=0.0)


class DAFHead(nn.Module):
    """Reference Dynamic Attention Fusion head (see the module docstring for the exact function)."""

    def __init__(self, config: DAFConfig) -> None:
        super().__init__()
        if not isinstance(config, DAFConfig):
            raise InputError(f"DAFHead needs a fastdaf.DAFConfig, got {type(config).__name__}")
        self.config = config
        P, A, H = config.projection_size, config.attention_size, config.hidden_size
        act = _ACTIVATIONS[config.activation]
        self.projections = nn.ModuleDict({m: nn.Linear(d, P) for m, d in config.modalities.items()})
        for m, d in config.modalities.items():
            self.register_buffer(f"input_mean_{m}", torch.zeros(d))
            self.register_buffer(f"input_std_{m}", torch.ones(d))
        self.activation = act()
        self.dropout = nn.Dropout(config.dropout)
        if config.fusion == "dynamic":
            self.score_hidden = nn.Linear(P, A)
            self.score_out = nn.Linear(A, 1, bias=False)
        elif config.fusion == "static":
            self.static_logits = nn.Parameter(torch.zeros(config.n_modalities))
        fused = P * config.n_modalities if config.fusion == "concat" else P
        self.mlp_hidden = nn.Linear(fused, H)
        self.mlp_out = nn.Linear(H, config.n_outputs)

    # ------------------------------------------------------------ standardisation
    def input_stats(self, modality: str) -> tuple[Tensor, Tensor]:
        return getattr(self, f"input_mean_{modality}"), getattr(self, f"input_std_{modality}")

    @torch.no_grad()
    def set_input_stats(self, modality: str, mean: Tensor, std: Tensor) -> None:
        """Store the training-set standardisation of one modality.

        A (near-)constant feature keeps std 1 rather than a tiny std that would blow up unseen variation.
        """
        buf_mean, buf_std = self.input_stats(modality)
        if mean.shape != buf_mean.shape or std.shape != buf_std.shape:
            raise InputError(f"input stats of {modality!r} must have shape {list(buf_mean.shape)}")
        buf_mean.copy_(mean)
        buf_std.copy_(torch.where(std > MIN_INPUT_STD, std, torch.ones_like(std)))

    # ------------------------------------------------------------------- forward
    def project(self, modality: str, x: Tensor) -> Tensor:
        mean, std = self.input_stats(modality)
        x = (x.to(mean.dtype) - mean) / std
        return self.dropout(self.activation(self.projections[modality](x)))

    def forward(
        self, features: Mapping[str, Tensor], present: Tensor | None = None, *, check: bool = True
    ) -> DAFOutput:
        """check=False skips the refusal of rows without modalities (a host sync), so the call can be
        captured in a CUDA graph or compiled without a break; such rows then score NaN with weights 0."""
        cfg = self.config
        tensors, mask = check_inputs(cfg, features, present)
        mask = full_mask(tensors, mask)
        if check:
            require_each_row_present(mask)
        B = mask.shape[0]
        P = cfg.projection_size
        param = self.mlp_out.weight
        projected = []
        for i, (name, x) in enumerate(zip(cfg.modality_names, tensors)):
            if x is None:
                projected.append(param.new_zeros(B, P))
                continue
            h = self.project(name, x)
            projected.append(torch.where(mask[:, i, None], h, 0.0))
        stacked = torch.stack(projected, dim=1)  # [B, M, P]

        if cfg.fusion == "dynamic":
            logits = self.score_out(torch.tanh(self.score_hidden(stacked))).squeeze(-1)
            logits = torch.where(mask, logits, 0.0)  # keep NaN from absent rows out of the softmax
            weights = masked_softmax(logits, mask, cfg.temperature)
        elif cfg.fusion == "static":
            weights = masked_softmax(self.static_logits.expand(B, -1), mask, cfg.temperature)
        else:  # mean, and the nominal weights of concat
            weights = mask.to(param.dtype) / mask.sum(dim=1, keepdim=True).to(param.dtype)

        if cfg.fusion == "concat":
            fused = stacked.reshape(B, -1)
        else:
            fused = (weights.unsqueeze(-1) * stacked).sum(dim=1)
        hidden = self.dropout(self.activation(self.mlp_hidden(fused)))
        score = self.mlp_out(hidden)
        score = torch.where(mask.any(dim=1, keepdim=True), score, float("nan"))
        if cfg.n_outputs == 1:
            score = score.squeeze(-1)
        return DAFOutput(score=score, weights=weights)

    # --------------------------------------------------------------- checkpoints
    def save_pretrained(self, directory: str | Path, *, extra: Mapping | None = None) -> Path:
        """Write `config.json` + `model.safetensors` (the one fastdaf checkpoint format)."""
        return save_checkpoint(directory, self.config, self.state_dict(), extra=extra)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, map_location: str | torch.device = "cpu") -> "DAFHead":
        """Load a head saved by `save_pretrained`, validating every tensor against the config."""
        config, _extra = read_config(directory)
        head = cls(config)
        state = read_state(directory, head.state_dict())
        for m in config.modality_names:  # standardisation divides by these
            std = state[f"input_std_{m}"]
            if bool((std <= MIN_INPUT_STD).any()):
                raise CheckpointError(
                    f"{directory}: tensor 'input_std_{m}' has {int((std <= MIN_INPUT_STD).sum())} entries <= "
                    f"{MIN_INPUT_STD:g} (smallest {std.min().item():.3g}); standardisation divides by it, and fastdaf "
                    "writes 1 for a feature that does not vary (DAFHead.set_input_stats)"
                )
        head.load_state_dict(state)
        return head.to(map_location).eval()
