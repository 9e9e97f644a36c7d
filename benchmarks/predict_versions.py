"""Warm prediction latency of this checkout against an earlier commit, side by side in one run.

    python benchmarks/predict_versions.py [--baseline 8c8386c] [--checkpoint fast] [--baseline-checkpoint ""]
                                          [--rounds 3] [--iters 50] [--results FILE | --no-results]

Both versions time `SentimentPredictor.predict(sentence, clip)` for the 3.9 s CMU ARCTIC clip aew_a0001 and its
sentence (p50 over --iters calls after warm-up), each in a fresh process, alternating version by version for
--rounds rounds so that a busy spell of a noisy machine hits both. The baseline runs from a temporary git
worktree of that commit with this environment's packages. --checkpoint and --baseline-checkpoint name the model
each version loads ("" is that version's own default): the same weights should be compared, e.g. this
checkout's `fast` is 8c8386c's default model (the scores printed beside the timings show it). The answer is
the ratio of the two versions' median p50s (> 1: this checkout is slower); each version is also a benchmark row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from fastdaf.bench_rows import add_results_options, bench_row, write_results
from fastdaf.examples import ARCTIC_PROMPTS

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "speech" / "cmu_arctic_us_aew_a0001.wav"
BENCHMARK = "benchmarks/predict_versions.py"

# run inside each version's tree: only what every version of SentimentPredictor offers
TIMING = """
import json, statistics, sys, time
import fastdaf
from fastdaf import SentimentPredictor
checkpoint, clip, sentence, iters = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
predictor = SentimentPredictor(checkpoint) if checkpoint else SentimentPredictor()
for _ in range(5):
    result = predictor.predict(sentence, clip)
samples = []
for _ in range(iters):
    start = time.perf_counter()
    predictor.predict(sentence, clip)
    samples.append((time.perf_counter() - start) * 1000)
score = result["score"] if isinstance(result, dict) else result.score
print(json.dumps({"source": fastdaf.__file__, "samples_ms": samples, "score": score}))
"""


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def baseline_tree(commit: str, folder: Path) -> Path:
    """A worktree of `commit`; commits before fastdaf/_checkout.py find fastdaf.kernels through a link."""
    tree = folder / "baseline"
    git("worktree", "add", "--detach", str(tree), commit)
    if not (tree / "fastdaf" / "_checkout.py").exists() and (tree / "kernels").is_dir():
        (tree / "fastdaf" / "kernels").symlink_to("../kernels")
    return tree


def time_version(tree: Path, checkpoint: str, iters: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", TIMING, checkpoint, str(CLIP), ARCTIC_PROMPTS["aew_a0001"], str(iters)],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["source"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the version in {tree} imported fastdaf from {result['source']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="8c8386c", help="the commit to compare with")
    parser.add_argument("--checkpoint", default="fast", help="the model this checkout loads")
    parser.add_argument("--baseline-checkpoint", default="", help='the model the baseline loads ("": its default)')
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=50)
    add_results_options(parser)
    args = parser.parse_args(argv)
    head = git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--porcelain", "--", "fastdaf") else "")
    base = git("rev-parse", "--short", args.baseline)
    with tempfile.TemporaryDirectory() as folder:
        versions = {
            head: (REPO, args.checkpoint),
            base: (baseline_tree(args.baseline, Path(folder)), args.baseline_checkpoint),
        }
        try:
            runs: dict[str, list[dict]] = {name: [] for name in versions}
            for round_ in range(args.rounds):
                for name, (tree, checkpoint) in versions.items():
                    runs[name].append(time_version(tree, checkpoint, args.iters))
                    p50 = statistics.median(runs[name][-1]["samples_ms"])
                    print(f"round {round_ + 1}: {name} p50 {p50:.2f} ms", file=sys.stderr)
        finally:
            git("worktree", "remove", "--force", str(versions[base][0]))
    p50s = {name: [statistics.median(r["samples_ms"]) for r in rs] for name, rs in runs.items()}
    medians = {name: statistics.median(values) for name, values in p50s.items()}
    report = {
        "clip": CLIP.name,
        "versions": {
            name: {
                "checkpoint": versions[name][1] or "(default)",
                "p50_ms_per_round": p50s[name],
                "median_p50_ms": medians[name],
                "score": runs[name][-1]["score"],
            }
            for name in versions
        },
        "ratio_this_over_baseline": medians[head] / medians[base],
    }
    print(json.dumps(report, indent=2))
    rows = [
        bench_row(
            BENCHMARK,
            f"SentimentPredictor.predict, warm, {name} beside {other} (alternating rounds)",
            device="cpu",
            shape={"batch": 1, "clip": "aew_a0001"},
            samples_ms=[s for r in runs[name] for s in r["samples_ms"]],
            extra={
                **report["versions"][name],
                "commit": name,
                "ratio_this_over_baseline": report["ratio_this_over_baseline"],
            },
        )
        for name, other in ((head, base), (base, head))
    ]
    write_results(rows, args, prog="predict_versions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
