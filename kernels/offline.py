"""Compile Triton kernels for a GPU on a machine that has none, and read what they would cost there.

Triton's compiler runs on the CPU: only loading and launching need a driver. `offline_target(arch)`
puts a stand-in driver in place of the CUDA one, so that an ordinary kernel call (autotuner and all)
compiles every variant it would compile on that GPU, with Triton's own compiler and the `ptxas`
bundled in the triton wheel, and launches nothing. The autotuner's benchmark runs each pruned
config once (compiling it) and reports equal timings, so the first config is "chosen".

This is how the test suite proves, without a GPU, that the fused head compiles for sm_90 and sm_80
within their shared-memory limits and register budgets (tests/test_gpu_compile.py), and how
benchmarks/host_overhead.py measures the host cost of a launch with the launch itself stubbed.

The kernel module must have been imported with TRITON_INTERPRET unset: under the interpreter
`triton.jit` returns interpreted functions, which never compile. Run it in its own process.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime.driver import driver

# Largest dynamic shared memory one block may use (cudaDevAttrMaxSharedMemoryPerBlockOptin).
SHARED_MEMORY_LIMIT = {90: 232_448, 80: 166_912}


class NoLaunch:
    """Stands in for Triton's CudaLauncher: counts launches and keeps the last one's arguments."""

    launches = 0
    last_args: tuple = ()

    def __init__(self, src, metadata) -> None:
        self.metadata = metadata

    def __call__(self, *args) -> None:
        NoLaunch.launches += 1
        NoLaunch.last_args = args


class OfflineDriver:
    """The parts of Triton's CUDA driver that compiling and (stubbed) launching touch."""

    launcher_cls = NoLaunch

    def __init__(self, arch: int) -> None:
        self.target = GPUTarget("cuda", arch, 32)
        self.utils = self

    # --- driver
    def get_current_target(self) -> GPUTarget:
        return self.target

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_benchmarker(self):
        def run_once(fn, quantiles=None, **kwargs):  # the autotuner's benchmark: compile, "launch", tie
            fn()
            return [1.0, 1.0, 1.0]

        return run_once

    def get_empty_cache_for_benchmark(self):
        return torch.empty(1)

    def clear_cache(self, cache) -> None:
        pass

    # --- utils
    def load_binary(self, name, kernel, shared, device):
        return None, None, 0, 0, 1024  # module, function, n_regs, n_spills, max threads

    def get_device_properties(self, device) -> dict:
        return {"max_shared_mem": SHARED_MEMORY_LIMIT.get(self.target.arch, 1 << 30), "multiprocessor_count": 132}


@contextlib.contextmanager
def offline_target(arch: int = 90, *kernels) -> Iterator[OfflineDriver]:
    """Compile for `arch` (90: H100/H200, 80: A100) and launch nothing, inside the block.

    Triton caches compiled kernels, and the target they were built for, per device index, not per
    architecture: pass the JIT functions and autotuners to be compiled afresh, so that a kernel built
    for one target is never reused for another (their caches are cleared on entry and exit).
    """
    fake = OfflineDriver(arch)
    previous = driver._active

    def forget() -> None:
        for k in kernels:
            getattr(k, "cache", {}).clear()  # an autotuner's chosen configs
            inner = k if hasattr(k, "device_caches") else getattr(k, "fn", k)  # a JITFunction, or an autotuner's
            if hasattr(inner, "device_caches"):
                inner.device_caches.clear()  # compiled kernels and the binder that holds the target

    forget()
    driver.set_active(fake)
    try:
        yield fake
    finally:
        driver._active = previous
        forget()


def offline_active() -> bool:
    """Whether Triton currently compiles for a GPU target without one (CPU tensors are then accepted)."""
    return isinstance(driver._active, OfflineDriver)


@dataclass(frozen=True)
class Usage:
    """What one compiled kernel needs from the GPU."""

    shared_bytes: int  # Triton's shared-memory allocation (the launch fails above the device's limit)
    registers: int
    spill_store_bytes: int
    spill_load_bytes: int
    stack_bytes: int
    num_warps: int
    num_stages: int


_PTXAS_LINES = {
    "registers": re.compile(r"Used (\d+) registers"),
    "spill": re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"),
}


