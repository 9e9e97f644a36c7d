"""fastdaf.bench_rows: one row schema, one results file (the chart: fastdaf.bench_charts); fastdaf-bench and
every timing script in benchmarks/ write their rows through it (each script that runs on a CPU in seconds is
run here, small)."""

import dataclasses
import datetime
import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from builders import REPO, SHARED_DATA

from fastdaf import DAFConfig, bench, bench_head, bench_parser, bench_rows
from fastdaf.bench_rows import BenchRow, append_rows, bench_row, percentiles, read_rows
from fastdaf.choices import ENCODER_BACKENDS, HEADS
from fastdaf.errors import InputError

BENCHMARKS = REPO / "benchmarks"
SPEECH = SHARED_DATA / "speech"
NUMBER = (int, float, type(None))
TEXT = (str, type(None))
SCHEMA = {  # the schema, field by field, in order
    "benchmark": (str,),
    "what": (str,),
    "backend": TEXT,
    "shape": (dict,),
    "dtype": TEXT,
    "p50_ms": NUMBER,
    "p90_ms": NUMBER,
    "p99_ms": NUMBER,
    "throughput": NUMBER,
    "throughput_unit": TEXT,
    "device": (str,),
    "versions": (dict,),
    "commit": TEXT,
    "date": (str,),
    "extra": (dict,),
}
HEAD_ARGS = ["--device", "cpu", "--modalities", "text=32,audio=7", "--projection-size", "16", "--warmup", "1"]


def check_row(data: dict) -> None:
    """Every field present and of its type, nothing else; versions, date and percentiles well formed."""
    assert list(data) == list(SCHEMA), data
    for name, types in SCHEMA.items():
        assert isinstance(data[name], types) and not isinstance(data[name], bool), (name, data[name])
    assert set(data["versions"]) == {"torch", "triton", "python", "fastdaf"}
    assert data["versions"]["torch"] == torch.__version__
    assert datetime.datetime.fromisoformat(data["date"]).utcoffset() == datetime.timedelta(0)
    assert data["commit"] is None or len(data["commit"].removesuffix("-dirty")) == 40
    timed = [data[k] for k in ("p50_ms", "p90_ms", "p99_ms")]
    assert all(v is None for v in timed) or 0 < timed[0] <= timed[1] <= timed[2], timed
    assert (data["throughput"] is None) == (data["throughput_unit"] is None)


def file_rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        check_row(row)
    return rows


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_script_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schema_fields_and_types():
    assert [f.name for f in dataclasses.fields(BenchRow)] == list(SCHEMA)
    assert bench_rows.FIELDS == tuple(SCHEMA) and set(bench_rows.FIELD_TYPES) == set(SCHEMA)
    row = bench_row(
        "test",
        "a call",
        device=torch.device("cpu"),
        backend="reference",
        shape={"batch": 4},
        dtype=torch.float16,
        samples_ms=[2.0, 1.0, 3.0],
        throughput=4 / 2e-3,
        throughput_unit="rows/s",
    )
    data = row.to_dict()
    check_row(data)
    assert data["dtype"] == "fp16" and data["device"].startswith("CPU") and data["extra"]["samples"] == 3
    untimed = bench_row("test", "an error", device="somewhere", extra={"errors": {"max": 1e-3}}).to_dict()
    check_row(untimed)
    assert untimed["p50_ms"] is None and untimed["throughput_unit"] is None


def test_a_row_from_known_timings_has_their_percentiles():
    samples = [float(x) for x in range(1, 101)]
    random.Random(0).shuffle(samples)
    assert percentiles(samples) == {"p50": 50.5, "p90": 91.0, "p99": 100.0, "mean": 50.5}
    assert percentiles([5.0, 1.0, 3.0, 2.0, 4.0]) == {"p50": 3.0, "p90": 5.0, "p99": 5.0, "mean": 3.0}
    row = bench_row("test", "x", device="cpu", samples_ms=samples)
    assert (row.p50_ms, row.p90_ms, row.p99_ms, row.extra["mean_ms"]) == (50.5, 91.0, 100.0, 50.5)
    # fastdaf-bench's timer takes its percentiles from the same function
    t = bench.time_calls(lambda: None, torch.device("cpu"), warmup=0, iters=7)
    assert set(t) == {"p50_us", "p90_us", "p99_us", "mean_us"} and t["p50_us"] <= t["p90_us"] <= t["p99_us"]
    with pytest.raises(InputError, match="no samples"):
        percentiles([])


