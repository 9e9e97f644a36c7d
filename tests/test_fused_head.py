"""The fused Triton head against a float64 evaluation of the reference, in the Triton interpreter."""

import re

import pytest
import torch

from fastdaf import DAFConfig, DAFHead, InputError, UnsupportedError, reference_check
from fastdaf.fused import FusedDAFHead
from fastdaf.reference_check import TOLERANCE, reference64, relative_error, tolerance

CASES = [
    # (modalities, options, batch, with mask)
    ({"text": 40, "audio": 7}, dict(projection_size=32, attention_size=16, hidden_size=24), 1, False),
    (
        {"text": 20, "audio": 74, "video": 35},
        dict(projection_size=64, attention_size=32, hidden_size=16, n_outputs=7),
        33,
        True,
    ),
    (
        {"a": 5, "b": 17, "c": 3, "d": 16},
        dict(projection_size=16, attention_size=16, hidden_size=16, fusion="static", activation="relu"),
        18,
        True,
    ),
    (
        {"text": 24, "audio": 9},
        dict(projection_size=48, attention_size=20, hidden_size=40, fusion="mean", activation="silu", n_outputs=2),
        17,
        True,
    ),
    (
        {"text": 12},
        dict(projection_size=16, attention_size=16, hidden_size=16, activation="tanh", temperature=0.5),
        3,
        False,
    ),
    ({"text": 20, "audio": 74}, dict(projection_size=512, attention_size=100, hidden_size=144, n_outputs=8), 2, True),
]


def random_head(modalities, options, generator):
    return reference_check.random_head(DAFConfig(modalities, **options), generator=generator, weight_std=0.4)


def random_inputs(head, batch, with_mask, generator, dtype=torch.float32):
    cfg = head.config
    feats = {m: (torch.randn(batch, d, generator=generator) * 2).to(dtype) for m, d in cfg.modalities.items()}
    if not with_mask:
        return feats, None
    present = torch.rand(batch, cfg.n_modalities, generator=generator) < 0.6
    present[torch.arange(batch), torch.randint(cfg.n_modalities, (batch,), generator=generator)] = True
    return feats, present


def poisoned_outputs(head, batch):
    cfg = head.config
    return torch.full((batch, cfg.n_outputs), float("nan")), torch.full((batch, cfg.n_modalities), float("nan"))


def assert_matches(fused_out, score, weights, tol):
    assert torch.isfinite(fused_out.score).all() and torch.isfinite(fused_out.weights).all()
    assert relative_error(fused_out.score, score) <= tol, (
        f"score error {relative_error(fused_out.score, score):.2e} > {tol}"
    )
    assert relative_error(fused_out.weights, weights) <= tol, (
        f"weights error {relative_error(fused_out.weights, weights):.2e} > {tol}"
    )


@pytest.mark.parametrize("modalities, options, batch, with_mask", CASES)
def test_fp32_matches_reference(modalities, options, batch, with_mask, rng):
    head = random_head(modalities, options, rng)
    fused = FusedDAFHead.from_head(head, precision="ieee")
    feats, present = random_inputs(head, batch, with_mask, rng)
    score_buf, weight_buf = poisoned_outputs(head, batch)
    out = fused(feats, present, out=(score_buf, weight_buf))
    assert torch.isfinite(score_buf).all() and torch.isfinite(weight_buf).all()  # every element written
    score, weights = reference64(head, feats, present)
    assert out.score.shape == score.shape and out.weights.shape == weights.shape
    assert_matches(out, score, weights, tolerance(torch.float32, "ieee"))
    if present is not None:
        assert torch.all(out.weights[~present] == 0)