def parse_ptxas_log(log: str) -> dict[str, int]:
    """Registers, stack and spill bytes from `ptxas -v` output (one kernel)."""
    regs = _PTXAS_LINES["registers"].search(log)
    spill = _PTXAS_LINES["spill"].search(log)
    if regs is None or spill is None:
        raise ValueError(f"no register/spill report in the ptxas log:\n{log[-2000:]}")
    return {
        "registers": int(regs.group(1)),
        "stack_bytes": int(spill.group(1)),
        "spill_store_bytes": int(spill.group(2)),
        "spill_load_bytes": int(spill.group(3)),
    }


@dataclass(frozen=True)
class Compiled:
    """One kernel variant Triton compiled: its constexprs and options, and its usage."""

    name: str
    arch: int
    constants: dict
    usage: Usage


_LOGS_BY_HASH: dict[str, str] = {}  # ptxas reports of the kernels this process compiled, for its cache hits


def use_private_cache() -> str:
    """Give this process an empty Triton cache, removed at exit: every kernel it needs is compiled here, so each
    ptxas report is the one Triton's own ptxas command printed (see record_compiles)."""
    folder = tempfile.mkdtemp(prefix="fastdaf-triton-cache-")
    os.environ["TRITON_CACHE_DIR"] = folder  # Triton reads it at each compile
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@contextlib.contextmanager
def record_compiles() -> Iterator[list[Compiled]]:
    """Every kernel Triton compiles inside the block, with its ptxas report.

    Triton runs `ptxas -v` itself and prints the log when asked (TRITON_DUMP_PTXAS_LOG); a hook
    after each compile picks up that kernel's log. A kernel Triton found in its on-disk cache has
    no log: its report is the one kept when this process compiled it (always so after
    use_private_cache), else ptxas is run again on its PTX (run_ptxas: Triton's ptxas, but not
    necessarily Triton's options, which change between releases).
    """
    compiled: list[Compiled] = []
    knobs = triton.knobs
    saved = knobs.nvidia.dump_ptxas_log, knobs.runtime.jit_post_compile_hook
    buffer = io.StringIO()
    seen = 0

    def after_compile(*, key, fn, compile, **kwargs):
        nonlocal seen
        log, seen = buffer.getvalue()[seen:], len(buffer.getvalue())
        device = compile["device"]
        kernel = fn.jit_function.device_caches[device][0][key]
        digest = getattr(kernel.metadata, "hash", None)
        if "Used" in log:
            _LOGS_BY_HASH[digest] = log
        else:
            log = _LOGS_BY_HASH.get(digest) or run_ptxas(kernel.asm["ptx"], kernel.metadata.target.arch)
        constants = {fn.jit_function.arg_names[k[0]]: v for k, v in compile["constants"].items() if len(k) == 1}
        usage = Usage(
            shared_bytes=int(kernel.metadata.shared),
            num_warps=int(kernel.metadata.num_warps),
            num_stages=int(kernel.metadata.num_stages),
            **parse_ptxas_log(log),
        )
        compiled.append(Compiled(fn.name, int(kernel.metadata.target.arch), constants, usage))
        return False

    knobs.nvidia.dump_ptxas_log, knobs.runtime.jit_post_compile_hook = True, after_compile
    try:
        with contextlib.redirect_stdout(buffer):
            yield compiled
    finally:
        knobs.nvidia.dump_ptxas_log, knobs.runtime.jit_post_compile_hook = saved


def run_ptxas(ptx: str, arch: int) -> str:
    """`ptxas -v` of the triton wheel, the one Triton uses for `arch`, on one PTX module; returns its report."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
        done = subprocess.run(
            [bundled_ptxas(arch), "-v", f"--gpu-name={gpu}", src, "-o", os.path.join(tmp, "kernel.cubin")],
            capture_output=True,
            text=True,
            check=True,
        )
    return done.stderr


def bundled_ptxas(arch: int = 90) -> str:
    """The ptxas Triton itself runs for `arch`: it picks among the wheel's binaries by architecture, and the choice
    changed (Triton 3.9 takes ptxas-blackwell, CUDA 13, from sm_90 on: its PTX is too new for the other)."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas  # noqa: PLC0415 - Triton internal, may move

        return get_ptxas(arch).path
    except (ImportError, AttributeError):
        return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
