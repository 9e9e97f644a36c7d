"""The charts of benchmark results (matplotlib, the `plot` extra; imported only when a chart is drawn).

`plot_rows`: the results file (fastdaf.bench_rows) as one horizontal bar chart of p50 latency per what, backend
and shape, grouped and coloured by benchmark: `fastdaf-bench plot [--results FILE] --out FILE.png`.
`plot_e2e`: `fastdaf-bench e2e --plot FILE.png`, end-to-end p50 latency against batch size, one line per encoder
backend.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bench_rows import DEFAULT_RESULTS, BenchRow, read_rows, row_label
from .errors import InputError
from .extras import pyplot


def plot_rows(
    path: str | Path = DEFAULT_RESULTS, out_png: str | Path = "results.png", *, benchmarks: Sequence[str] | None = None
) -> Path:
    """One horizontal bar chart of p50 latency (log scale) per what/backend/shape, grouped (and coloured) by
    benchmark; for rows measured more than once (same benchmark, what, backend, shape, dtype, device) the
    latest row of the file. Rows without a p50 (throughput-only, errors) are left out."""
    rows = [r for r in read_rows(path) if r.p50_ms is not None and (not benchmarks or r.benchmark in benchmarks)]
    if not rows:
        raise InputError(
            f"{path} holds no timed rows (p50_ms) to plot" + (f" for {list(benchmarks)}" if benchmarks else "")
        )
    latest: dict[str, BenchRow] = {}
    for r in rows:  # the file is in time order: the last row of a key wins
        key = json.dumps([r.benchmark, r.what, r.backend, r.shape, r.dtype, r.device], sort_keys=True, default=str)
        latest.pop(key, None)
        latest[key] = r
    groups: dict[str, list[BenchRow]] = {}
    for r in latest.values():
        groups.setdefault(r.benchmark, []).append(r)
    with_device = len({r.device for r in latest.values()}) > 1

    plt = pyplot("fastdaf-bench plot")

    n = len(latest) + len(groups)
    fig, ax = plt.subplots(figsize=(11, min(0.26 * n + 1.6, 600)))
    colours = plt.get_cmap("tab10")
    ticks, labels, y = [], [], 0.0
    for g, (benchmark, items) in enumerate(groups.items()):
        for i, r in enumerate(items):
            ax.barh(y, r.p50_ms, color=colours(g % 10), label=benchmark if i == 0 else None)
            ax.annotate(f" {r.p50_ms:.3g}", (r.p50_ms, y), va="center", fontsize=6)
            ticks.append(y)
            labels.append(row_label(r, with_device))
            y += 1
        y += 0.8  # a gap between benchmarks
    ax.set_yticks(ticks, labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per call (ms, log scale)")
    ax.set_title(f"{Path(path).name}: p50 per what | backend | shape, by benchmark", fontsize=9)
    ax.legend(title="benchmark", fontsize=7, title_fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def plot_e2e(rows: list[dict[str, Any]], path: str) -> str:
    plt = pyplot("fastdaf-bench e2e --plot")

    fig, ax = plt.subplots(figsize=(6, 4))
    for backend in dict.fromkeys(r["backend"] for r in rows if "skipped" not in r):
        pts = [
            (r["batch"], r["total_p50_us"] / 1000) for r in rows if r.get("backend") == backend and "skipped" not in r
        ]
        ax.plot([b for b, _ in pts], [t for _, t in pts], marker="o", label=backend)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("end-to-end latency p50 (ms)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
