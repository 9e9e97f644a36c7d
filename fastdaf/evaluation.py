"""What an evaluation says beyond the MMSA metrics: how the head weights each modality, how far the score moves
without it, and whether the modality carries information at all.

Why controls: a modality can improve the metrics by being present rather than by what it says (the head learns a
shift for "audio is there"). Each modality is therefore also scored with two controls that keep its presence and
destroy its content, over several seeds:
- `shuffled`: its vectors permuted among the rows where it is present (seeded);
- `constant`: every row where it is present gets one and the same vector (that of one row, drawn by the seed),
  as if one fixed clip were attached to every utterance.
A modality is `informative` when the real rows beat every seed of both controls on MAE (the regression target's
own error, the decision metric here): better than the whole spread of each control, not just its mean. Otherwise
it carries no measurable information on this data, whatever its weight.

Weights: per modality, the mean and p10/p50/p90 of its weight over the rows where it is present, and
`drop_effect`, the mean |score(all) - score(without it)| over the rows where it and at least one other modality
are present (dropping the only modality leaves nothing to score).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .errors import InputError
from .extras import pyplot
from .features import FeatureSet
from .metrics import emotion_metrics, sentiment_metrics
from .train import first_output, predict_features

CONTROL_KINDS = ("shuffled", "constant")
CONTROL_SEEDS = 5
DECISION_METRIC = "MAE"  # lower is better
_PERCENTILES = {"p10": 0.10, "p50": 0.50, "p90": 0.90}


def _column(data: FeatureSet, modality: str) -> int:
    if modality not in data.features:
        raise InputError(f"no modality {modality!r} in the data; it has {list(data.features)}")
    return list(data.features).index(modality)


def control(data: FeatureSet, modality: str, kind: str, seed: int) -> FeatureSet:
    """`data` with `modality`'s content destroyed by the control `kind` (see the module docstring)."""
    if kind not in CONTROL_KINDS:
        raise InputError(f"control {kind!r} is not accepted; choose one of {list(CONTROL_KINDS)}")
    rows = data.present[:, _column(data, modality)].nonzero().flatten()
    if rows.numel() == 0:
        raise InputError(f"modality {modality!r} is present in no row; there is nothing to control")
    g = torch.Generator().manual_seed(seed)
    x = data.features[modality].clone()
    if kind == "shuffled":
        x[rows] = x[rows[torch.randperm(rows.numel(), generator=g)]]
    else:
        x[rows] = x[rows[torch.randint(rows.numel(), (1,), generator=g)]]
    return FeatureSet({**data.features, modality: x}, data.present, data.labels, data.ids, data.splits,
                      data.label_names, data.info)  # fmt: skip


def without(data: FeatureSet, modalities: Sequence[str]) -> FeatureSet:
    """`data` with `modalities` marked absent in every row, keeping the rows that still have one present (e.g. the
    text-only or audio-only view of a text+audio set, as `fastdaf eval --drop` gives)."""
    present = data.present.clone()
    for modality in modalities:
        present[:, _column(data, modality)] = False
    rows = present.any(dim=1).nonzero().flatten()
    if rows.numel() == 0:
        raise InputError(f"without {list(modalities)} no row has a modality left to score")
    return FeatureSet(data.features, present, data.labels, data.ids, data.splits, data.label_names, data.info).subset(
        rows
    )


def _score(head: torch.nn.Module, data: FeatureSet) -> torch.Tensor:
    return first_output(predict_features(head, data)[0])


def row_emotions(data: FeatureSet) -> list[str] | None:
    """Each row's emotion, for emotion-labelled speech (fastdaf.data.emotion records them by id); None otherwise."""
    by_id = (data.info or {}).get("emotions")
    return None if by_id is None or data.ids is None else [by_id[i] for i in data.ids]


def metrics_of(head: torch.nn.Module, data: FeatureSet) -> dict[str, float]:
    """The MMSA metrics of the head's sentiment score on labelled data (eval, its controls and ablate's)."""
    return sentiment_metrics(_score(head, data), first_output(data.labels))


def weight_statistics(
    head: torch.nn.Module, data: FeatureSet, predictions: tuple[torch.Tensor, torch.Tensor] | None = None
) -> dict[str, dict[str, float | None]]:
    """Per modality: weight mean/p10/p50/p90 where present, and drop_effect (None where it cannot be measured).
    `predictions`: the head's (scores, weights) on `data` when the caller has them already."""
    score, weights = predictions if predictions is not None else predict_features(head, data)
    score = first_output(score)
    out: dict[str, dict[str, float | None]] = {}
    for j, modality in enumerate(data.features):
        here = data.present[:, j]
        w = weights[here, j].double()
        stats: dict[str, float | None] = {"mean": round(float(w.mean()), 4) if w.numel() else None}
        for name, q in _PERCENTILES.items():
            stats[name] = round(float(torch.quantile(w, q)), 4) if w.numel() else None
        others = data.present.clone()
        others[:, j] = False
        droppable = (here & others.any(dim=1)).nonzero().flatten()
        if droppable.numel():
            dropped = without(data.subset(droppable), [modality])  # every such row keeps another modality
            moved = (score[droppable] - _score(head, dropped)).abs().double().mean()
            stats["drop_effect"] = round(float(moved), 4)
        else:
            stats["drop_effect"] = None
        out[modality] = stats
    return out


