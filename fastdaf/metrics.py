"""CMU-MOSI/MOSEI regression metrics, computed exactly as the MMSA toolkit does (thuiar/MMSA,
`utils/metricsTop.py`, `__eval_mosei_regression`), so numbers compare with published tables.

Reimplemented in numpy (no scikit-learn dependency); weighted F1 follows sklearn's
`f1_score(average="weighted")`: per-class F1 weighted by the class's support in the labels,
0 for a class whose precision or recall is undefined.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import InputError

METRIC_NAMES = ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr")


def _as_vector(values, name: str) -> np.ndarray:
    try:
        if isinstance(values, torch.Tensor):
            values = values.detach().to("cpu", torch.float64).numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise InputError(f"{name} is empty; metrics need at least one value")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr))[:5].tolist()
        raise InputError(f"{name} holds NaN or infinite values at positions {bad}")
    return arr


def weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """sklearn's weighted-average F1 for label arrays (classes = union of both)."""
    classes = np.union1d(truth, pred)
    total = 0.0
    for c in classes:
        tp = np.sum((pred == c) & (truth == c))
        fp = np.sum((pred == c) & (truth != c))
        fn = np.sum((pred != c) & (truth == c))
        denom = 2 * tp + fp + fn
        f1 = 0.0 if denom == 0 else 2 * tp / denom
        total += f1 * np.sum(truth == c)
    return float(total / truth.size)


def multiclass_acc(pred: np.ndarray, truth: np.ndarray) -> float:
    # np.round rounds half to even, as MMSA does
    return float(np.mean(np.round(pred) == np.round(truth)))


def sentiment_metrics(pred, target) -> dict[str, float]:
    """MMSA's MOSEI regression metrics for predictions and labels on the [-3, 3] scale.

    Returns the eight MMSA keys, each rounded to 4 decimals. Metrics that are undefined for the
    input (Non0 metrics when every label is 0, Corr when either side is constant) are NaN.
    """
    p = _as_vector(pred, "predictions")
    t = _as_vector(target, "labels")
    if p.shape != t.shape:
        raise InputError(f"predictions ({p.size}) and labels ({t.size}) differ in length")

    mae = float(np.mean(np.abs(p - t)))
    if p.size > 1 and np.std(p) > 0 and np.std(t) > 0:
        corr = float(np.corrcoef(p, t)[0, 1])
    else:
        corr = float("nan")
    mult7 = multiclass_acc(np.clip(p, -3.0, 3.0), np.clip(t, -3.0, 3.0))
    mult5 = multiclass_acc(np.clip(p, -2.0, 2.0), np.clip(t, -2.0, 2.0))

    nonzero = t != 0
    if nonzero.any():
        nz_truth, nz_pred = t[nonzero] > 0, p[nonzero] > 0
        non0_acc = float(np.mean(nz_truth == nz_pred))
        non0_f1 = weighted_f1(nz_truth, nz_pred)
    else:
        non0_acc = non0_f1 = float("nan")
    has_truth, has_pred = t >= 0, p >= 0
    has0_acc = float(np.mean(has_truth == has_pred))
    has0_f1 = weighted_f1(has_truth, has_pred)

    values = (has0_acc, has0_f1, non0_acc, non0_f1, mult5, mult7, mae, corr)
    # np.round (not Python's round) on float64, as MMSA's round(np.float64, 4) does
    return {k: float(np.round(np.float64(v), 4)) for k, v in zip(METRIC_NAMES, values)}


def format_table(rows: dict[str, dict[str, float]], keys: Sequence[str] = METRIC_NAMES) -> str:
    """A fixed-width text table: one line per named row of metrics."""
    width = max([len(n) for n in rows] + [4])
    head = " ".join([f"{'':{width}}"] + [f"{k:>13}" for k in keys])
    lines = [head]
    for name, metrics in rows.items():
        lines.append(" ".join([f"{name:{width}}"] + [f"{metrics[k]:13.4f}" for k in keys]))
    return "\n".join(lines)


EMOTION_METRIC_NAMES = ("balanced_acc", "macro_F1", "acc_3", "Corr", "MAE")
# the classes emotion_metrics scores: unpleasant emotions are negative whatever their arousal (fastdaf.data.emotion)
NEGATIVE = ("sad", "angry", "fearful", "disgust")
NEUTRAL = ("neutral", "calm")


def emotion_metrics(pred, target, emotions: Sequence[str], audio_weights=None) -> dict[str, object]:
    """How well sentiment scores follow emotion labels (emotion-labelled speech, see fastdaf.data.emotion).

    - balanced_acc: mean of the recall on happy clips (score > 0) and on negative ones (sad, angry, fearful,
      disgust: score < 0); plain accuracy would reward calling everything negative (4 of 5 emotions).
    - macro_F1: unweighted mean of the two classes' F1 on the same sign decision.
    - acc_3: accuracy over negative / neutral (neutral, calm) / happy, the score cut at -0.5 and +0.5 (the labels of
      fastdaf's predictions).
    - Corr, MAE: Pearson r and mean absolute error against the mapped labels (target), on every row.
    - per_emotion: mean score, and mean audio weight where `audio_weights` is given, per emotion.
    """
    p, t = _as_vector(pred, "predictions"), _as_vector(target, "labels")
    emotions = [e.lower() for e in emotions]
    if not p.size == t.size == len(emotions):
        raise InputError(f"predictions ({p.size}), labels ({t.size}) and emotions ({len(emotions)}) differ in length")
    happy = np.array([e == "happy" for e in emotions])
    negative = np.array([e in NEGATIVE for e in emotions])
    neutral = np.array([e in NEUTRAL for e in emotions])
    recalls = [float(np.mean(p[happy] > 0)) if happy.any() else float("nan")]
    recalls.append(float(np.mean(p[negative] < 0)) if negative.any() else float("nan"))
    polar = happy | negative
    macro_f1 = float("nan")
    if happy.any() and negative.any():
        truth, guess = happy[polar], p[polar] > 0
        f1s = []
        for cls in (True, False):
            tp = np.sum((guess == cls) & (truth == cls))
            denom = 2 * tp + np.sum((guess == cls) & (truth != cls)) + np.sum((guess != cls) & (truth == cls))
            f1s.append(0.0 if denom == 0 else 2 * tp / denom)
        macro_f1 = float(np.mean(f1s))
    graded = polar | neutral
    true_class = np.where(happy, 1, np.where(negative, -1, 0))[graded]
    guess_class = np.where(p >= 0.5, 1, np.where(p <= -0.5, -1, 0))[graded]
    acc3 = float(np.mean(true_class == guess_class)) if graded.any() else float("nan")
    corr = float(np.corrcoef(p, t)[0, 1]) if p.size > 1 and np.std(p) > 0 and np.std(t) > 0 else float("nan")
    values = (float(np.mean(recalls)), macro_f1, acc3, corr, float(np.mean(np.abs(p - t))))
    out: dict[str, object] = {k: float(np.round(v, 4)) for k, v in zip(EMOTION_METRIC_NAMES, values)}
    weights = None if audio_weights is None else _as_vector(audio_weights, "audio weights")
    per_emotion = {}
    for emotion in sorted(set(emotions)):
        rows = np.array([e == emotion for e in emotions])
        entry = {"rows": int(rows.sum()), "mean_score": float(np.round(p[rows].mean(), 4))}
        if weights is not None:
            entry["mean_audio_weight"] = float(np.round(weights[rows].mean(), 4))
        per_emotion[emotion] = entry
    out["per_emotion"] = per_emotion
    return out
