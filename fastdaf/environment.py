"""What a bug report needs to know about this installation: `fastdaf env` (`--json` for machines).

Versions of fastdaf and of the packages it runs on (an absent one says so; torchaudio is optional and only the
tests' reference), the GPU and its driver when there is one, whether the fused Triton head can run here and why
not, whether a C compiler and Python's headers are present (Triton builds its launcher with them on the first
launch on a GPU), and which extras are installed. Nothing here may raise: each probe that fails reports why.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import torch

from .bench_rows import git_commit
from .kernels.daf_head import direct_launch_unsupported_reason, interpreting
from .version import __version__

PACKAGES = ("torch", "triton", "transformers", "torchaudio", "numpy", "safetensors", "soundfile", "kernels")
# the fused head is compiled and checked for these GPUs' architectures (tests/test_gpu_compile.py): sm_80, sm_90
MIN_FUSED_CAPABILITY = (8, 0)


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_status(name: str) -> dict[str, Any]:
    """{"version", "loads", "error"}: installed at all, and whether importing it works here (torchaudio 2.11.1
    installs beside torch 2.11.0 and then fails to load)."""
    version = _distribution_version(name)
    if version is None:
        return {"version": None, "loads": False, "error": "not installed"}
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - a report: any failure to import is what it must show
        return {"version": version, "loads": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"version": version, "loads": True, "error": None}


def fastdaf_status() -> dict[str, Any]:
    """Where this fastdaf comes from: a checkout (the tree's own kernels/) or an installed package."""
    package = Path(__file__).resolve().parent
    kernels = sys.modules.get("fastdaf.kernels")
    checkout = (package.parent / "pyproject.toml").is_file() and (package.parent / "kernels").is_dir()
    return {
        "version": __version__,
        "path": str(package),
        "kernels": list(getattr(kernels, "__path__", []) or []),
        "checkout": checkout,
        "commit": git_commit() if checkout else None,
    }


def _driver_version() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run(
                [smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
            )
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        raw = int(torch._C._cuda_getDriverVersion())  # the CUDA version the driver supports, e.g. 13000
        return f"supports CUDA {raw // 1000}.{raw % 1000 // 10}"
    except Exception:  # noqa: BLE001 - a private API: it may be missing on another torch or build
        return None


def cuda_status() -> dict[str, Any]:
    status: dict[str, Any] = {"torch_built_for": torch.version.cuda, "available": False, "driver": None, "gpus": []}
    try:
        status["available"] = torch.cuda.is_available()
        if status["available"]:
            status["driver"] = _driver_version()
            for index in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(index)
                status["gpus"].append(
                    {
                        "index": index,
                        "name": props.name,
                        "capability": f"{props.major}.{props.minor}",
                        "memory_gib": round(props.total_memory / 2**30, 1),
                    }
                )
    except Exception as exc:  # noqa: BLE001 - a report: a broken driver is what it must show
        status["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return status


def fused_head_status(cuda: dict[str, Any], triton: dict[str, Any]) -> dict[str, Any]:
    """Whether the fused Triton head can run here, why not, and how it is launched."""
    launch = direct_launch_unsupported_reason()
    status = {"can_run": False, "why_not": None, "direct_launch": launch is None, "direct_launch_why_not": launch}
    if not triton["loads"]:
        status["why_not"] = f"triton does not load ({triton['error']})"
    elif interpreting():
        status["can_run"] = True
        status["why_not"] = "TRITON_INTERPRET is set: CPU tensors run in Triton's interpreter (slow: tests only)"
    elif not cuda["available"]:
        built = cuda["torch_built_for"]
        status["why_not"] = (
            "no CUDA device visible to torch"
            + (f" (torch built for CUDA {built})" if built else " (a CPU-only torch build)")
            + ": the fused head runs on CUDA tensors; on CPU fastdaf uses the reference head"
        )
    else:
        gpu = cuda["gpus"][0]
        major, minor = (int(x) for x in gpu["capability"].split("."))
        if (major, minor) < MIN_FUSED_CAPABILITY:
            status["why_not"] = (
                f"{gpu['name']} is sm_{major}{minor}; the fused head is compiled and checked for sm_80 and newer"
            )
        else:
            status["can_run"] = True
    return status


def compiler_status() -> dict[str, Any]:
    """What Triton's launcher build would use: $CC, else gcc, else clang; Python.h from sysconfig."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")
    include = sysconfig.get_paths().get("include") or ""
    return {
        "c_compiler": compiler,
        "python_headers": include if (Path(include) / "Python.h").is_file() else None,
        "python_headers_looked_in": include,
    }


def _requirements() -> list[str] | None:
    """fastdaf's requirement strings: a checkout's own pyproject.toml (whatever else is installed), else the
    installed package's metadata."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if not pyproject.is_file():
        try:
            return list(importlib.metadata.distribution("fastdaf").requires or [])
        except importlib.metadata.PackageNotFoundError:
            return None
    try:
        import tomllib  # noqa: PLC0415 - Python 3.11+; on 3.10 a checkout's extras are not read

        project = tomllib.loads(pyproject.read_text())["project"]
    except (ImportError, OSError, KeyError, ValueError):
        return None
    lines = list(project.get("dependencies", []))
    for extra, reqs in project.get("optional-dependencies", {}).items():
        lines += [f"{r}; extra == {extra!r}" for r in reqs]
    return lines


def extras_status() -> dict[str, Any]:
    """Each extra of fastdaf and whether everything it asks for is installed (in a matching version)."""
    lines = _requirements()
    try:
        from packaging.requirements import Requirement  # noqa: PLC0415 - a dependency of transformers, not ours
    except ImportError:
        return {"installed": None, "why_unknown": "the packaging module is not installed"}
    if lines is None:
        return {"installed": None, "why_unknown": "fastdaf's requirements could not be read"}
    reqs = [Requirement(line) for line in lines]
    names = sorted({m for r in reqs if r.marker for m in _extras_named(str(r.marker))})

    def checked(extra: str, seen: frozenset = frozenset()) -> list[tuple[str, bool]]:
        """(requirement, satisfied) for everything the extra asks for, nested extras (fastdaf[plot]) expanded."""
        found = []
        for r in reqs:
            if not (r.marker and r.marker.evaluate({"extra": extra})):
                continue
            if r.name == "fastdaf":
                found += [c for e in sorted(r.extras) if e not in seen for c in checked(e, seen | {extra})]
                continue
            version = _distribution_version(r.name)
            found.append((f"{r.name}{r.specifier}", version is not None and r.specifier.contains(version, True)))
        return found

    status = {extra: checked(extra) for extra in names}
    return {
        "installed": [e for e in names if all(ok for _, ok in status[e])],
        "absent": [e for e in names if not any(ok for _, ok in status[e])],
        "missing": {
            e: [r for r, ok in found if not ok] for e, found in status.items() if not all(ok for _, ok in found)
        },
    }


def _extras_named(marker: str) -> list[str]:
    return [part.split("==")[1].strip().strip("'\"") for part in marker.split(" and ") if "extra ==" in part]


def report() -> dict[str, Any]:
    """Everything `fastdaf env` prints."""
    packages = {name: package_status(name) for name in PACKAGES}
    cuda = cuda_status()
    return {
        "fastdaf": fastdaf_status(),
        "python": {"version": platform.python_version(), "executable": sys.executable, "platform": platform.platform()},
        "packages": packages,
        "cuda": cuda,
        "fused_head": fused_head_status(cuda, packages["triton"]),
        "build_tools": compiler_status(),
        "extras": extras_status(),
    }


def format_report(info: dict[str, Any]) -> str:
    """The report as aligned lines, for a terminal or a bug report."""
    fd, py, cuda, fused, tools, extras = (
        info[k] for k in ("fastdaf", "python", "cuda", "fused_head", "build_tools", "extras")
    )
    origin = f"checkout {fd['commit'] or '(no git)'}" if fd["checkout"] else "installed"
    rows = [
        ("fastdaf", f"{fd['version']} ({origin}: {fd['path']}; kernels from {', '.join(fd['kernels']) or '-'})"),
        ("python", f"{py['version']} ({py['executable']}; {py['platform']})"),
    ]
    for name, pkg in info["packages"].items():
        if pkg["version"] is None:
            rows.append((name, "absent"))
        else:
            rows.append((name, pkg["version"] + ("" if pkg["loads"] else f" (does not load: {pkg['error']})")))
    built = f"torch built for CUDA {cuda['torch_built_for']}" if cuda["torch_built_for"] else "CPU-only torch build"
    rows.append(("cuda", f"{'available' if cuda['available'] else 'not available'} ({built})"))
    if cuda.get("error"):
        rows.append(("cuda error", cuda["error"]))
    if cuda["available"]:
        rows.append(("driver", cuda["driver"] or "unknown"))
    for gpu in cuda["gpus"]:
        rows.append((f"gpu {gpu['index']}", f"{gpu['name']}, sm {gpu['capability']}, {gpu['memory_gib']} GiB"))
    can = "yes" if fused["can_run"] else "no"
    rows.append(("fused head", can + (f": {fused['why_not']}" if fused["why_not"] else "")))
    direct = "on" if fused["direct_launch"] else f"off: {fused['direct_launch_why_not']}"
    rows.append(("direct launch", direct))
    rows.append(("C compiler", tools["c_compiler"] or "none found ($CC, gcc, clang): Triton cannot build its launcher"))
    headers = tools["python_headers"] or f"Python.h not found in {tools['python_headers_looked_in']}"
    rows.append(("Python headers", headers))
    if extras["installed"] is None:
        rows.append(("extras", f"unknown: {extras['why_unknown']}"))
    else:
        rows.append(("extras", ", ".join(extras["installed"]) or "none"))
        if extras["absent"]:
            rows.append(("not installed", ", ".join(extras["absent"])))
        for extra, gaps in extras["missing"].items():
            if extra not in extras["absent"]:
                rows.append((f"extra {extra}", "incomplete, needs " + "; ".join(gaps)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
