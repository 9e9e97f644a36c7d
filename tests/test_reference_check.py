"""The componentwise bounds of fastdaf.reference_check: rounding as the compiled kernel does it stays
inside them, a score cancelling to zero does not trip them, and a wrong score fails them."""

from __future__ import annotations

import pytest
import torch

from fastdaf import DAFConfig
from fastdaf.bench_head import random_features
from fastdaf.reference_check import (
    COMPONENTWISE_TOLERANCE,
    TOLERANCE,
    componentwise_error,
    error_scales64,
    kernel_rounding_model64,
    random_head,
    reference64,
    relative_error,
    tf32_truncate,
)

TIMED = ({"text": 768, "audio": 74}, dict(projection_size=128, attention_size=64, hidden_size=128))
ROWS = [(torch.float32, "tf32"), (torch.float32, "ieee"), (torch.float16, None), (torch.bfloat16, None)]
NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def test_tf32_truncate_drops_the_low_mantissa_bits():
    x = torch.tensor([1.0 + 2**-10 + 2**-11 + 2**-20, -3.0 - 2**-9 - 2**-12], dtype=torch.float64)
    assert tf32_truncate(x).tolist() == [1.0 + 2**-10, -3.0 - 2**-9]  # towards zero, not to nearest


@pytest.mark.parametrize("dtype,precision", ROWS, ids=["fp32-tf32", "fp32-ieee", "fp16", "bf16"])
def test_the_kernels_rounding_stays_inside_the_bound(rng, dtype, precision):
    bound = COMPONENTWISE_TOLERANCE[(NAMES[dtype], precision)]
    for trial in range(6):
        mods, opts = TIMED if trial % 2 == 0 else ({"text": 20, "audio": 9, "video": 5}, dict(projection_size=48))
        fusion = ("dynamic", "static", "mean")[trial % 3]
        head = random_head(DAFConfig(mods, **opts, fusion=fusion, n_outputs=1 + trial % 2), generator=rng)
        feats, present = random_features(head.config, 1 + 4 * (trial % 3), dtype, torch.device("cpu"), seed=trial)
        want_score, want_weights = reference64(head, feats, present)
        got_score, got_weights = kernel_rounding_model64(head, feats, present, precision or "tf32")
        score_scale, weight_scale = error_scales64(head, feats, present)
        assert componentwise_error(got_score, want_score, score_scale) <= bound / 2
        assert componentwise_error(got_weights, want_weights, weight_scale) <= bound / 2


def test_a_score_cancelling_to_zero_trips_the_norm_check_but_not_the_componentwise_one(rng):
    head = random_head(DAFConfig(*TIMED[:1], **TIMED[1]), generator=rng)
    feats, present = random_features(head.config, 1, torch.float32, torch.device("cpu"), seed=3)
    want, _ = reference64(head, feats, present)
    with torch.no_grad():
        head.mlp_out.bias -= want.float()  # the one score is now the difference of two equal sums
    want, _ = reference64(head, feats, present)
    got, _ = kernel_rounding_model64(head, feats, present, "tf32")
    assert abs(want.item()) < 1e-6
    assert relative_error(got, want) > TOLERANCE[("fp32", "tf32")]  # rounding alone "fails" the old check
    scale, _ = error_scales64(head, feats, present)
    assert componentwise_error(got, want, scale) <= COMPONENTWISE_TOLERANCE[("fp32", "tf32")]


@pytest.mark.parametrize("dtype,precision", [(torch.float32, "tf32"), (torch.float16, None)], ids=["tf32", "fp16"])
def test_wrong_scores_and_weights_fail(rng, dtype, precision):
    head = random_head(DAFConfig(*TIMED[:1], **TIMED[1]), generator=rng, weight_std=0.4)
    feats, present = random_features(head.config, 16, dtype, torch.device("cpu"), seed=5)
    bound = COMPONENTWISE_TOLERANCE[(NAMES[dtype], precision)]
    want_score, want_weights = reference64(head, feats, present)
    score_scale, weight_scale = error_scales64(head, feats, present)
    # every score 10% off its value; the modality weights of each row swapped
    assert componentwise_error(want_score * 1.1, want_score, score_scale) > bound
    assert componentwise_error(want_weights.flip(1), want_weights, weight_scale) > bound
    # a score that is NaN where the reference has a number (an unwritten output) is never within a bound
    broken = want_score.clone()
    broken[3] = float("nan")
    assert componentwise_error(broken, want_score, score_scale) == float("inf")