def _mean_metrics(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {k: round(sum(r[k] for r in runs) / len(runs), 4) for k in runs[0]}


def informative(real: Sequence[float], controls: Mapping[str, Sequence[float]]) -> bool:
    """True when every real value of the decision metric (MAE) beats every seed of every control."""
    return all(max(real) < min(values) for values in controls.values())


def modality_controls(
    head: torch.nn.Module,
    data: FeatureSet,
    *,
    seeds: Sequence[int] = range(CONTROL_SEEDS),
    real: float | None = None,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Per modality present in the data: each control's mean metrics and per-seed MAE, and `informative`."""
    real_mae = real if real is not None else metrics_of(head, data)[DECISION_METRIC]
    present = [m for j, m in enumerate(data.features) if bool(data.present[:, j].any())]
    total = len(present) * len(CONTROL_KINDS) * len(seeds)
    bar = tqdm(total=total, desc="controls", unit="run", disable=None if progress else True)  # terminal only
    out = {}
    for modality in present:
        result: dict[str, Any] = {}
        for kind in CONTROL_KINDS:
            runs = []
            for seed in seeds:
                runs.append(metrics_of(head, control(data, modality, kind, seed)))
                bar.update()
            result[kind] = _mean_metrics(runs)
            result[kind][f"{DECISION_METRIC}_per_seed"] = [r[DECISION_METRIC] for r in runs]
        per_kind = {kind: result[kind][f"{DECISION_METRIC}_per_seed"] for kind in CONTROL_KINDS}
        result["informative"] = informative([real_mae], per_kind)
        out[modality] = result
    bar.close()
    return out


def evaluate(
    head: torch.nn.Module,
    data: FeatureSet,
    *,
    controls: bool = False,
    seeds: Sequence[int] = range(CONTROL_SEEDS),
    progress: bool = False,
) -> dict[str, Any]:
    """`fastdaf eval --json`'s layout: {"metrics", "weights", "controls" (with controls=True)}."""
    if data.labels is None:
        raise InputError("the data has no labels to evaluate against")
    predictions = predict_features(head, data)  # once, for the metrics and the weights
    metrics = sentiment_metrics(first_output(predictions[0]), first_output(data.labels))
    result: dict[str, Any] = {"metrics": metrics, "weights": weight_statistics(head, data, predictions)}
    emotions = row_emotions(data)
    if emotions is not None:
        audio = predictions[1][:, list(data.features).index("audio")] if "audio" in data.features else None
        result["emotions"] = emotion_metrics(first_output(predictions[0]), first_output(data.labels), emotions, audio)
        result["emotion_mapping"] = data.info["emotion_mapping"]
    if controls:
        real = result["metrics"][DECISION_METRIC]
        result["controls"] = modality_controls(head, data, seeds=seeds, real=real, progress=progress)
    return result


def verdicts(result: Mapping[str, Any]) -> list[str]:
    """The controls' conclusion for each modality, in words."""
    lines = []
    for modality, c in (result.get("controls") or {}).items():
        mae = result["metrics"][DECISION_METRIC]
        per_seed = {k: c[k][f"{DECISION_METRIC}_per_seed"] for k in CONTROL_KINDS}
        spread = ", ".join(f"{k} {min(v):.4f}-{max(v):.4f}" for k, v in per_seed.items())
        if c["informative"]:
            lines.append(f"{modality}: informative (MAE {mae:.4f} beats every control seed: {spread})")
        else:
            lines.append(
                f"{modality}: carries no measurable information here: with its content shuffled or constant the MAE "
                f"is as good ({spread}; real {mae:.4f}); its effect comes from being present, not from what it says"
            )
    return lines


def plot_evaluation(head: torch.nn.Module, data: FeatureSet, path: str | Path) -> Path:
    """Weight distributions per modality and predicted-vs-label, in one PNG; for emotion-labelled speech also the
    score and the audio weight by emotion."""
    plt = pyplot("eval --plot")
    score, weights = predict_features(head, data)
    score, labels = first_output(score), first_output(data.labels)
    emotions = row_emotions(data)
    if emotions is None:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    else:
        fig, ((left, right), (by_score, by_weight)) = plt.subplots(2, 2, figsize=(11, 8))
        rows_of = {e: [i for i, x in enumerate(emotions) if x == e] for e in set(emotions)}
        order = sorted(rows_of, key=lambda e: float(score[rows_of[e]].mean()))  # lowest mean score first
        groups = [rows_of[e] for e in order]
        by_score.boxplot([score[g].clamp(-3, 3).numpy() for g in groups])
        by_score.axhline(0.0, color="grey", linewidth=1)
        by_score.set(ylabel="predicted score", title="score by emotion")
        if "audio" in data.features:
            column = list(data.features).index("audio")
            by_weight.boxplot([weights[g, column].numpy() for g in groups])
        by_weight.set(ylabel="audio weight", ylim=(0, 1), title="audio weight by emotion")
        for axes in (by_score, by_weight):
            axes.set_xticks(range(1, len(order) + 1), order, rotation=30)
    for j, modality in enumerate(data.features):
        here = data.present[:, j]
        left.hist(weights[here, j].numpy(), bins=40, range=(0, 1), alpha=0.6, label=f"{modality} ({int(here.sum())})")
    left.set(xlabel="modality weight", ylabel="rows", title="weights where the modality is present")
    left.legend()
    right.scatter(labels.numpy(), score.clamp(-3, 3).numpy(), s=4, alpha=0.4)
    right.plot([-3, 3], [-3, 3], color="grey", linewidth=1)
    right.set(xlabel="label", ylabel="predicted score", title="predicted vs label", xlim=(-3.2, 3.2), ylim=(-3.2, 3.2))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
