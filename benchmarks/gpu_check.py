"""ONE script for a lent GPU: validate the fused DAF head against the reference, then time it.

    PYTHONPATH=. python3 benchmarks/gpu_check.py            # on a CUDA machine; writes $OUT/gpu_check.json
    TRITON_INTERPRET=1 python benchmarks/gpu_check.py --smoke   # CPU dry run of the same code paths

1. Ceilings, measured in this run: device-to-device copy bandwidth (bytes read + written) and the
   fp16 and tf32 matrix-product rates of an 8192^3 product on random data.
2. Validation at many shapes (ragged dims, 1-4 modalities, projection 64-512, 1-7 outputs, masks,
   static/mean fusion, fp32 tf32/ieee, fp16, bf16) against a float64 reference on the GPU, norm-wise
   relative error, outputs poisoned with NaN before each launch, pinned tiles from the autotuning
   space; the autotuned path is validated again at every timed shape.
4. End to end (`--e2e`, on by default on CUDA): the encoder backends of fastdaf.backends, first
   checked to give eager's vectors (CUDA graphs over padded buckets), then timed with
   fastdaf.bench.bench_e2e: default encoders (MiniLM-L6 layer mix + built-in acoustic features,
   64 tokens, 10 s of audio) at batch 1 and 64, and HuBERT-base + BERT-base at batch 1.
3. Timing, side by side per shape: reference eager, reference under a CUDA graph, reference under
   torch.compile, fused, fused under a CUDA graph, plus an empty Triton launch; wall-clock p50/p90
   after warm-up; ratios; for the largest batch the fraction of the roofline (bytes / copy bandwidth
   vs FLOPs / matmul rate, whichever is larger).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import triton

from fastdaf import DAFConfig
from fastdaf.bench import environment, head_callables, random_features, random_head, time_calls
from fastdaf.fused import FusedDAFHead

TOLERANCE = {("fp32", "ieee"): 1e-5, ("fp32", "tf32"): 3e-3, ("fp16", None): 1e-2, ("bf16", None): 2e-2}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@triton.jit
def _empty_kernel(x_ptr):
    pass


def event_median_ms(fn, *, warmup: int = 3, reps: int = 10) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure_ceilings(device: torch.device) -> dict[str, float]:
    buffers = [torch.randn(256 * 1024 * 1024, device=device)]  # 1 GiB of fp32
    buffers.append(torch.empty_like(buffers[0]))
    copy_ms = event_median_ms(lambda: buffers[1].copy_(buffers[0]))
    buffers.clear()
    n = 8192
    a16, b16 = torch.randn(n, n, device=device, dtype=torch.float16), torch.randn(n, n, device=device, dtype=torch.float16)
    fp16_ms = event_median_ms(lambda: a16 @ b16)
    a32, b32 = a16.float(), b16.float()
    torch.backends.cuda.matmul.allow_tf32 = True
    tf32_ms = event_median_ms(lambda: a32 @ b32)
    torch.backends.cuda.matmul.allow_tf32 = False
    return {
        "copy_bytes_per_s": 2 * 1024**3 / (copy_ms * 1e-3),
        "fp16_flops_per_s": 2 * n**3 / (fp16_ms * 1e-3),
        "tf32_flops_per_s": 2 * n**3 / (tf32_ms * 1e-3),
    }


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want).norm() / want.norm().clamp_min(1e-12)).item()


def reference64(head, feats, present):
    ref = type(head)(head.config).to(present.device).double().eval()
    ref.load_state_dict(head.state_dict())
    with torch.no_grad():
        out = ref({m: x.double() for m, x in feats.items()}, present)
    return out.score, out.weights


def check_fused(fused, head, feats, present) -> tuple[float, float, bool]:
    """Errors of the fused head on poisoned outputs; the flag says whether every element was written."""
    cfg = head.config
    B = present.shape[0]
    score = torch.full((B, cfg.n_outputs), float("nan"), device=present.device)
    weights = torch.full((B, cfg.n_modalities), float("nan"), device=present.device)
    out = fused(feats, present, out=(score, weights))
    written = bool(torch.isfinite(score).all() and torch.isfinite(weights).all())
    ref_score, ref_weights = reference64(head, feats, present)
    return relative_error(out.score, ref_score), relative_error(out.weights, ref_weights), written


def validation_cases(smoke: bool) -> list[dict]:
    if smoke:
        return [
            dict(mods={"text": 40, "audio": 7}, P=32, A=16, H=16, NO=1, fusion="dynamic", B=5, dtype="fp32", prec="ieee"),
            dict(mods={"text": 24, "audio": 9, "video": 35}, P=16, A=16, H=16, NO=3, fusion="static", B=17, dtype="fp16", prec=None),
        ]
    cases = []
    shapes = [
        ({"text": 768, "audio": 74}, 256, 64, 128, 1),
        ({"text": 768, "audio": 768}, 128, 64, 128, 7),
        ({"text": 768, "audio": 74, "video": 35}, 64, 32, 64, 1),
        ({"text": 384, "audio": 88, "video": 35, "extra": 17}, 512, 128, 256, 8),
        ({"audio": 74}, 256, 64, 128, 1),
        ({"text": 1024, "audio": 35}, 96, 48, 80, 2),
    ]
    i = 0
    for mods, P, A, H, NO in shapes:
        for B in (1, 7, 1000, 65536 if P <= 256 else 4096):
            for dtype, prec in (("fp32", "tf32"), ("fp32", "ieee"), ("fp16", None), ("bf16", None)):
                fusion = ("dynamic", "dynamic", "static", "mean")[i % 4]
                cases.append(dict(mods=mods, P=P, A=A, H=H, NO=NO, fusion=fusion, B=B, dtype=dtype, prec=prec))
                i += 1
    return cases


def pinned_tiles(P: int) -> list[dict]:
    tiles = [{"BLOCK_B": b, "BLOCK_K": k, "num_warps": w} for b in (16, 32, 64, 128) for k in (32, 64) for w in (4, 8)]
    return [t for t in tiles if t["BLOCK_B"] * max(16, triton.next_power_of_2(P)) <= 16384]


def run_validation(device: torch.device, smoke: bool) -> list[dict]:
    rows = []
    for n, case in enumerate(validation_cases(smoke)):
        cfg = DAFConfig(case["mods"], projection_size=case["P"], attention_size=case["A"], hidden_size=case["H"],
                        n_outputs=case["NO"], fusion=case["fusion"])
        head = random_head(cfg, device, seed=n)
        with torch.no_grad():
            for p in head.parameters():
                p.mul_(8.0)  # weights ~N(0, 0.4): non-trivial modality weights
        tiles = pinned_tiles(case["P"])
        tile = None if device.type == "cpu" else tiles[n % len(tiles)]
        fused = FusedDAFHead.from_head(head, precision=case["prec"] or "tf32", block_config=tile)
        feats, present = random_features(cfg, case["B"], DTYPES[case["dtype"]], device, seed=100 + n)
        present &= torch.rand(present.shape, device=device) < 0.7
        present[:, -1] |= ~present.any(dim=1)
        score_err, weight_err, written = check_fused(fused, head, feats, present)
        tol = TOLERANCE[(case["dtype"], case["prec"])]
        ok = written and score_err <= tol and weight_err <= tol
        rows.append({**case, "mods": dict(case["mods"]), "tile": tile, "score_err": score_err, "weight_err": weight_err,
                     "tolerance": tol, "all_written": written, "ok": ok})
    return rows


def head_cost(cfg: DAFConfig, batch: int, elt_bytes: int) -> tuple[float, float]:
    """FLOPs of the matrix products and the fewest bytes moved (inputs once, outputs once, weights once)."""
    P, A, H, NO, M = cfg.projection_size, cfg.attention_size, cfg.hidden_size, cfg.n_outputs, cfg.n_modalities
    K = sum(cfg.modalities.values())
    flops = 2.0 * batch * (K * P + M * (P * A + A) + P * H + H * NO)
    weights = (K * P + P * A + P * H + H * NO) * elt_bytes
    moved = batch * K * elt_bytes + batch * M + batch * (NO + M) * 4 + weights
    return flops, float(moved)


def empty_launch_us(device: torch.device, iters: int) -> float:
    x = torch.empty(1, device=device)
    return time_calls(lambda: _empty_kernel[(1,)](x), device, warmup=20, iters=iters)["p50_us"]


def run_timing(device: torch.device, ceilings: dict, smoke: bool, iters: int) -> list[dict]:
    configs = [{"text": 768, "audio": 74}, {"text": 768, "audio": 768}, {"text": 768, "audio": 74, "video": 35}]
    batches = (1, 64, 4096, 65536)
    dtypes = ("fp32", "fp16")
    backends = ("eager", "cudagraph", "compile", "fused", "fused-cudagraph")
    if smoke:
        configs, batches, dtypes, backends = configs[:1], (1, 3), ("fp32",), ("eager",)
    rows = []
    for mods in configs:
        cfg = DAFConfig(mods, projection_size=256, attention_size=64, hidden_size=128)
        head = random_head(cfg, device)
        for dtype in dtypes:
            for B in batches:
                feats, present = random_features(cfg, B, DTYPES[dtype], device)
                with torch.no_grad():
                    calls = head_callables(head, feats, present, backends)
                    if "fused" in calls:  # the autotuned path, validated at the timed shape
                        fused = FusedDAFHead.from_head(head)
                        score_err, weight_err, written = check_fused(fused, head, feats, present)
                        tol = TOLERANCE[(dtype, "tf32" if dtype == "fp32" else None)]
                        assert written and score_err <= tol and weight_err <= tol, (mods, dtype, B, score_err, weight_err)
                    timings = {name: time_calls(fn, device, warmup=20, iters=iters if B < 65536 else max(20, iters // 5))
                               for name, fn in calls.items()}
                row = {"modalities": mods, "dtype": dtype, "batch": B}
                for name, t in timings.items():
                    row[f"{name}_p50_us"] = t["p50_us"]
                    row[f"{name}_p90_us"] = t["p90_us"]
                if "fused_p50_us" in row:
                    row["fused_vs_eager"] = row["eager_p50_us"] / row["fused_p50_us"]
                    row["fused_graph_vs_ref_graph"] = row["cudagraph_p50_us"] / row["fused-cudagraph_p50_us"]
                    flops, moved = head_cost(cfg, B, 2 if dtype == "fp16" else 4)
                    rate = ceilings["fp16_flops_per_s"] if dtype == "fp16" else ceilings["tf32_flops_per_s"]
                    floor_s = max(moved / ceilings["copy_bytes_per_s"], flops / rate)
                    row.update(flops=flops, bytes=moved, roofline_us=floor_s * 1e6,
                               roofline_fraction=floor_s * 1e6 / row["fused-cudagraph_p50_us"],
                               achieved_bytes_per_s=moved / (row["fused-cudagraph_p50_us"] * 1e-6))
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def check_encoder_backends(device: torch.device) -> list[dict]:
    """CUDA-graph encoder cores against eager on random inputs (norm-wise relative error)."""
    from fastdaf.bench import audio_core, text_core

    rows = []
    for kind in ("text", "audio"):
        ref, _, vocab = text_core("minilm", device, torch.float16, "eager", 128) if kind == "text" else audio_core("acoustic", device, torch.float32, "eager", 10.0)
        graph = (text_core("minilm", device, torch.float16, "cudagraph", 128) if kind == "text" else audio_core("acoustic", device, torch.float32, "cudagraph", 10.0))[0]
        for batch, size in ((1, 37), (5, 64), (3, 100)):
            if kind == "text":
                inputs = {"input_ids": torch.randint(1000, 2000, (batch, size), device=device), "attention_mask": torch.ones(batch, size, dtype=torch.long, device=device)}
                inputs["attention_mask"][0, size // 2:] = 0
            else:
                n = size * 1600
                inputs = {"waveforms": torch.randn(batch, n, device=device) * 0.1, "lengths": torch.full((batch,), n, device=device)}
            with torch.inference_mode():
                want, got = ref(inputs), graph(inputs)
            err = relative_error(got.float(), want.double())
            rows.append({"encoder": kind, "batch": batch, "size": size, "error": err, "ok": err <= (1e-2 if kind == "text" else 1e-3)})
    return rows


def run_e2e(device: torch.device, iters: int) -> list[dict]:
    from fastdaf.bench import bench_e2e

    rows = bench_e2e(device, ["eager", "cudagraph", "tensorrt"], [1, 64], text_model="minilm", audio_model="acoustic",
                     tokens=64, seconds=10.0, iters=iters)
    rows += bench_e2e(device, ["eager", "cudagraph"], [1], text_model="bert-base", audio_model="hubert-base",
                      tokens=64, seconds=10.0, iters=iters)
    return rows


def summarise(rows: list[dict], empty_us: float | None) -> list[str]:
    lines = [f"{'modalities':>34} {'dtype':>5} {'B':>6} {'eager':>8} {'graph':>8} {'compile':>8} {'fused':>8} {'f-graph':>8} "
             f"{'f/eager':>7} {'fg/graph':>8} {'roof%':>6}"]
    for r in rows:
        get = lambda k: f"{r[k]:8.1f}" if k in r else f"{'-':>8}"  # noqa: E731
        ratio = lambda k, w: f"{r[k]:{w}.2f}" if k in r else f"{'-':>{w}}"  # noqa: E731
        roof = f"{100 * r['roofline_fraction']:6.1f}" if "roofline_fraction" in r else f"{'-':>6}"
        lines.append(f"{str(r['modalities']):>34} {r['dtype']:>5} {r['batch']:>6} {get('eager_p50_us')} {get('cudagraph_p50_us')} "
                     f"{get('compile_p50_us')} {get('fused_p50_us')} {get('fused-cudagraph_p50_us')} "
                     f"{ratio('fused_vs_eager', 7)} {ratio('fused_graph_vs_ref_graph', 8)} {roof}")
    if empty_us is not None:
        lines.append(f"empty Triton launch p50: {empty_us:.1f} us")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU dry run (needs TRITON_INTERPRET=1)")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true", help="skip the encoder backends' check and end-to-end timing")
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; run with --smoke (and TRITON_INTERPRET=1) for a CPU dry run", file=sys.stderr)
        return 2
    started = time.time()
    report: dict = {"environment": environment(device)}
    print("environment", json.dumps(report["environment"]), flush=True)
    if device.type == "cuda":
        report["ceilings"] = measure_ceilings(device)
        print("ceilings", json.dumps(report["ceilings"]), flush=True)
    report["validation"] = run_validation(device, args.smoke)
    bad = [r for r in report["validation"] if not r["ok"]]
    worst = max(report["validation"], key=lambda r: r["score_err"] / r["tolerance"])
    print(f"validation: {len(report['validation']) - len(bad)}/{len(report['validation'])} cases within tolerance; "
          f"worst score error {worst['score_err']:.2e} ({worst['dtype']}, tol {worst['tolerance']:.0e})", flush=True)
    for r in bad:
        print("FAILED", json.dumps(r), flush=True)
    empty_us = None
    if not args.skip_timing:
        if device.type == "cuda":
            empty_us = empty_launch_us(device, args.iters)
            report["empty_launch_p50_us"] = empty_us
        report["timing"] = run_timing(device, report.get("ceilings", {}), args.smoke, args.iters)
    if device.type == "cuda" and not args.skip_e2e:
        torch.backends.cudnn.benchmark = True  # measured faster for HuBERT's convolutions (issue notes)
        report["encoder_backends"] = check_encoder_backends(device)
        bad += [r for r in report["encoder_backends"] if not r["ok"]]
        print("encoder backends vs eager:", json.dumps(report["encoder_backends"]), flush=True)
        report["e2e"] = run_e2e(device, max(20, args.iters // 4))
        from fastdaf.bench import format_e2e

        print(format_e2e(report["e2e"]), flush=True)
    report["seconds"] = time.time() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print("\n".join(summarise(report.get("timing", []), empty_us)))
    print(f"gpu_check: {report['seconds']:.0f} s, report in {args.out / 'gpu_check.json'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