def test_append_then_read_back(tmp_path):
    path = tmp_path / "deep" / "results.jsonl"
    first = [bench_row("a", "x", device="cpu", p50_ms=1.0, p90_ms=2.0, p99_ms=3.0), bench_row("a", "y", device="cpu")]
    assert append_rows(first, path) == path
    append_rows([bench_row("b", "z", device="cpu", shape={"batch": 2}, extra={"k": [1, 2]}).to_dict()], path)
    back = read_rows(path)
    assert back == [*first, BenchRow.from_dict(json.loads(path.read_text().splitlines()[2]))]
    assert back[2].shape == {"batch": 2} and back[2].extra["k"] == [1, 2]
    assert set(back[2].extra) == {"k", "machine"}  # the load and CPU count beside every figure
    file_rows(path)

    good = first[0].to_dict()
    with pytest.raises(InputError, match=r"missing \['p50_ms'\]"):
        BenchRow.from_dict({k: v for k, v in good.items() if k != "p50_ms"})
    with pytest.raises(InputError, match="field 'p50_ms' must be"):
        BenchRow.from_dict({**good, "p50_ms": "fast"})
    with pytest.raises(InputError, match=r"unknown \['speed'\]"):
        BenchRow.from_dict({**good, "speed": 1})
    path.write_text(path.read_text() + "not json\n")
    with pytest.raises(InputError, match=r"results.jsonl:4: not a JSON object"):
        read_rows(path)


