import json

import pytest
import torch

from fastdaf import DAFConfig
from fastdaf.bench import bench_e2e, main
from fastdaf.bench_head import head_callables, random_features
from fastdaf.errors import InputError
from fastdaf.reference_check import random_head


def test_bench_head_cli_json_on_cpu(capsys):
    code = main(
        [
            "head",
            "--device",
            "cpu",
            "--batch-sizes",
            "1",
            "8",
            "--modalities",
            "text=32,audio=7",
            "--projection-size",
            "16",
            "--backends",
            "reference",
            "--warmup",
            "1",
            "--iters",
            "5",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["environment"]["device"].startswith("CPU") and report["environment"]["torch"] == torch.__version__
    rows = report["results"]
    assert [(r["batch"], r["backend"]) for r in rows] == [(1, "reference"), (8, "reference")]
    for r in rows:
        assert 0 < r["p50_us"] <= r["p90_us"] <= r["p99_us"]
        assert r["rows_per_s"] == pytest.approx(r["batch"] / (r["p50_us"] * 1e-6))


def test_bench_compile_backend_computes_the_reference():
    cfg = DAFConfig({"text": 32, "audio": 7}, projection_size=16)
    head = random_head(cfg, torch.device("cpu"))
    feats, present = random_features(cfg, 4, torch.float32, torch.device("cpu"))
    with torch.no_grad():
        calls = head_callables(head, feats, present, ["reference", "reference-compile"])
        eager, compiled = calls["reference"](), calls["reference-compile"]()
    torch.testing.assert_close(compiled.score, eager.score, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--modalities", "text:768"], "name=dim pairs"),
        (["--device", "cpu", "--backends", "fused"], "need a CUDA device"),
        (["--device", "cpu", "--batch-sizes", "0"], "batch sizes"),
    ],
)
def test_bench_bad_arguments_exit_2(argv, words, capsys):
    assert main(["head", *argv]) == 2
    assert words in capsys.readouterr().err


def test_bench_e2e_on_cpu(tiny_models, tmp_path, capsys):
    plot = tmp_path / "e2e.png"
    code = main(
        [
            "e2e",
            "--device",
            "cpu",
            "--backends",
            "eager",
            "cudagraph",
            "--batch-sizes",
            "1",
            "2",
            "--tokens",
            "8",
            "--audio-seconds",
            "1",
            "--text-model",
            tiny_models["bert"],
            "--warmup",
            "1",
            "--iters",
            "3",
            "--plot",
            str(plot),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["results"]
    eager = [r for r in rows if r["backend"] == "eager"]
    assert [r["batch"] for r in eager] == [1, 2]
    for r in eager:
        for stage in ("text", "audio", "head", "total"):
            assert 0 < r[f"{stage}_p50_us"] <= r[f"{stage}_p90_us"] <= r[f"{stage}_p99_us"]
        assert r["utterances_per_s"] == pytest.approx(r["batch"] / (r["total_p50_us"] * 1e-6))
    skipped = [r for r in rows if r["backend"] == "cudagraph"]
    assert len(skipped) == 1 and "runs on CUDA" in skipped[0]["skipped"]
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_bench_e2e_head_choice_gives_the_all_eager_row(tiny_models):
    cpu = torch.device("cpu")
    options = dict(text_model=tiny_models["bert"], tokens=8, seconds=0.5, warmup=1, iters=2)
    (row,) = bench_e2e(cpu, ["eager"], [2], head="reference", **options)
    assert (row["backend"], row["head"]) == ("eager", "reference") and row["head_p50_us"] > 0
    with pytest.raises(InputError, match="head 'fast'"):
        bench_e2e(cpu, ["eager"], [1], head="fast", **options)
    code = main(
        [
            "e2e",
            "--device",
            "cpu",
            "--backends",
            "eager",
            "--batch-sizes",
            "1",
            "--tokens",
            "8",
            "--audio-seconds",
            "0.5",
            "--text-model",
            tiny_models["bert"],
            "--head",
            "reference",
            "--warmup",
            "1",
            "--iters",
            "2",
            "--json",
        ]
    )
    assert code == 0