# each dtype beside its tolerance (the kit's, fastdaf.reference_check.TOLERANCE), as the test ids show
@pytest.mark.parametrize(
    "dtype, tol",
    [
        pytest.param(torch.float16, TOLERANCE["fp16", None], id="fp16"),
        pytest.param(torch.bfloat16, TOLERANCE["bf16", None], id="bf16"),
    ],
)
@pytest.mark.parametrize("case, batch", [(1, 1), (1, 33), (3, 17)])
def test_half_precision_matches_reference(dtype, tol, case, batch, rng):
    # B=1 with 7 outputs rather than 1: a single fp16 score can cancel to near zero while its terms are
    # large, which says nothing of the kernel (fp16, B=1, 7 outputs: worst 5.8e-3 over 70 random heads).
    # bf16 inputs run on fp32 weights (tf32 dots), exact in the interpreter; gpu_check.py checks tf32.
    modalities, options, _, with_mask = CASES[case]
    head = random_head(modalities, options, rng)
    fused = FusedDAFHead.from_head(head)
    feats, present = random_inputs(head, batch, with_mask, rng, dtype=dtype)
    score_buf, weight_buf = poisoned_outputs(head, batch)
    out = fused(feats, present, out=(score_buf, weight_buf))
    score, weights = reference64(head, feats, present)  # on the same rounded inputs
    assert tol == tolerance(dtype)
    assert_matches(out, score, weights, tol)


def test_one_fused_head_serves_every_dtype(rng):
    head = random_head({"text": 16, "audio": 8}, dict(projection_size=16, attention_size=16, hidden_size=16), rng)
    fused = FusedDAFHead.from_head(head, precision="ieee")
    feats, _ = random_inputs(head, 4, False, rng)
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float32):
        tol = tolerance(dtype, "ieee")
        rounded = {m: x.to(dtype) for m, x in feats.items()}
        out = fused(rounded)
        assert out.score.dtype == torch.float32 and out.weights.dtype == torch.float32
        assert_matches(out, *reference64(head, rounded, None), tol)


def test_absent_modality_nan_features_do_not_leak(rng):
    modalities, options, batch, _ = CASES[1]
    head = random_head(modalities, options, rng)
    fused = FusedDAFHead.from_head(head, precision="ieee")
    feats, present = random_inputs(head, batch, True, rng)
    clean = fused(feats, present)
    clean_score = clean.score.clone()
    feats["audio"][~present[:, 1]] = float("nan")
    feats["video"][~present[:, 2]] = float("inf")
    poisoned = fused(feats, present)
    assert torch.equal(poisoned.score, clean_score)


def test_left_out_modality_is_absent(rng):
    head = random_head({"text": 16, "audio": 8}, dict(projection_size=16, attention_size=16, hidden_size=16), rng)
    fused = FusedDAFHead.from_head(head, precision="ieee")
    feats, _ = random_inputs(head, 5, False, rng)
    out = fused({"text": feats["text"]})
    score, weights = reference64(head, {"text": feats["text"]}, None)
    assert_matches(out, score, weights, tolerance(torch.float32, "ieee"))
    assert torch.all(out.weights[:, 1] == 0)


def test_rows_without_modalities(rng):
    head = random_head({"text": 16, "audio": 8}, dict(projection_size=16, attention_size=16, hidden_size=16), rng)
    fused = FusedDAFHead.from_head(head, precision="ieee")
    feats, _ = random_inputs(head, 3, False, rng)
    present = torch.tensor([[True, False], [False, False], [True, True]])
    with pytest.raises(InputError, match=r"row\(s\) \[1\] have no modality present"):
        fused(feats, present)
    out = fused(feats, present, check=False)  # no host sync: the row is marked instead of refused
    assert torch.isnan(out.score[1]) and torch.all(out.weights[1] == 0)
    assert torch.isfinite(out.score[[0, 2]]).all()


