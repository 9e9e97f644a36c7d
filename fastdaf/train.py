"""Training a DAF head on pooled feature tensors (the encoders stay frozen and are run beforehand)."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .config import DAFConfig
from .errors import ConfigError, InputError
from .features import FeatureSet
from .head import DAFHead
from .metrics import sentiment_metrics

LOSSES = ("l1", "mse", "huber")


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings; recorded in the checkpoint beside the head config."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-2
    loss: str = "l1"
    patience: int = 10
    seed: int = 0
    modality_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss {self.loss!r} is not accepted; choose one of {list(LOSSES)}")
        if not (isinstance(self.modality_dropout, (int, float)) and 0.0 <= self.modality_dropout < 1.0):
            raise ConfigError(f"modality_dropout must be in [0, 1), got {self.modality_dropout!r}")


@dataclasses.dataclass
class TrainResult:
    head: DAFHead
    history: list[dict[str, float]]
    best_epoch: int
    metrics: dict[str, float]  # MMSA metrics of the best head on the validation rows
    options: TrainOptions

    def record(self) -> dict[str, Any]:
        """What goes into the checkpoint's `extra`: options, seed, best epoch, validation metrics."""
        return {
            "training": dataclasses.asdict(self.options),
            "best_epoch": self.best_epoch,
            "valid_metrics": self.metrics,
        }


def _check_compatible(config: DAFConfig, data: FeatureSet, role: str) -> None:
    if data.modalities != dict(config.modalities):
        raise InputError(
            f"{role} features have modalities {data.modalities}, the head expects {dict(config.modalities)}"
        )
    if data.labels is None:
        raise InputError(f"{role} features have no labels")
    want = 1 if config.n_outputs == 1 else config.n_outputs
    got = 1 if data.labels.dim() == 1 else data.labels.shape[1]
    if got != want:
        raise InputError(f"{role} labels have {got} column(s), the head has n_outputs={config.n_outputs}")
    if not bool(torch.isfinite(data.labels).all()):
        raise InputError(f"{role} labels hold NaN or infinite values")
    if not bool(data.present.any(dim=1).all()):
        raise InputError(f"{role} features have rows with no modality present")


def fit_standardisation(head: DAFHead, data: FeatureSet) -> None:
    """Per-feature mean/std of each modality over the training rows where it is present."""
    for i, (m, x) in enumerate(data.features.items()):
        rows = x[data.present[:, i]].double()
        if rows.shape[0] < 2:
            continue  # too few rows to estimate: keep the identity
        head.set_input_stats(m, rows.mean(0).float(), rows.std(0).float())


def drop_modalities(present: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Mark each present modality absent with probability p, always keeping at least one per row."""
    drop = torch.rand(present.shape, generator=generator) < p
    kept = present & ~drop
    empty = ~kept.any(dim=1)
    if bool(empty.any()):
        # keep one randomly chosen present modality in rows that lost them all
        pick = torch.where(present, torch.rand(present.shape, generator=generator), -1.0).argmax(dim=1)
        kept[empty, pick[empty]] = True
    return kept


@torch.no_grad()
def predict_features(head: torch.nn.Module, data: FeatureSet, *, batch_size: int = 4096) -> tuple[Tensor, Tensor]:
    """Scores and modality weights for every row of a feature set, in eval mode."""
    was_training = head.training
    head.eval()
    device = next(head.parameters()).device
    scores, weights = [], []
    for start in range(0, len(data), batch_size):
        chunk = slice(start, start + batch_size)
        out = head({m: x[chunk].to(device) for m, x in data.features.items()}, present=data.present[chunk].to(device))
        scores.append(out.score.float().cpu())
        weights.append(out.weights.float().cpu())
    head.train(was_training)
    return torch.cat(scores), torch.cat(weights)


def _loss_fn(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    return {
        "l1": torch.nn.functional.l1_loss,
        "mse": torch.nn.functional.mse_loss,
        "huber": torch.nn.functional.smooth_l1_loss,
    }[name]


def first_output(t: Tensor) -> Tensor:
    """The sentiment column of scores or labels ([N] or [N, K] with sentiment first)."""
    return t if t.dim() == 1 else t[:, 0]


def train_head(
    config: DAFConfig | DAFHead,
    train: FeatureSet,
    valid: FeatureSet,
    options: TrainOptions | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    **option_overrides: Any,
) -> TrainResult:
    """Train with AdamW and early stopping on validation MAE (of the first output); returns the best head.

    Fixed `seed` gives bit-identical results on the same machine: initialisation, shuffling,
    dropout and modality dropout all draw from generators seeded here, and the global RNG is left as it was.
    """
    options = dataclasses.replace(options or TrainOptions(), **option_overrides)
    cfg = config.config if isinstance(config, DAFHead) else config
    _check_compatible(cfg, train, "training")
    _check_compatible(cfg, valid, "validation")
    loss_fn = _loss_fn(options.loss)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        head = copy.deepcopy(config) if isinstance(config, DAFHead) else DAFHead(cfg)
        head = head.to(device)
        fit_standardisation(head, train)
        shuffle = torch.Generator().manual_seed(options.seed)
        optimiser = torch.optim.AdamW(head.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        labels = train.labels.float()
        best_mae, best_epoch, best_state, stale = math.inf, -1, None, 0
        history: list[dict[str, float]] = []
        epochs = range(options.epochs)
        bar = None
        if progress:
            bar = tqdm(epochs, desc="training", unit="epoch", leave=False, disable=None)  # off when not a terminal
            epochs = bar
        for epoch in epochs:
            head.train()
            order = torch.randperm(len(train), generator=shuffle)
            total, seen = 0.0, 0
            for start in range(0, len(train), options.batch_size):
                idx = order[start : start + options.batch_size]
                present = train.present[idx]
                if options.modality_dropout > 0:
                    present = drop_modalities(present, options.modality_dropout, shuffle)
                out = head({m: x[idx].to(device) for m, x in train.features.items()}, present=present.to(device))
                loss = loss_fn(out.score, labels[idx].to(device))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            pred, _ = predict_features(head, valid)
            valid_mae = float((first_output(pred) - first_output(valid.labels.float())).abs().mean())
            history.append({"epoch": epoch, "train_loss": total / seen, "valid_mae": valid_mae})
            if bar is not None:
                bar.set_postfix(train_loss=f"{total / seen:.4f}", valid_mae=f"{valid_mae:.4f}")
            if valid_mae < best_mae - 1e-6:
                best_mae, best_epoch, stale = valid_mae, epoch, 0
                best_state = copy.deepcopy(head.state_dict())
            else:
                stale += 1
                if stale >= options.patience:
                    break
        if bar is not None:
            bar.close()
    head.load_state_dict(best_state)
    head.eval()
    pred, _ = predict_features(head, valid)
    metrics = sentiment_metrics(first_output(pred), first_output(valid.labels))
    return TrainResult(head=head, history=history, best_epoch=best_epoch, metrics=metrics, options=options)
