"""The paper's comparison on any feature set: dynamic fusion against static, mean and concat fusion
and each modality alone, over several seeds, as a markdown table (mean +- std) and a PNG plot."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .config import FUSION_MODES, DAFConfig
from .evaluation import CONTROL_KINDS, DECISION_METRIC, control, informative, metrics_of
from .extras import pyplot
from .features import FeatureSet
from .metrics import METRIC_NAMES, sentiment_metrics
from .train import TrainOptions, first_output, predict_features, train_head

FUSIONS = FUSION_MODES


def only(data: FeatureSet, modality: str) -> FeatureSet:
    """The rows where `modality` is present, with that modality alone (the unimodal baseline's data)."""
    i = list(data.features).index(modality)
    rows = data.present[:, i].nonzero().flatten()
    sub = data.subset(rows)
    return FeatureSet(
        {modality: sub.features[modality]},
        sub.present[:, i : i + 1],
        sub.labels,
        sub.ids,
        sub.splits,
        sub.label_names,
        sub.info,
    )


def variants(data: FeatureSet) -> list[str]:
    names = list(FUSIONS)
    if len(data.modalities) > 1:
        names += [f"{m} only" for m in data.modalities]
    return names


def run_ablation(
    train: FeatureSet,
    valid: FeatureSet,
    evaluate: FeatureSet,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    options: TrainOptions | None = None,
    head_options: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train every variant with every seed (selection on `valid`), score on `evaluate`."""
    options = options or TrainOptions()
    head_options = head_options or {}
    results: dict[str, Any] = {}
    names = variants(train)
    # on a terminal only (stderr); silent when piped or when progress=False
    bar = tqdm(total=len(names) * len(seeds), desc="ablation", unit="head", disable=None if progress else True)
    for name in names:
        runs, weights = [], None
        control_runs: dict[str, list[dict[str, float]]] = {}
        for seed in seeds:
            if name.endswith(" only"):
                modality = name[: -len(" only")]
                tr, va, ev = only(train, modality), only(valid, modality), only(evaluate, modality)
                cfg = DAFConfig({modality: train.modalities[modality]}, **head_options)
            else:
                tr, va, ev = train, valid, evaluate
                cfg = DAFConfig(train.modalities, fusion=name, **head_options)
            trained = train_head(cfg, tr, va, options, seed=seed)
            score, w = predict_features(trained.head, ev)
            runs.append(sentiment_metrics(first_output(score), first_output(ev.labels)))
            if name == "dynamic" and weights is None:
                weights = w[ev.present.all(dim=1)] if ev.present.all(dim=1).any() else w
            if name == "dynamic" and len(ev.modalities) > 1:
                # the same controls as `fastdaf eval --controls`, one control seed per training seed
                for j, modality in enumerate(ev.modalities):
                    for kind in CONTROL_KINDS if bool(ev.present[:, j].any()) else ():
                        metrics = metrics_of(trained.head, control(ev, modality, kind, seed))
                        control_runs.setdefault(f"dynamic, {modality} {kind}", []).append(metrics)
            bar.set_postfix_str(f"{name} seed {seed}: MAE {runs[-1]['MAE']:.4f}")
            bar.update()
        results[name] = _summary(runs)
        if weights is not None:
            results[name]["weights"] = weights
        for control_name, control_metrics in control_runs.items():
            results[control_name] = _summary(control_metrics)
    bar.close()
    return results


def _summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "runs": runs,
        "mean": {k: statistics.fmean(r[k] for r in runs) for k in METRIC_NAMES},
        "std": {k: statistics.pstdev([r[k] for r in runs]) for k in METRIC_NAMES},
    }


def control_verdicts(results: dict[str, Any], modalities: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per modality: whether dynamic fusion's real rows beat every seed of both controls (fastdaf.evaluation)."""
    if "dynamic" not in results:
        return {}
    real = [r[DECISION_METRIC] for r in results["dynamic"]["runs"]]
    out = {}
    for m in modalities:
        names = {kind: f"dynamic, {m} {kind}" for kind in CONTROL_KINDS}
        if all(n in results for n in names.values()):
            per_kind = {kind: [r[DECISION_METRIC] for r in results[n]["runs"]] for kind, n in names.items()}
            out[m] = {"informative": informative(real, per_kind), **{k: results[n]["mean"] for k, n in names.items()}}
    return out


def markdown_table(results: dict[str, Any], *, keys: Sequence[str] = METRIC_NAMES) -> str:
    lines = ["| variant | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for name, r in results.items():
        cells = [f"{r['mean'][k]:.4f} +- {r['std'][k]:.4f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, Any], modalities: Sequence[str], path: str | Path) -> Path:
    """Bars of each metric (mean +- std over seeds) and the distribution of dynamic fusion's weights."""
    plt = pyplot("fastdaf ablate's plot")
    names = list(results)
    shown = ("MAE", "Corr", "Non0_acc_2", "Has0_acc_2", "Mult_acc_7")
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(4 * (len(shown) + 1), 4))
    for ax, key in zip(axes, shown):
        means = [results[n]["mean"][key] for n in names]
        stds = [results[n]["std"][key] for n in names]
        ax.bar(range(len(names)), means, yerr=stds, capsize=3, color=["C0" if n == "dynamic" else "C7" for n in names])
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_title(key)
        low = min(m - s for m, s in zip(means, stds))
        high = max(m + s for m, s in zip(means, stds))
        ax.set_ylim(low - 0.1 * (high - low + 1e-6), high + 0.1 * (high - low + 1e-6))
    ax = axes[-1]
    weights = results.get("dynamic", {}).get("weights")
    if weights is not None and weights.numel():
        ax.violinplot([weights[:, i].numpy() for i in range(weights.shape[1])], showmedians=True)
        ax.set_xticks(range(1, len(modalities) + 1), list(modalities))
        ax.set_ylim(0, 1)
    ax.set_title("dynamic fusion: modality weights")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def weights_summary(weights: torch.Tensor, modalities: Sequence[str]) -> dict[str, dict[str, float]]:
    return {
        m: {"mean": float(weights[:, i].mean()), "std": float(weights[:, i].std()) if weights.shape[0] > 1 else 0.0}
        for i, m in enumerate(modalities)
    }
