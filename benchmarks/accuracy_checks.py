"""Numerical figures quoted in the notes and docstrings, reproduced by one command (CPU, a few minutes):

    python benchmarks/accuracy_checks.py

- pitch: relative error of the median F0 over voiced frames of 1 s tones (sines and harmonic tones);
- acoustic speed: 16 random ten-second clips through acoustic_features, median of 10 runs;
- format invariance: for each of the six CMU ARCTIC clips, the feature change after a resampling round
  trip 16 -> R -> 16 kHz (whole vector for R = 22.05/44.1/48 kHz, prosodic columns for 8 kHz), for the
  mel floor in use (40 dB) and for 60 dB;
- fused head: norm-wise error against the float64 reference over 100 random heads with realistic
  weight scales, fp16 and bf16 inputs, in the Triton interpreter;
- tf32 error scale (the basis of fastdaf.reference_check.TOLERANCE[("fp32", "tf32")], which the
  interpreter cannot exercise: it computes tf32 dots in full fp32): the reference head in float64
  with every matrix product's operands first rounded to tf32's 10-bit mantissa (to nearest, and
  truncated), against the exact float64 head, over 120 random heads with weights ~N(0, 0.4) as the
  kernel checks use. An emulation of the error's scale, not of the kernel's exact operations
  (the kernel folds the input standardisation into the weights).

It measures errors, and one time (acoustic speed). Its figures are also appended as benchmark rows
(fastdaf.bench_rows, to benchmarks/results.jsonl; `--results FILE` elsewhere, `--no-results` none):
the acoustic speed as a timed row (percentiles over its 10 runs, clips/s), and one row per error
check with p50/p90/p99 null and the errors in `extra`, so that a check's figures can be followed
from commit to commit beside the timings (the chart, which draws p50s, leaves those rows out).
"""

from __future__ import annotations

import argparse
import functools
import glob
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import soundfile
import torch

import fastdaf.audio.acoustic as A
from fastdaf import DAFConfig, DAFHead
from fastdaf.audio.dsp import resample
from fastdaf.audio.pitch import estimate_pitch
from fastdaf.bench_rows import BenchRow, add_results_options, bench_row, write_results
from fastdaf.fused import FusedDAFHead
from fastdaf.reference_check import reference64, relative_error, tf32_truncate

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech"
BENCHMARK = "benchmarks/accuracy_checks.py"


def pitch_errors() -> dict[str, float]:
    t = torch.arange(16000) / 16000
    worst = {}
    for kind in ("sine", "harmonic"):
        errs = []
        for f in (80, 110, 165, 220, 237, 330, 440, 450):
            wave = (
                torch.sin(2 * torch.pi * f * t)
                if kind == "sine"
                else sum((0.2 if k == 1 else 1.0 / k) * torch.sin(2 * torch.pi * f * k * t) for k in range(1, 6))
            )
            f0, voiced = estimate_pitch(0.5 * wave / wave.abs().max())
            errs.append(abs(float(f0[voiced].median()) - f) / f)
        worst[kind] = max(errs)
    return worst


def acoustic_times(runs: int = 10) -> list[float]:
    """Seconds of each of `runs` calls of acoustic_features on 16 random ten-second clips (after one warm-up)."""
    g = torch.Generator().manual_seed(0)
    clips = [torch.randn(160000, generator=g) * 0.1 for _ in range(16)]
    A.acoustic_features(clips)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        A.acoustic_features(clips)
        times.append(time.perf_counter() - start)
    return times


def acoustic_speed() -> float:
    return statistics.median(acoustic_times())


def round_trip_errors(dynamic_range: float) -> dict[str, float]:
    A.MEL_DYNAMIC_RANGE_DB = dynamic_range
    prosodic = torch.tensor([n.startswith(("f0_", "voiced", "log_energy")) for n in A.FEATURE_NAMES])
    worst: dict[str, float] = {}
    for path in sorted(glob.glob(str(SPEECH / "*.wav"))):
        x = torch.from_numpy(soundfile.read(path, dtype="float32")[0])
        base = A.acoustic_features([x])[0]
        for rate in (8000, 22050, 44100, 48000):
            y = resample(resample(x, 16000, rate), rate, 16000)  # what load_audio does
            f = A.acoustic_features([y])[0]
            cols = prosodic if rate == 8000 else torch.ones_like(prosodic)
            scale = torch.maximum(base[cols].abs(), torch.ones_like(base[cols]))
            err = float(((f[cols] - base[cols]) / scale).norm() / (base[cols] / scale).norm())
            worst[str(rate)] = max(worst.get(str(rate), 0.0), err)
    A.MEL_DYNAMIC_RANGE_DB = 40.0
    return worst


