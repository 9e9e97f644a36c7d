"""Where gpu_check's correctness bounds come from, on a CPU (a minute or two):

    python benchmarks/gpu_check_bounds.py [--heads 400]

For each input dtype and dot precision, random heads at the shapes gpu_check checks (its validation
design's structures, and the timed shapes text 768 + audio 74, P 128 and 256), computed the way the
compiled kernel rounds (fastdaf.reference_check.kernel_rounding_model64: fp16 operands, tf32 by
truncation, fp32) against the exact float64 head:
- the worst componentwise error (each output's error over the magnitude of the terms that enter it,
  fastdaf.reference_check.error_scales64), of scores and of modality weights: the bound
  COMPONENTWISE_TOLERANCE must sit well above it;
- for single-row, single-output cases (gpu_check's B=1 timing check before this bound), how often the
  norm-wise relative error of that one score exceeds the old norm-wise TOLERANCE: false failures, since
  the model is rounding only.
No kernel runs here: a GPU's rounding, as modelled. Prints JSON, and appends one benchmark row per dtype
row (fastdaf.bench_rows: null times, the errors in `extra`; `--results FILE` elsewhere, `--no-results` none).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from fastdaf import DAFConfig
from fastdaf.bench_head import random_features
from fastdaf.bench_rows import BenchRow, add_results_options, bench_row, write_results
from fastdaf.dtypes import DTYPES
from fastdaf.fused import SUPPORTED_FUSION as FUSIONS
from fastdaf.reference_check import (
    COMPONENTWISE_TOLERANCE,
    TOLERANCE,
    componentwise_error,
    error_scales64,
    kernel_rounding_model64,
    random_head,
    reference64,
    relative_error,
)

ROWS = (("fp32", "tf32"), ("fp32", "ieee"), ("fp16", None), ("bf16", None))


def shapes(i: int) -> tuple[dict, dict, float, int]:
    """(modalities, head options, weight std, batch) of draw i: alternately a timed shape (std 0.05 and
    features as gpu_check's timing uses, fastdaf.reference_check.random_head and
    fastdaf.bench_head.random_features) and a validation-like one (std 0.4)."""
    if i % 2 == 0:
        P = (128, 256)[(i // 2) % 2]
        return {"text": 768, "audio": 74}, dict(projection_size=P, attention_size=64, hidden_size=128), 0.05, 1
    dims = ((768, 74, 35, 17), (384, 88, 47, 5))[(i // 2) % 2][: 1 + (i // 4) % 4]
    opts = dict(
        projection_size=(16, 48, 100, 128, 256, 512)[i % 6],
        attention_size=(16, 40, 64, 100)[i % 4],
        hidden_size=(16, 64, 128, 144)[(i // 3) % 4],
        n_outputs=(1, 2, 7)[i % 3],
        fusion=FUSIONS[(i // 5) % 3],
    )
    return dict(zip(("text", "audio", "video", "extra"), dims)), opts, 0.4, (1, 9)[(i // 7) % 2]


def calibrate(n_heads: int) -> dict:
    g = torch.Generator().manual_seed(23)
    report = {}
    for dtype_name, precision in ROWS:
        worst_score = worst_weights = 0.0
        single, single_fail = 0, 0
        value_over_scale: list[float] = []
        for i in range(n_heads):
            mods, opts, std, batch = shapes(i)
            head = random_head(DAFConfig(mods, **opts), generator=g, weight_std=std)
            if std == 0.05:  # a timed shape
                feats, present = random_features(head.config, batch, DTYPES[dtype_name], torch.device("cpu"), seed=i)
                if i % 4 == 0:
                    present = None
            else:
                feats = {m: (2 * torch.randn(batch, d, generator=g)).to(DTYPES[dtype_name]) for m, d in mods.items()}
                present = None
            if std != 0.05 and len(mods) > 1 and i % 3 == 0:
                present = torch.rand(batch, len(mods), generator=g) < 0.7
                present[:, 0] |= ~present.any(dim=1)
            want_score, want_weights = reference64(head, feats, present)
            got_score, got_weights = kernel_rounding_model64(head, feats, present, precision or "tf32")
            score_scale, weight_scale = error_scales64(head, feats, present)
            worst_score = max(worst_score, componentwise_error(got_score, want_score, score_scale))
            worst_weights = max(worst_weights, componentwise_error(got_weights, want_weights, weight_scale))
            finite = ~want_score.isnan()
            value_over_scale += (want_score.abs()[finite] / score_scale.expand_as(want_score)[finite]).tolist()
            if batch == 1 and head.config.n_outputs == 1:
                single += 1
                single_fail += relative_error(got_score, want_score) > TOLERANCE[(dtype_name, precision)]
        key = f"{dtype_name}-{precision}" if precision else dtype_name
        report[key] = {
            "heads": n_heads,
            "worst_componentwise_score": worst_score,
            "worst_componentwise_weights": worst_weights,
            "componentwise_bound": COMPONENTWISE_TOLERANCE[(dtype_name, precision)],
            "single_output_cases": single,
            "single_output_norm_check_false_failures": single_fail,
            "norm_bound": TOLERANCE[(dtype_name, precision)],
            # a bug that moves a score by a fraction f of its value is caught once f * this > the bound
            "median_abs_score_over_scale": statistics.median(value_over_scale),
        }
    return report


def report_rows(report: dict) -> list[BenchRow]:
    return [
        bench_row(
            "benchmarks/gpu_check_bounds.py",
            "kernel rounding model vs float64, worst componentwise error (random heads at gpu_check's shapes)",
            device=torch.device("cpu"),
            backend="fused-rounding-model",
            dtype=key,
            extra={"errors": values, "unit": "componentwise error (error / rounding scale)"},
        )
        for key, values in report.items()
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", type=int, default=400, help="random heads per dtype row")
    add_results_options(parser)
    args = parser.parse_args(argv)
    report = calibrate(args.heads)
    print(json.dumps(report, indent=2))
    write_results(report_rows(report), args, prog="gpu_check_bounds")


if __name__ == "__main__":
    main()