def test_unsupported_requests_are_refused(rng, monkeypatch):
    with pytest.raises(UnsupportedError, match="not 'concat'"):
        FusedDAFHead.from_head(DAFHead(DAFConfig({"text": 8}, fusion="concat")))
    with pytest.raises(UnsupportedError, match="1..8 outputs"):
        FusedDAFHead.from_head(DAFHead(DAFConfig({"text": 8}, n_outputs=9)))
    head = random_head({"text": 16, "audio": 8}, dict(projection_size=16, attention_size=16, hidden_size=16), rng)
    fused = FusedDAFHead.from_head(head)
    feats, _ = random_inputs(head, 2, False, rng)
    with pytest.raises(UnsupportedError, match="fp32, fp16 or bf16"):
        fused({m: x.double() for m, x in feats.items()})
    with pytest.raises(UnsupportedError, match="one dtype and device"):
        fused({"text": feats["text"].half(), "audio": feats["audio"]})
    with pytest.raises(InputError, match="out must be fp32"):
        fused(feats, out=(torch.empty(2, 1), torch.empty(3, 2)))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(UnsupportedError, match="TRITON_INTERPRET=1"):
        FusedDAFHead.from_head(head)(feats)


def test_non_contiguous_rows_are_read_correctly(rng):
    head = random_head({"text": 16, "audio": 8}, dict(projection_size=16, attention_size=16, hidden_size=16), rng)
    fused = FusedDAFHead.from_head(head, precision="ieee")
    wide = torch.randn(6, 40, generator=rng)
    feats = {"text": wide[::2, :16], "audio": wide[::2, 20:28]}  # row stride 80, inner stride 1
    score, weights = reference64(head, feats, None)
    assert_matches(fused(feats), score, weights, tolerance(torch.float32, "ieee"))


@pytest.mark.parametrize("block", [{"BLOCK_B": 16, "BLOCK_K": 16}, {"BLOCK_B": 32, "BLOCK_K": 64}])
def test_pinned_block_configs_compute_the_same_function(block, rng):
    modalities, options, batch, _ = CASES[1]
    head = random_head(modalities, options, rng)
    fused = FusedDAFHead.from_head(head, precision="ieee", block_config=block)
    feats, present = random_inputs(head, batch, True, rng)
    score, weights = reference64(head, feats, present)
    assert_matches(fused(feats, present), score, weights, tolerance(torch.float32, "ieee"))


def test_block_config_must_name_the_tile():
    with pytest.raises(UnsupportedError, match="BLOCK_B and BLOCK_K"):
        FusedDAFHead.from_head(DAFHead(DAFConfig({"text": 8})), block_config={"BLOCK_B": 16})


UNSUPPORTED = {
    "projection 1024": (DAFConfig({"text": 8, "audio": 4}, projection_size=1024), "projection_size 1..512"),
    "concat fusion": (DAFConfig({"text": 8, "audio": 4}, fusion="concat"), "not 'concat'"),
    "nine outputs": (DAFConfig({"text": 8, "audio": 4}, n_outputs=9), "1..8 outputs, got 9"),
}


@pytest.mark.parametrize("config, says", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_one_support_rule_for_the_fused_head(config, says, caplog):
    """fastdaf.fused.unsupported_reason decides for every user: auto on CUDA falls back to the reference head
    (saying why, once), fused asked for raises the reason, and FusedDAFHead refuses with it."""
    from fastdaf.fused import unsupported_reason
    from fastdaf.pipeline import choose_head

    cuda = torch.device("cuda")  # the choice only: nothing runs on it
    assert says in unsupported_reason(config)
    with caplog.at_level("WARNING", logger="fastdaf.pipeline"):
        assert choose_head("auto", config, cuda) == "reference"
        assert choose_head("auto", config, cuda) == "reference"
    assert sum(says in r.getMessage() for r in caplog.records) <= 1  # said once per process, not per call
    with pytest.raises(UnsupportedError, match=re.escape(says)):
        choose_head("fused", config, cuda)
    with pytest.raises(UnsupportedError, match=re.escape(says)):
        FusedDAFHead.from_head(DAFHead(config))
    supported = DAFConfig({"text": 8, "audio": 4})
    assert unsupported_reason(supported, cuda) is None and choose_head("auto", supported, cuda) == "fused"
