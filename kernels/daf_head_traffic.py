"""The fused head's memory traffic per program, and the fraction of the HBM roofline it predicts.

    python -m fastdaf.kernels.daf_head_traffic [--batch 65536] [--markdown]

Read off `daf_head_kernel`, load by load (tests/test_daf_head_traffic.py counts the bytes the kernel
really loads in the interpreter and compares):
- HBM, once per row: the row's inputs of each given modality, its mask row, its scores and modality
  weights (written);
- L2, once per program (after the first program brought them in): every projection of a given modality
  with its bias; per given modality the scoring matrix U and its two vectors (the scoring runs inside
  each modality step) or the static logit; the output MLP once.

So the weights cost L2 traffic per row of weight bytes / BLOCK_B, and rows per program is the lever.

Prediction, an additive model (streaming inputs from HBM and reading weights from L2 do not overlap:
pessimistic): time = HBM bytes / HBM bandwidth + L2-only bytes / L2 bandwidth. The roofline is the
fewest bytes the head must move (inputs, mask and outputs of every row, the weights once) over HBM
bandwidth; the predicted fraction is roofline time / predicted time.

Figures (H100 SXM5; `BANDWIDTH`): HBM 3.35 TB/s, NVIDIA's datasheet. L2: NVIDIA publishes no figure
for H100; we use 10 TB/s, the figure commonly quoted for it (5,120 bytes a clock, the L2 read
bandwidth NVIDIA gave for A100, at H100 SXM5's 1.98 GHz boost clock: 10.1 TB/s), and also report
5.5 TB/s, what Chips and Cheese measured on an H100 PCIe (114 SMs, lower clocks), as a pessimistic
column. A GPU run measures the real thing (benchmarks/gpu_check.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .daf_head import feasible_tiles

# bytes per second
BANDWIDTH = {"hbm": 3.35e12, "l2": 10.0e12, "l2_pessimistic": 5.5e12}
TARGET_MODALITIES = {"text": 768, "audio": 74}
# issue 23: predicted fraction at B=65536, fp16, text 768 + audio 74, by projection size
TARGET_FRACTION = {128: 0.60, 256: 0.50}


@dataclass(frozen=True)
class Traffic:
    """Bytes one program moves: per row (HBM) and per program (weights, from L2)."""

    block_b: int
    row_input_bytes: int  # inputs and mask of one row, read from HBM
    row_output_bytes: int  # scores and modality weights of one row, written
    weight_bytes: int  # every weight one program reads

    @property
    def row_hbm_bytes(self) -> int:
        return self.row_input_bytes + self.row_output_bytes

    @property
    def l2_bytes_per_row(self) -> float:
        return self.weight_bytes / self.block_b

    def predicted_fraction(self, batch: int, l2_bytes_per_s: float, hbm_bytes_per_s: float = BANDWIDTH["hbm"]) -> float:
        """Roofline time / predicted time at `batch` rows (see the module docstring)."""
        programs = -(-batch // self.block_b)
        hbm = batch * self.row_hbm_bytes + self.weight_bytes  # the weights come from HBM once
        l2_only = (programs - 1) * self.weight_bytes
        return (hbm / hbm_bytes_per_s) / (hbm / hbm_bytes_per_s + l2_only / l2_bytes_per_s)


def program_traffic(
    modality_dims: Mapping[str, int] | list[int],
    *,
    projection_size: int,
    block_b: int,
    dtype: torch.dtype = torch.float16,
    attention_size: int = 64,
    hidden_size: int = 128,
    n_outputs: int = 1,
    fusion: str = "dynamic",
    has_mask: bool = True,
    n_modalities: int | None = None,
) -> Traffic:
    """Bytes of one program of `block_b` rows with every listed modality given.

    Matrix weights are in the input dtype, fp32 for bf16 inputs; biases, scoring vectors and logits
    fp32 (fastdaf.fused.FusedDAFHead.weights_for). n_modalities: the head's modality count M (mask and
    weights columns; default: the given ones)."""
    dims = list(modality_dims.values()) if isinstance(modality_dims, Mapping) else list(modality_dims)
    M = n_modalities or len(dims)
    x_bytes = torch.empty(0, dtype=dtype).element_size()
    w_bytes = 4 if dtype in (torch.float32, torch.bfloat16) else 2
    P, A, H, NO = projection_size, attention_size, hidden_size, n_outputs
    per_modality = {
        "dynamic": P * A * w_bytes + 2 * A * 4,  # U, then its bias c and vector v
        "static": 4,  # one logit
        "mean": 0,
    }[fusion]
    weights = sum(d * P * w_bytes + P * 4 + per_modality for d in dims)
    weights += P * H * w_bytes + H * 4 + H * NO * w_bytes + NO * 4  # W1, b1, W2, b2
    return Traffic(
        block_b=block_b,
        row_input_bytes=sum(dims) * x_bytes + (M if has_mask else 0),
        row_output_bytes=NO * 4 + M * 4,
        weight_bytes=weights,
    )


def traffic_rows(batch: int = 65536, projection_sizes: tuple[int, ...] = (128, 256)) -> list[dict]:
    """One row per tile the autotuner may choose at the target shape (every one the compile checks
    compile, tests/test_gpu_compile.py), per input dtype and projection size."""
    rows = []
    for P in projection_sizes:
        for name, dtype in (("fp16", torch.float16), ("fp32", torch.float32), ("bf16", torch.bfloat16)):
            for tile in feasible_tiles(P, dtype, n_modalities=len(TARGET_MODALITIES), batch=batch):
                t = program_traffic(TARGET_MODALITIES, projection_size=P, block_b=tile["BLOCK_B"], dtype=dtype)
                rows.append(
                    {
                        "dtype": name,
                        "projection": P,
                        "BLOCK_B": tile["BLOCK_B"],
                        "num_warps": tile["num_warps"],
                        "hbm_bytes_per_row": t.row_hbm_bytes,
                        "weight_bytes_per_program": t.weight_bytes,
                        "l2_bytes_per_row": t.l2_bytes_per_row,
                        "fraction": t.predicted_fraction(batch, BANDWIDTH["l2"]),
                        "fraction_pessimistic_l2": t.predicted_fraction(batch, BANDWIDTH["l2_pessimistic"]),
                    }
                )
    return rows


def best_fraction(projection_size: int, batch: int = 65536, dtype: str = "fp16") -> dict:
    """The tile of highest predicted fraction at the target shape."""
    rows = [r for r in traffic_rows(batch, (projection_size,)) if r["dtype"] == dtype]
    return max(rows, key=lambda r: r["fraction"])


def format_rows(rows: list[dict], markdown: bool = False) -> str:
    head = (
        "dtype",
        "P",
        "BLOCK_B",
        "warps",
        "HBM B/row",
        "weights B/program",
        "L2 B/row",
        "fraction (L2 10 TB/s)",
        "(L2 5.5 TB/s)",
    )
    lines = []
    for r in rows:
        lines.append(
            (
                r["dtype"],
                str(r["projection"]),
                str(r["BLOCK_B"]),
                str(r["num_warps"]),
                str(r["hbm_bytes_per_row"]),
                f"{r['weight_bytes_per_program']:,}",
                f"{r['l2_bytes_per_row']:,.0f}",
                f"{r['fraction']:.1%}",
                f"{r['fraction_pessimistic_l2']:.1%}",
            )
        )
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*line) for line in lines])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--markdown", action="store_true", help="a Markdown table (for benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    print(format_rows(traffic_rows(args.batch), markdown=args.markdown))
    for P, goal in TARGET_FRACTION.items():
        best = best_fraction(P, args.batch)
        verdict = "meets" if best["fraction"] >= goal else "MISSES"
        print(
            f"fp16 P={P}: best tile BLOCK_B={best['BLOCK_B']} num_warps={best['num_warps']} predicts "
            f"{best['fraction']:.1%} of the HBM roofline ({best['fraction_pessimistic_l2']:.1%} at L2 5.5 TB/s); "
            f"target {goal:.0%}: {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