def test_plot_command_writes_a_png(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    rows = [
        bench_row("fastdaf-bench head", "DAF head", device="cpu", backend=b, shape={"batch": n}, p50_ms=p)
        for b, n, p in (("reference", 1, 0.3), ("reference-compile", 1, 0.1), ("reference", 64, 1.2))
    ]
    rows += [
        bench_row("fastdaf-bench e2e", "e2e total", device="GPU", backend="eager", shape={"batch": 1}, p50_ms=50.0),
        bench_row("benchmarks/extract_speed.py", "extract", device="cpu", throughput=300.0, throughput_unit="u/s"),
    ]
    append_rows(rows, path)
    png = tmp_path / "plots" / "results.png"
    assert bench.main(["plot", "--results", str(path), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in capsys.readouterr().out
    empty = tmp_path / "empty.jsonl"
    append_rows([rows[-1]], empty)  # a throughput-only row: nothing to draw
    assert bench.main(["plot", "--results", str(empty), "--out", str(tmp_path / "no.png")]) == 2
    assert "no timed rows" in capsys.readouterr().err


def test_results_and_no_results_are_honoured(tmp_path, monkeypatch, capsys):
    chosen, env_file = tmp_path / "chosen.jsonl", tmp_path / "env.jsonl"
    monkeypatch.setenv("FASTDAF_BENCH_RESULTS", str(env_file))
    argv = ["head", *HEAD_ARGS, "--batch-sizes", "1", "4", "--backends", "reference", "--iters", "3"]
    assert bench.main([*argv, "--results", str(chosen)]) == 0
    rows = file_rows(chosen)
    assert [(r["benchmark"], r["what"], r["backend"], r["shape"]["batch"]) for r in rows] == [
        ("fastdaf-bench head", "DAF head", "reference", 1),
        ("fastdaf-bench head", "DAF head", "reference", 4),
    ]
    assert rows[0]["shape"]["modalities"] == {"text": 32, "audio": 7} and rows[0]["dtype"] == "fp32"
    assert rows[1]["throughput"] == pytest.approx(4 / (rows[1]["p50_ms"] * 1e-3)) and rows[1]["throughput_unit"]
    assert f"2 benchmark row(s) appended to {chosen}" in capsys.readouterr().err
    assert not env_file.exists()

    assert bench.main([*argv, "--no-results"]) == 0
    assert not env_file.exists() and len(file_rows(chosen)) == 2
    assert "appended" not in capsys.readouterr().err
    assert bench.main(argv) == 0  # the default: $FASTDAF_BENCH_RESULTS
    assert len(file_rows(env_file)) == 2

    monkeypatch.setenv("FASTDAF_BENCH_RESULTS", "none")
    assert bench_rows.default_results() is None
    monkeypatch.delenv("FASTDAF_BENCH_RESULTS")
    assert bench_rows.default_results() == Path("benchmarks") / "results.jsonl" == bench_rows.DEFAULT_RESULTS


def test_vocabulary_and_the_former_names_refused(capsys):
    assert all(b.split("-")[0] in HEADS for b in bench_head.BACKENDS) and "reference" in bench_head.BACKENDS
    assert set(bench_parser.E2E_BACKENDS) == set(ENCODER_BACKENDS) - {"auto"}
    parser = bench_parser.build_parser()
    e2e = parser.parse_args(["e2e"])
    assert (e2e.head, e2e.dtype, e2e.device) == ("auto", "auto", "auto")
    new = parser.parse_args(["head", "--backends", "reference", "reference-cudagraph", "reference-compile", "fused"])
    assert new.backends == ["reference", "reference-cudagraph", "reference-compile", "fused"]
    # the names 0.1 used (eager, cudagraph, compile; e2e --head fused-cudagraph) were removed after 0.1
    for former in (["e2e", "--head", "eager"], ["e2e", "--head", "fused-cudagraph"], ["head", "--backends", "compile"]):
        with pytest.raises(SystemExit) as stop:
            parser.parse_args(former)
        assert stop.value.code == 2 and f"invalid choice: '{former[-1]}'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["head", "--backends", "fast"])
    cpu = torch.device("cpu")
    cfg = DAFConfig({"text": 384, "audio": 74})
    assert [bench.e2e_head_backend("auto", b, cpu, cfg) for b in ("eager", "compile")] == [
        "reference",
        "reference-compile",
    ]
    cuda = torch.device("cuda")
    assert [bench.e2e_head_backend("auto", b, cuda, cfg) for b in ("eager", "cudagraph", "tensorrt")] == [
        "fused",
        "fused-cudagraph",
        "fused-cudagraph",
    ]
    assert bench.e2e_head_backend("reference", "cudagraph", cuda, cfg) == "reference-cudagraph"
    # a head the fused kernel does not support falls back as the predictor does (fastdaf.fused.unsupported_reason)
    wide = DAFConfig({"text": 384, "audio": 74}, projection_size=1024)
    assert bench.e2e_head_backend("auto", "cudagraph", cuda, wide) == "reference-cudagraph"


def test_e2e_writes_a_row_per_stage(tiny_models, tmp_path):
    path = tmp_path / "results.jsonl"
    argv = ["e2e", "--device", "cpu", "--backends", "eager", "--batch-sizes", "2", "--tokens", "8"]
    argv += ["--audio-seconds", "0.5", "--text-model", tiny_models["bert"], "--warmup", "1", "--iters", "2"]
    assert bench.main([*argv, "--results", str(path)]) == 0
    rows = file_rows(path)
    assert [r["what"] for r in rows] == ["e2e text encoder", "e2e audio encoder", "e2e head", "e2e total"]
    for r in rows:
        assert (r["benchmark"], r["backend"], r["dtype"]) == ("fastdaf-bench e2e", "eager", "fp32")
        assert r["shape"] == {"batch": 2, "tokens": 8, "audio_seconds": 0.5}
        assert r["extra"]["head"] == "reference" and r["throughput_unit"] == "utterances/s"


def test_serve_writes_one_row_from_the_good_requests(monkeypatch, tmp_path, capsys):
    records = [
        {"id": 0, "kind": "good", "ok": True, "latency_ms": 30.0},
        {"id": 1, "kind": "bad", "ok": False, "latency_ms": 1.0},
        {"id": 2, "kind": "good", "ok": True, "latency_ms": 10.0},
        {"id": 3, "kind": "good", "ok": True, "latency_ms": 20.0},
    ]
    summary = dict(
        url="127.0.0.1:1",
        protocol="grpc",
        mix="mixed",
        mark_absent=True,
        requests=4,
        concurrency=2,
        succeeded=3,
        failed=1,
        bad_requests_sent=1,
        seconds=0.1,
        requests_per_s=40.0,
        latency_ms_good={"p50": 20.0, "p90": 28.0, "p99": 29.8},
    )
    monkeypatch.setattr(bench, "run_load", lambda *a, **k: (summary, records))
    path = tmp_path / "results.jsonl"
    assert bench.main(["serve", "--protocol", "grpc", "--requests", "4", "--results", str(path)]) == 0
    (row,) = file_rows(path)
    assert (row["what"], row["backend"], row["throughput"]) == (
        "served request (mixed, marked absent)",
        "served, grpc",
        40,
    )
    assert (row["p50_ms"], row["p90_ms"], row["p99_ms"]) == (20.0, 30.0, 30.0)  # percentiles of 10, 20, 30
    assert row["shape"] == {"concurrency": 2, "requests": 4} and row["extra"]["failed"] == 1


def test_gpu_check_writes_rows_beside_its_report(tmp_path, monkeypatch):
    gpu_check = load_script("gpu_check")
    cases = gpu_check.validation_cases(smoke=True)[:1]
    monkeypatch.setattr(gpu_check, "validation_cases", lambda smoke: cases)
    out = tmp_path / "out"
    assert gpu_check.main(["--smoke", "--iters", "3", "--out", str(out)]) == 0
    report = json.loads((out / "gpu_check.json").read_text())
    assert all(r["eager_p50_us"] > 0 for r in report["timing"])  # gpu_check.json keeps its keys
    rows = file_rows(out / "results.jsonl")
    head = [r for r in rows if r["what"] == "DAF head"]
    assert [(r["backend"], r["shape"]["batch"]) for r in head] == [("reference", 1), ("reference", 3)]
    assert head[0]["p50_ms"] == pytest.approx(report["timing"][0]["eager_p50_us"] / 1e3)
    e2e = [r for r in rows if r["what"].startswith("e2e")]
    assert len(e2e) == 4 and {r["extra"]["plan"] for r in e2e} == {"default-all-eager"}
    assert {r["benchmark"] for r in rows} == {"benchmarks/gpu_check.py"}

    elsewhere, none = tmp_path / "elsewhere.jsonl", tmp_path / "none"
    argv = ["--smoke", "--skip-e2e", "--iters", "2"]
    assert gpu_check.main([*argv, "--out", str(none), "--no-results"]) == 0
    assert (none / "gpu_check.json").exists() and not (none / "results.jsonl").exists()
    assert gpu_check.main([*argv, "--out", str(none), "--results", str(elsewhere)]) == 0
    assert len(file_rows(elsewhere)) == 2 and not (none / "results.jsonl").exists()


@pytest.mark.skipif(not SPEECH.is_dir(), reason=f"shared speech clips not found at {SPEECH}")
def test_extract_speed_writes_rows(tmp_path):
    path = tmp_path / "results.jsonl"
    extract_speed = load_script("extract_speed")
    argv = ["--repeat", "1", "--batch-size", "8", "--device", "cpu", "--results", str(path)]
    assert extract_speed.main(argv) == 0
    rows = file_rows(path)
    assert [r["what"] for r in rows] == [f"fastdaf extract ({m})" for m in ("text", "audio", "text+audio")]
    assert all(r["throughput"] > 0 and r["p50_ms"] is None and r["shape"]["utterances"] == 6 for r in rows)


@pytest.mark.skipif(not SPEECH.is_dir(), reason=f"shared speech clips not found at {SPEECH}")
def test_predict_latency_writes_rows(tmp_path):
    path = tmp_path / "results.jsonl"
    predict_latency = load_script("predict_latency")
    argv = ["--runs", "1", "--iters", "2", "--batch-size", "2", "--batch-runs", "1", "--results", str(path)]
    assert predict_latency.main(argv) == 0
    rows = file_rows(path)
    assert [r["shape"]["batch"] for r in rows] == [1, 1, 2] and all(r["p50_ms"] > 0 for r in rows)
    assert rows[0]["shape"]["audio_seconds"] == pytest.approx(3.9, abs=0.1) and rows[0]["extra"]["head"] == "reference"


def test_host_overhead_writes_rows(tmp_path):
    path = tmp_path / "results.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the kernel is compiled, not interpreted
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "host_overhead.py"),
            "--rounds",
            "2",
            "--calls",
            "20",
            "--results",
            str(path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "direct" in json.loads(proc.stdout)
    rows = file_rows(path)
    assert [r["backend"] for r in rows] == ["triton_dispatch"] * 3 + ["direct"] * 3
    assert all(r["extra"]["rounds"] == 2 and r["extra"]["best_us"] > 0 for r in rows)


def test_rows_of_the_scripts_too_slow_to_run_here():
    """accuracy_checks.py (minutes) and serve_throughput.py (a server) build their rows by these functions."""
    accuracy = load_script("accuracy_checks")
    report = {
        "pitch_worst_relative_error": {"sine": 1e-5, "harmonic": 2e-4},
        "round_trip_worst_40dB": {"8000": 0.04, "22050": 0.06},
        "round_trip_worst_60dB": {"8000": 0.2, "22050": 0.25},
        "fused_head_norm_error": {"torch.float16": {"max": 2e-3, "p99": 1e-3, "p50": 5e-4}, "torch.bfloat16": {}},
        "tf32_emulated_worst_norm_error": {"round_to_nearest": 0.019, "truncate": 0.0097},
    }
    rows = [r.to_dict() for r in accuracy.report_rows(report, [0.5, 0.4, 0.6])]
    for r in rows:
        check_row(r)
    timed = [r for r in rows if r["p50_ms"] is not None]
    assert len(timed) == 1 and timed[0]["p50_ms"] == 500.0 and timed[0]["throughput"] == 32.0
    assert [r["dtype"] for r in rows if r["backend"] == "fused"] == ["fp16", "bf16"]
    assert all("errors" in r["extra"] for r in rows if r["p50_ms"] is None) and len(rows) == 7

    serve = load_script("serve_throughput")
    row = serve.in_process_row("mixed", 64, 0.5, [100.0, 200.0], ["--max-batch", "8"]).to_dict()
    check_row(row)
    assert (row["p50_ms"], row["throughput"], row["backend"]) == (150.0, 128.0, "in process")


def test_every_benchmark_script_writes_rows_or_says_why_not():
    for script in sorted(BENCHMARKS.glob("*.py")):
        text = script.read_text()
        assert "fastdaf.bench_rows" in text and (
            "write_results" in text or "Results(" in text or "no benchmark rows" in text
        ), script.name


def test_load_and_cpu_count_are_recorded_and_unreliable_runs_are_flagged(tmp_path, monkeypatch, capsys):
    argv = ["head", *HEAD_ARGS, "--batch-sizes", "2", "--backends", "reference", "--iters", "5", "--json"]
    out = tmp_path / "rows.jsonl"
    assert bench.main([*argv, "--results", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["machine"]["before"]["cpu_count"] == os.cpu_count()
    assert isinstance(report["machine"]["after"]["load_1m"], float) and isinstance(report["warnings"], list)
    assert read_rows(out)[0].extra["machine"]["cpu_count"] == os.cpu_count()  # beside every figure
    # a busy machine is named, on stderr and in the JSON
    busy = {"cpu_count": 2, "load_1m": 5.5}
    monkeypatch.setattr(bench, "machine_load", lambda: busy)
    assert bench.main([*argv, "--no-results"]) == 0
    captured = capsys.readouterr()
    assert "fastdaf-bench: warning: the machine was busy before the run (load 5.5 on 2 CPUs)" in captured.err
    assert any("load 5.5" in w for w in json.loads(captured.out)["warnings"])


def test_reliability_warnings_name_spread_and_load():
    def row(p50, p99):
        return bench_row("b", "w", device="cpu", backend="x", p50_ms=p50, p90_ms=p50, p99_ms=p99)

    quiet = {"cpu_count": 4, "load_1m": 1.0}
    assert bench_rows.reliability_warnings([row(1.0, 2.0), row(2.0, 2.5)], quiet, quiet) == []
    spread = bench_rows.reliability_warnings([row(1.0, 2.0), row(1.0, 7.5)], quiet, quiet)
    assert len(spread) == 1 and "1 figure(s) have p99/p50 above 3 (worst 7.5" in spread[0]
    loaded = bench_rows.reliability_warnings([row(1.0, 1.0)], quiet, {"cpu_count": 4, "load_1m": 4.5})
    assert len(loaded) == 1 and "busy after the run (load 4.5 on 4 CPUs)" in loaded[0]
