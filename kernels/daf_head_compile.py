"""Compile every variant class of the fused head for a GPU, on any machine, and report its usage.

    python -m fastdaf.kernels.daf_head_compile --arch 90 --arch 80 --jobs 2 --out report.json

Each variant goes through the real launcher (`DAFHeadLaunch`, autotuner and pruning included) with
CPU tensors under `fastdaf.kernels.offline.offline_target`, so Triton compiles exactly what the
first call on that GPU would compile, with its own compiler and bundled ptxas. The report lists,
per variant, every kernel compiled (its constexprs, num_warps, num_stages) with its shared memory,
registers and spills, or the error. tests/test_gpu_compile.py judges it.

The variants cover the launcher's space in two sweeps:
- resources: every input dtype x projection size 16..512, autotuned at a batch large enough that
  every tile `feasible_tiles` keeps is compiled (that is every tile a pinned `block_config` or the
  autotuner can choose), on the heaviest structure (four modalities, dynamic fusion, a mask), and
  for fp16 also with two modalities (which keeps denser tiles);
- structure: 1-4 modalities x dynamic/static/mean fusion x mask or not, each at every dtype (sm_90)
  or one rotating dtype (other targets), ragged projection sizes, batch 1 (Triton makes it a
  constant) or 33, on the tile of most values per thread for its shape.

Must run with TRITON_INTERPRET unset (a fresh process): see fastdaf.kernels.offline.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

import torch

from ..dtypes import DTYPES as DTYPE_TABLE
from ..fused import SUPPORTED_FUSION
from .daf_head import (
    DAFHeadLaunch,
    _pow2,
    block_k_for,
    chunk_size,
    daf_head_kernel,
    daf_head_kernel_tuned,
    feasible_tiles,
    shared_memory_estimate,
)
from .offline import SHARED_MEMORY_LIMIT, offline_target, record_compiles, use_private_cache

DTYPES = tuple(DTYPE_TABLE)
PROJECTION_SIZES = (16, 32, 64, 128, 256, 512)
FUSIONS = SUPPORTED_FUSION
MODALITY_DIMS = (768, 74, 35, 17)  # text, acoustic, visual, one more; 74 and 35 give unaligned strides


@dataclass(frozen=True)
class Variant:
    arch: int
    dtype: str
    n_modalities: int
    fusion: str
    has_mask: bool
    projection_size: int
    batch: int
    attention_size: int = 64
    hidden_size: int = 128
    n_outputs: int = 1
    tile: dict | None = field(default=None, hash=False, compare=False)  # None: autotuned

    @property
    def id(self) -> str:
        tile = "auto" if self.tile is None else f"b{self.tile['BLOCK_B']}w{self.tile['num_warps']}"
        return (
            f"sm{self.arch}-{self.dtype}-m{self.n_modalities}-{self.fusion}-{'mask' if self.has_mask else 'nomask'}"
            f"-p{self.projection_size}-a{self.attention_size}-h{self.hidden_size}-o{self.n_outputs}-b{self.batch}-{tile}"
        )


def _torch_dtype(name: str):
    return DTYPE_TABLE[name]


def densest_tile(projection_size: int, dtype: str, arch: int, **shape) -> dict:
    """The kept tile with the most values per thread (the one most likely to spill)."""
    tiles = feasible_tiles(projection_size, _torch_dtype(dtype), arch=arch, **shape)
    return max(tiles, key=lambda t: (t["BLOCK_B"] / t["num_warps"], t["BLOCK_B"]))


def variants(arch: int) -> list[Variant]:
    out = [Variant(arch, dtype, 4, "dynamic", True, p, 4096) for dtype in DTYPES for p in PROJECTION_SIZES]
    out += [
        Variant(arch, "fp16", 2, "dynamic", True, p, 4096) for p in PROJECTION_SIZES
    ]  # fp16 with <= 2 modalities keeps more tiles
    ragged = (48, 16, 100, 256, 512, 33, 128, 200)
    i = 0
    for m in (1, 2, 3, 4):
        for fusion in FUSIONS:
            for has_mask in (True, False):
                dtypes = DTYPES if arch == 90 else (DTYPES[i % 3],)
                for dtype in dtypes:
                    p = ragged[i % len(ragged)]
                    shape = dict(
                        attention_size=(64, 100, 16)[i % 3],
                        hidden_size=(128, 144, 24)[i % 3],
                        n_outputs=(1, 8, 3)[i % 3],
                    )
                    tile = densest_tile(p, dtype, arch, n_modalities=m, **shape)
                    out.append(Variant(arch, dtype, m, fusion, has_mask, p, (1, 33)[i % 2], tile=tile, **shape))
                i += 1
    return out


def compile_variant(v: Variant) -> dict:
    """Compile one variant (in this process) and report every kernel Triton built for it."""

    x_dtype = _torch_dtype(v.dtype)
    w_dtype = torch.float16 if v.dtype == "fp16" else torch.float32  # as fastdaf.fused lays them out
    dims = MODALITY_DIMS[: v.n_modalities]
    P, A, H, NO, M = v.projection_size, v.attention_size, v.hidden_size, v.n_outputs, v.n_modalities

    def t(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(*shape).to(dtype)

    launch = DAFHeadLaunch(
        [t(d, P, dtype=w_dtype) for d in dims],
        [t(P) for _ in dims],
        t(P, A, dtype=w_dtype),
        t(A),
        t(A),
        t(M),
        t(P, H, dtype=w_dtype),
        t(H),
        t(H, NO, dtype=w_dtype),
        t(NO),
        has_mask=v.has_mask,
        projection_size=P,
        attention_size=A,
        hidden_size=H,
        n_outputs=NO,
        activation="gelu",
        fusion=v.fusion,
        temperature=1.0,
        precision="ieee" if v.dtype == "fp16" else "tf32",
        second_precision="ieee" if v.dtype == "fp16" else "tf32",
        block_config=v.tile,
        direct=False,
    )
    xs = [t(v.batch, d, dtype=x_dtype) for d in dims]
    mask = torch.ones(v.batch, M, dtype=torch.uint8) if v.has_mask else None
    result: dict = {"id": v.id, "variant": asdict(v), "kernels": [], "error": None}
    with offline_target(v.arch, daf_head_kernel, daf_head_kernel_tuned), record_compiles() as compiled:
        try:
            launch(xs, mask, torch.empty(v.batch, NO), torch.empty(v.batch, M))
        except Exception as exc:  # noqa: BLE001 - reported, judged by the test
            result["error"] = f"{type(exc).__name__}: {str(exc)[:4000]}"
    p_pad = _pow2(P)
    for c in compiled:
        bb, bk = c.constants["BLOCK_B"], c.constants["BLOCK_K"]
        estimate = shared_memory_estimate(
            bb,
            bk,
            p_pad,
            chunk_size(A, p_pad),
            chunk_size(H, p_pad),
            _pow2(NO),
            2 if w_dtype == torch.float16 else 4,
            c.usage.num_stages,
        )
        result["kernels"].append(
            {
                "BLOCK_B": bb,
                "BLOCK_K": bk,
                "arch": c.arch,
                **asdict(c.usage),
                "shared_estimate": estimate,
                "shared_limit": SHARED_MEMORY_LIMIT[v.arch],
                "block_k_expected": block_k_for(2 if w_dtype == torch.float16 else 4),
            }
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--arch", type=int, action="append", choices=(80, 90), help="compute capability x10 (repeatable; default 90)"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compiler processes")
    parser.add_argument("--only", default=None, help="compile only variants whose id contains this text")
    parser.add_argument("--out", default="-", help="JSON report file ('-': stdout)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("daf_head_compile: unset TRITON_INTERPRET (the interpreter never compiles)", file=sys.stderr)
        return 2
    todo = [v for arch in (args.arch or [90]) for v in variants(arch) if args.only is None or args.only in v.id]
    # the heaviest first, so two workers finish together
    todo.sort(key=lambda v: (v.tile is not None, -v.projection_size))
    # each process compiles into its own empty cache, so every ptxas report is Triton's own (offline.record_compiles)
    if args.jobs > 1:
        with ProcessPoolExecutor(
            args.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=use_private_cache
        ) as pool:
            results = list(pool.map(compile_variant, todo))
    else:
        use_private_cache()
        results = [compile_variant(v) for v in todo]
    text = json.dumps(results, indent=1)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
