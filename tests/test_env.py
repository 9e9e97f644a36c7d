"""`fastdaf env`: what a bug report needs, as text and as JSON, and each probe's answer when something is off."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import re
from pathlib import Path

import pytest

from fastdaf import environment
from fastdaf.cli import main

REPO_LINES = ("fastdaf", "python", "torch", "triton", "transformers", "torchaudio", "numpy", "cuda", "fused head")
MORE_LINES = ("direct launch", "C compiler", "Python headers", "extras")


def run_env(capsys, *args: str) -> str:
    assert main(["env", *args]) == 0
    return capsys.readouterr().out


def rows(text: str) -> dict[str, str]:
    """The text report as {name: value} (columns are separated by two or more spaces)."""
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in text.splitlines())


def test_env_json_reports_the_installed_versions(capsys):
    info = json.loads(run_env(capsys, "--json"))
    for name in ("torch", "triton", "transformers", "numpy"):
        assert info["packages"][name] == {
            "version": importlib.metadata.version(name),
            "loads": True,
            "error": None,
        }, name
    assert set(info) == {"fastdaf", "python", "packages", "cuda", "fused_head", "build_tools", "extras"}
    assert info["fastdaf"]["checkout"] and info["fastdaf"]["kernels"] == [str(Path(__file__).parents[1] / "kernels")]
    assert info["cuda"]["available"] is False and info["cuda"]["gpus"] == []  # the CPU machines of the tests
    assert set(info["fused_head"]) == {"can_run", "why_not", "direct_launch", "direct_launch_why_not"}


def test_env_text_has_every_line_a_bug_report_needs(capsys):
    report = rows(run_env(capsys))
    for key in REPO_LINES + MORE_LINES:
        assert key in report, (key, report)


def test_absent_and_broken_packages_are_named(capsys, monkeypatch):
    real_version, real_import = environment._distribution_version, importlib.import_module
    monkeypatch.setattr(environment, "_distribution_version", lambda n: None if n == "torchaudio" else real_version(n))
    report = rows(run_env(capsys))
    assert report["torchaudio"] == "absent"
    if "test" not in environment.extras_status()["absent"]:  # this lane has some of test's packages: incomplete
        assert report["extra test"].startswith("incomplete, needs ")
        assert "torchaudio!=2.11.1,>=2.11" in report["extra test"].removeprefix("incomplete, needs ").split("; ")
    assert "audio-reference" in report["not installed"].split(", ")

    monkeypatch.setattr(
        environment, "_distribution_version", lambda n: "2.11.1" if n == "torchaudio" else real_version(n)
    )

    def failing_import(name, *args):
        if name == "torchaudio":
            raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace")
        return real_import(name, *args)

    monkeypatch.setattr(environment.importlib, "import_module", failing_import)
    report = rows(run_env(capsys))
    assert report["torchaudio"].startswith("2.11.1 (does not load: OSError: libtorchaudio.so: undefined symbol")


def test_fused_head_answer_says_why(monkeypatch):
    loads = {"loads": True, "error": None}
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    no_gpu = {"available": False, "torch_built_for": "13.0", "gpus": []}
    status = environment.fused_head_status(no_gpu, loads)
    assert status["can_run"] is False and "no CUDA device" in status["why_not"] and "CUDA 13.0" in status["why_not"]
    cpu_build = environment.fused_head_status({**no_gpu, "torch_built_for": None}, loads)
    assert "CPU-only torch build" in cpu_build["why_not"]

    def gpu(capability):
        return {"available": True, "torch_built_for": "13.0", "gpus": [{"name": "A GPU", "capability": capability}]}

    assert environment.fused_head_status(gpu("9.0"), loads)["can_run"] is True
    old = environment.fused_head_status(gpu("7.5"), loads)
    assert old["can_run"] is False and "sm_75" in old["why_not"]
    broken = environment.fused_head_status(gpu("9.0"), {"loads": False, "error": "ImportError: x"})
    assert broken["can_run"] is False and "triton does not load (ImportError: x)" in broken["why_not"]
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "interpreter" in environment.fused_head_status(no_gpu, loads)["why_not"]


def test_direct_launch_is_reported_off_on_another_triton(monkeypatch):
    import triton

    monkeypatch.setattr(triton, "__version__", "3.99.0")
    status = environment.fused_head_status({"available": False, "torch_built_for": None, "gpus": []}, {"loads": True})
    assert status["direct_launch"] is False and "Triton 3.99.0" in status["direct_launch_why_not"]


def test_missing_compiler_and_headers_are_named(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcc, no clang
    monkeypatch.setattr(environment.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    report = rows(run_env(capsys))
    assert report["C compiler"] == "none found ($CC, gcc, clang): Triton cannot build its launcher"
    assert report["Python headers"] == f"Python.h not found in {tmp_path}"
    monkeypatch.setenv("CC", "/opt/my-cc")
    assert environment.compiler_status()["c_compiler"] == "/opt/my-cc"


def test_extras_are_judged_by_what_is_installed(monkeypatch):
    if importlib.util.find_spec("h5py") is None:
        pytest.skip("the extras of fastdaf[test] are not installed in this lane")
    installed = environment.extras_status()
    assert {"plot", "data", "serve", "ray", "audio-reference", "test"} <= set(installed["installed"])
    real_version = environment._distribution_version
    monkeypatch.setattr(environment, "_distribution_version", lambda n: None if n == "h5py" else real_version(n))
    status = environment.extras_status()
    assert "data" not in status["installed"] and "test" not in status["installed"]
    assert status["missing"]["data"] == ["h5py>=3.8"] and status["missing"]["test"] == ["h5py>=3.8"]
    assert status["absent"] == ["data"]  # test still has the rest of its packages
    monkeypatch.setattr(environment, "_distribution_version", lambda n: None if n != "torch" else real_version(n))
    status = environment.extras_status()
    assert status["installed"] == [] and "test" in status["absent"] and "plot" in status["absent"]