def fused_precision(n: int = 100) -> dict[str, dict[str, float]]:
    g = torch.Generator().manual_seed(5)
    shapes = [
        (
            {"text": 20, "audio": 74, "video": 35},
            dict(projection_size=64, attention_size=32, hidden_size=16, n_outputs=7),
        ),
        ({"text": 24, "audio": 9}, dict(projection_size=48, attention_size=20, hidden_size=40, n_outputs=2)),
    ]
    out = {}
    for dtype in (torch.float16, torch.bfloat16):
        errs = []
        for trial in range(n):
            mods, opts = shapes[trial % 2]
            head = DAFHead(DAFConfig(mods, **opts)).eval()
            with torch.no_grad():
                for name, p in head.named_parameters():
                    fan_in = p.shape[-1] if p.dim() > 1 else p.shape[0]
                    p.normal_(0.0, (4.0 if name.startswith("score") else 1.0) / fan_in**0.5, generator=g)
            batch = 1 if trial % 2 else 17
            feats = {m: (2 * torch.randn(batch, d, generator=g)).to(dtype) for m, d in mods.items()}
            want, _ = reference64(head, feats, None)
            errs.append(relative_error(FusedDAFHead.from_head(head)(feats).score, want))
        errs.sort()
        out[str(dtype)] = {"max": errs[-1], "p99": errs[int(0.99 * n) - 1], "p50": errs[n // 2]}
    return out


def _tf32(x: torch.Tensor, truncate: bool) -> torch.Tensor:
    """x (float64) rounded to tf32: fp32 with the low 13 of its 23 mantissa bits cleared (truncated, as
    fastdaf.reference_check.tf32_truncate does, or rounded half up at the 10th mantissa bit)."""
    if truncate:
        return tf32_truncate(x)
    return tf32_truncate((x.float().view(torch.int32) + (1 << 12)).view(torch.float32))


_EXACT_LINEAR = torch.nn.functional.linear


def _rounded_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, *, truncate: bool) -> torch.Tensor:
    """F.linear on tf32-rounded operands: what the fused kernel's fp32 dots compute."""
    return _EXACT_LINEAR(_tf32(x, truncate), _tf32(w, truncate), b)


def tf32_emulation(n: int = 120) -> dict[str, float]:
    import torch.nn.functional as F

    from fastdaf.reference_check import random_head

    g = torch.Generator().manual_seed(7)
    shapes = [
        ({"text": 768, "audio": 74}, dict(projection_size=256, attention_size=64, hidden_size=128, n_outputs=7)),
        (
            {"text": 20, "audio": 74, "video": 35},
            dict(projection_size=64, attention_size=32, hidden_size=16, n_outputs=7),
        ),
    ]
    worst = {}
    for truncate in (False, True):
        errs = []
        for trial in range(n):
            mods, opts = shapes[trial % 2]
            head = random_head(DAFConfig(mods, **opts), generator=g, weight_std=0.4).double()
            feats = {m: 2 * torch.randn(9, d, generator=g, dtype=torch.float64) for m, d in mods.items()}
            want, _ = reference64(head, feats, None)
            F.linear = functools.partial(_rounded_linear, truncate=truncate)
            try:
                with torch.no_grad():
                    got = head(feats).score
            finally:
                F.linear = _EXACT_LINEAR
            errs.append(relative_error(got, want))
        worst["truncate" if truncate else "round_to_nearest"] = max(errs)
    return worst


def report_rows(report: dict, acoustic_s: list[float]) -> list[BenchRow]:
    """The report as benchmark rows: the acoustic speed timed, every error check with null times and its errors
    in extra."""
    cpu = torch.device("cpu")

    def errors(what: str, values: dict, **options) -> BenchRow:
        return bench_row(BENCHMARK, what, device=cpu, extra={"errors": values, "unit": "relative error"}, **options)

    rows = [
        errors(
            "pitch: worst relative error of the median F0, 1 s tones 80-450 Hz", report["pitch_worst_relative_error"]
        ),
        bench_row(
            BENCHMARK,
            "acoustic_features, 16 random 10 s clips",
            device=cpu,
            backend="eager",
            shape={"batch": 16, "audio_seconds": 10},
            dtype="fp32",
            samples_ms=[t * 1e3 for t in acoustic_s],
            throughput=16 / statistics.median(acoustic_s),
            throughput_unit="clips/s",
        ),
    ]
    for db in (40, 60):
        rows.append(
            errors(
                f"acoustic features after a resampling round trip, mel floor {db} dB (worst, six ARCTIC clips)",
                report[f"round_trip_worst_{db}dB"],
                shape={"rates_hz": [8000, 22050, 44100, 48000]},
            )
        )
    for dtype, values in report["fused_head_norm_error"].items():
        rows.append(
            errors(
                "fused head vs float64 reference, norm-wise error (100 random heads, Triton interpreter)",
                values,
                backend="fused",
                dtype=dtype,  # "torch.float16": bench_row names it fp16
            )
        )
    rows.append(
        errors(
            "reference head with tf32-rounded matrix products vs float64, worst norm-wise error (emulated, 120 heads)",
            report["tf32_emulated_worst_norm_error"],
            backend="reference",
            dtype="fp32-tf32",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_results_options(parser)
    args = parser.parse_args(argv)
    pitch = pitch_errors()
    acoustic_s = acoustic_times()
    report = {
        "pitch_worst_relative_error": pitch,
        "acoustic_16x10s_median_s": statistics.median(acoustic_s),
        "round_trip_worst_40dB": round_trip_errors(40.0),
        "round_trip_worst_60dB": round_trip_errors(60.0),
        "fused_head_norm_error": fused_precision(),
        "tf32_emulated_worst_norm_error": tf32_emulation(),
    }
    print(json.dumps(report, indent=2))
    write_results(report_rows(report, acoustic_s), args, prog="accuracy_checks")


if __name__ == "__main__":
    main()
