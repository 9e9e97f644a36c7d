import math

import numpy as np
import pytest
import torch

from fastdaf import InputError
from fastdaf.metrics import METRIC_NAMES, emotion_metrics, sentiment_metrics, weighted_f1


def test_hand_worked_example_with_zero_label_and_ties():
    pred = [1.5, -0.5, 0.4, 2.5, -2.5]
    label = [2.0, 0.0, -1.0, 2.5, -3.0]
    m = sentiment_metrics(pred, label)
    assert list(m) == list(METRIC_NAMES)
    # labels >= 0: T T F T F; preds >= 0: T F T T F
    assert m["Has0_acc_2"] == 0.6
    # class True: tp 2, fp 1, fn 1 -> F1 2/3, support 3; class False: tp 1, fp 1, fn 1 -> F1 1/2, support 2
    assert m["Has0_F1_score"] == 0.6
    # zero label dropped; labels > 0: T F T F; preds > 0: T T T F
    assert m["Non0_acc_2"] == 0.75
    # True: F1 4/5 (support 2); False: F1 2/3 (support 2)
    assert m["Non0_F1_score"] == 0.7333
    # round half to even: 1.5->2, -0.5->0, 2.5->2, -2.5->-2 against 2, 0, -1, 2, -3
    assert m["Mult_acc_7"] == 0.6
    # clipped to [-2, 2]: preds 2, 0, 0, 2, -2 vs labels 2, 0, -1, 2, -2
    assert m["Mult_acc_5"] == 0.8
    assert m["MAE"] == 0.58
    p, t = np.array(pred), np.array(label)
    pearson = ((p - p.mean()) * (t - t.mean())).sum() / math.sqrt(
        ((p - p.mean()) ** 2).sum() * ((t - t.mean()) ** 2).sum()
    )
    assert m["Corr"] == round(pearson, 4)


def test_mae_is_unclipped_and_accuracies_are_clipped():
    m = sentiment_metrics([5.0, -4.0], [3.0, -3.0])
    assert m["MAE"] == 1.5
    assert m["Mult_acc_7"] == 1.0 and m["Mult_acc_5"] == 1.0


def test_rounding_ties_go_to_even():
    # 0.5 rounds to 0 and 1.5 to 2 (numpy), so 0.5 vs 0 matches and 1.5 vs 1 does not
    m = sentiment_metrics([0.5, 1.5, -1.5, 2.5], [0.0, 1.0, -2.0, 3.0])
    assert m["Mult_acc_7"] == 0.5


def test_all_zero_labels_leave_non0_undefined():
    m = sentiment_metrics(torch.tensor([0.1, -0.2, 0.3]), torch.zeros(3))
    assert math.isnan(m["Non0_acc_2"]) and math.isnan(m["Non0_F1_score"]) and math.isnan(m["Corr"])
    assert m["Has0_acc_2"] == pytest.approx(0.6667)


def test_weighted_f1_counts_classes_missing_from_labels_with_zero_weight():
    assert weighted_f1(np.array([True, True]), np.array([True, False])) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "pred, label, words",
    [([], [], "empty"), ([1.0, float("nan")], [1.0, 2.0], "NaN or infinite"), ([1.0, 2.0], [1.0], "differ in length")],
)
def test_bad_metric_inputs(pred, label, words):
    with pytest.raises(InputError, match=words):
        sentiment_metrics(pred, label)


def test_emotion_metrics_by_hand():
    emotions = ["happy", "happy", "sad", "angry", "fearful", "neutral", "calm", "disgust"]
    labels = [1.5, 1.5, -1.5, -1.5, -1.5, 0.0, 0.0, -1.5]
    scores = [1.0, -0.2, -1.0, 0.3, -2.0, 0.1, 0.7, -0.6]
    got = emotion_metrics(scores, labels, emotions, audio_weights=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    # happy recall 1/2, negative recall 3/4 -> balanced 0.625; F1 happy (tp 1, fp 1, fn 1) 0.5, negative
    # (tp 3, fp 1, fn 1) 0.75 -> macro 0.625; 3-class: happy 1.0 ok, -0.2 no; sad, fearful, disgust ok; angry no;
    # neutral 0.1 ok; calm 0.7 no -> 5/8
    assert got["balanced_acc"] == 0.625 and got["macro_F1"] == 0.625 and got["acc_3"] == 0.625
    assert got["MAE"] == pytest.approx(sum(abs(s - t) for s, t in zip(scores, labels)) / 8, abs=1e-4)
    assert got["per_emotion"]["happy"] == {"rows": 2, "mean_score": 0.4, "mean_audio_weight": 0.85}
    assert math.isnan(emotion_metrics([1.0, 2.0], [1.5, 1.5], ["happy", "happy"])["macro_F1"])
