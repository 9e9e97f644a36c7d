import math

import pytest
import torch

from fastdaf import DAFConfig, DAFHead, InputError
from fastdaf.config import FUSION_MODES


def make_inputs(cfg, batch, generator, dtype=torch.float32):
    return {m: torch.randn(batch, d, generator=generator, dtype=dtype) for m, d in cfg.modalities.items()}


@pytest.mark.parametrize("fusion", FUSION_MODES)
@pytest.mark.parametrize("n_outputs", [1, 7])
def test_shapes_and_weights(fusion, n_outputs, rng):
    cfg = DAFConfig({"text": 24, "audio": 7, "video": 5}, fusion=fusion, n_outputs=n_outputs, projection_size=16)
    head = DAFHead(cfg).eval()
    feats = make_inputs(cfg, 9, rng)
    present = torch.rand(9, 3, generator=rng) < 0.6
    present[:, 0] |= ~present.any(dim=1)  # every row keeps at least one modality
    out = head(feats, present=present)
    assert out.score.shape == ((9,) if n_outputs == 1 else (9, n_outputs))
    assert out.weights.shape == (9, 3)
    assert torch.all(out.weights[~present] == 0)  # exactly zero for absent modalities
    torch.testing.assert_close(out.weights.sum(dim=1), torch.ones(9))
    assert torch.all(out.weights[present] > 0)


def test_dtypes_follow_parameters(rng):
    cfg = DAFConfig({"text": 12, "audio": 6})
    feats = make_inputs(cfg, 4, rng, dtype=torch.float16)
    head = DAFHead(cfg).eval()
    assert head(feats).score.dtype == torch.float32  # half inputs are promoted to the head's dtype
    head64 = DAFHead(cfg).double().eval()
    assert head64(feats).score.dtype == torch.float64


def test_absent_features_never_leak(rng):
    cfg = DAFConfig({"text": 12, "audio": 6})
    head = DAFHead(cfg).eval()
    feats = make_inputs(cfg, 5, rng)
    present = torch.tensor([[True, False]] * 5)
    clean = head(feats, present=present)
    feats["audio"] = torch.full_like(feats["audio"], float("nan"))
    poisoned = head(feats, present=present)
    assert torch.equal(clean.score, poisoned.score)
    # leaving the modality out entirely is the same as marking it absent
    text_only = head({"text": feats["text"]})
    torch.testing.assert_close(text_only.score, clean.score)
    assert torch.all(text_only.weights[:, 1] == 0)


def test_single_modality_is_unimodal(rng):
    cfg = DAFConfig({"text": 10})
    out = DAFHead(cfg).eval()(make_inputs(cfg, 3, rng))
    assert torch.all(out.weights == 1)


def test_dynamic_weights_vary_per_row_static_do_not(rng):
    feats = make_inputs(DAFConfig({"text": 12, "audio": 6}), 16, rng)
    dyn = DAFHead(DAFConfig({"text": 12, "audio": 6}, fusion="dynamic")).eval()(feats).weights
    static_head = DAFHead(DAFConfig({"text": 12, "audio": 6}, fusion="static")).eval()
    with torch.no_grad():
        static_head.static_logits.copy_(torch.tensor([0.3, -0.2]))
    stat = static_head(feats).weights
    assert dyn[:, 0].std() > 0
    assert torch.allclose(stat, stat[:1].expand_as(stat))
    expected = torch.softmax(torch.tensor([0.3, -0.2]), dim=0)
    torch.testing.assert_close(stat[0], expected)


def test_temperature_sharpens_weights(rng):
    cfg = DAFConfig({"text": 12, "audio": 6}, fusion="static", temperature=0.1)
    head = DAFHead(cfg).eval()
    with torch.no_grad():
        head.static_logits.copy_(torch.tensor([0.3, -0.2]))
    w = head(make_inputs(cfg, 2, rng)).weights[0]
    torch.testing.assert_close(w, torch.softmax(torch.tensor([3.0, -2.0]), dim=0))


@pytest.mark.parametrize("fusion", FUSION_MODES)
def test_gradients_reach_every_parameter(fusion, rng):
    cfg = DAFConfig({"text": 12, "audio": 6}, fusion=fusion, dropout=0.0)
    head = DAFHead(cfg).train()
    out = head(make_inputs(cfg, 32, rng))
    (out.score**2).sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
        assert torch.isfinite(p.grad).all(), name


def test_standardisation_is_applied(rng):
    cfg = DAFConfig({"text": 4})
    head = DAFHead(cfg).eval()
    x = torch.randn(3, 4, generator=rng)
    mean, std = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2.0, 0.5, 1.0, 1e-9])
    head.set_input_stats("text", mean, std)
    shifted = head({"text": x * torch.tensor([2.0, 0.5, 1.0, 1.0]) + mean}).score
    plain = DAFHead(cfg).eval()
    plain.load_state_dict({k: v for k, v in head.state_dict().items() if "input_" not in k}, strict=False)
    torch.testing.assert_close(shifted, plain({"text": x}).score)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda h, f: h({"text": f["text"]}, present=torch.tensor([[False, True]] * 3)), "no modality present"),
        (lambda h, f: h({"text": f["text"], "video": f["text"]}), "unknown modality \\['video'\\]"),
        (lambda h, f: h({"text": f["text"][:, :5]}), "features\\['text'\\] must have shape \\[B, 12\\]"),
        (lambda h, f: h({"text": f["text"], "audio": f["audio"][:2]}), "batch size 2"),
        (lambda h, f: h({"text": f["text"].long()}), "floating-point"),
        (lambda h, f: h({"text": f["text"].numpy()}), "torch.Tensor"),
        (lambda h, f: h(f, present=torch.ones(3, 2)), "bool tensor"),
        (lambda h, f: h(f, present=torch.ones(3, 3, dtype=torch.bool)), "shape \\[3, 2\\]"),
        (lambda h, f: h({}), "no features given"),
    ],
)
def test_bad_inputs_raise_input_error(call, words, rng):
    cfg = DAFConfig({"text": 12, "audio": 6})
    head = DAFHead(cfg).eval()
    with pytest.raises(InputError, match=words):
        call(head, make_inputs(cfg, 3, rng))


def test_reference_matches_hand_computation(rng):
    """The dynamic head computes exactly the function in fastdaf.head's docstring."""
    cfg = DAFConfig(
        {"text": 5, "audio": 3}, projection_size=4, attention_size=3, hidden_size=6, activation="tanh", temperature=2.0
    )
    head = DAFHead(cfg).double().eval()
    feats = make_inputs(cfg, 2, rng, dtype=torch.float64)
    out = head(feats)
    sd = {k: v for k, v in head.state_dict().items()}
    for b in range(2):
        hs, scores = [], []
        for m in ("text", "audio"):
            x = feats[m][b]
            h = [
                math.tanh(
                    sum(sd[f"projections.{m}.weight"][p, k].item() * x[k].item() for k in range(x.numel()))
                    + sd[f"projections.{m}.bias"][p].item()
                )
                for p in range(4)
            ]
            a = [
                math.tanh(
                    sum(sd["score_hidden.weight"][j, p].item() * h[p] for p in range(4))
                    + sd["score_hidden.bias"][j].item()
                )
                for j in range(3)
            ]
            scores.append(sum(sd["score_out.weight"][0, j].item() * a[j] for j in range(3)) / 2.0)
            hs.append(h)
        e = [math.exp(s - max(scores)) for s in scores]
        w = [v / sum(e) for v in e]
        z = [w[0] * hs[0][p] + w[1] * hs[1][p] for p in range(4)]
        hid = [
            math.tanh(
                sum(sd["mlp_hidden.weight"][j, p].item() * z[p] for p in range(4)) + sd["mlp_hidden.bias"][j].item()
            )
            for j in range(6)
        ]
        y = sum(sd["mlp_out.weight"][0, j].item() * hid[j] for j in range(6)) + sd["mlp_out.bias"][0].item()
        assert out.score[b].item() == pytest.approx(y, rel=1e-9, abs=1e-12)
        assert out.weights[b].tolist() == pytest.approx(w, rel=1e-9)


def test_unchecked_call_marks_empty_rows_instead_of_syncing(rng):
    cfg = DAFConfig({"text": 12, "audio": 6})
    head = DAFHead(cfg).eval()
    feats = make_inputs(cfg, 3, rng)
    present = torch.tensor([[True, False], [False, False], [True, True]])
    out = head(feats, present, check=False)
    assert torch.isnan(out.score[1]) and torch.all(out.weights[1] == 0)
    checked = head(feats, torch.tensor([[True, False], [True, False], [True, True]]))
    assert torch.equal(out.score[[0, 2]], checked.score[[0, 2]])
