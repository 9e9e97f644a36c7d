"""The bundled model's scores on the six CMU ARCTIC clips, to compare two install lanes (CI: torch 2.11 and newest).

    python scripts/lane_scores.py score --out runs/ci/lock.jsonl          # in one lane's environment
    python scripts/lane_scores.py compare runs/ci/lock.jsonl runs/ci/latest.jsonl [--atol 1e-3]

`score` runs this environment's `fastdaf predict --manifest` (the real command, with audio) on the clips of
`../shared/data/speech` with their prompts, and writes its JSONL output plus a `.versions.json` beside it.
`compare` fails (exit 1) unless both files hold every clip, no row failed, and every score and modality weight
agrees within --atol.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from fastdaf.examples import ARCTIC_PROMPTS as PROMPTS

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"


def fastdaf_command() -> list[str]:
    """This environment's `fastdaf` console script (what a user runs), or the module if it is not installed."""
    script = Path(sys.executable).parent / "fastdaf"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "fastdaf.cli"]


def score(out: Path, speech: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # a fresh run, not a resumed one
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "arctic.csv"
        with manifest.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text", "audio"])
            for clip, text in PROMPTS.items():
                writer.writerow([clip, text, str(speech / f"cmu_arctic_us_{clip}.wav")])
        done = subprocess.run([*fastdaf_command(), "predict", "--manifest", str(manifest), "--out", str(out)])
    if done.returncode != 0:
        return done.returncode
    import torch
    import triton

    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "triton": triton.__version__}
    out.with_suffix(".versions.json").write_text(json.dumps(versions))
    print(f"{out}: {len(read(out))} clips scored with {versions}")
    return 0


def read(path: Path) -> dict[str, dict]:
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


def compare(first: Path, second: Path, atol: float) -> int:
    a, b = read(first), read(second)
    problems = [f"{path}: clips {sorted(set(PROMPTS) - set(rows))} missing" for path, rows in ((first, a), (second, b))]
    problems = [p for p, rows in zip(problems, (a, b)) if set(PROMPTS) - set(rows)]
    worst = 0.0
    print(f"{'clip':<10} {first.stem:>12} {second.stem:>12} {'|diff|':>10}")
    for clip in sorted(set(a) & set(b)):
        x, y = a[clip], b[clip]
        if x["error"] or y["error"]:
            problems.append(f"{clip}: failed ({x['error'] or y['error']})")
            continue
        diffs = [abs(x["score"] - y["score"])] + [abs(x["weights"][m] - y["weights"][m]) for m in x["weights"]]
        worst = max(worst, *diffs)
        print(f"{clip:<10} {x['score']:>12.6f} {y['score']:>12.6f} {diffs[0]:>10.2e}")
    for path in (first, second):
        versions = path.with_suffix(".versions.json")
        if versions.is_file():
            print(f"{path.stem}: {versions.read_text()}")
    print(f"largest score or weight difference: {worst:.2e} (allowed {atol:g})")
    if worst > atol:
        problems.append(f"scores differ by {worst:.2e} > {atol:g}")
    for p in problems:
        print(f"lane_scores: {p}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("score", help="score the six clips with this environment's fastdaf")
    run.add_argument("--out", type=Path, required=True, help="JSONL output (fastdaf predict's records)")
    run.add_argument("--speech", type=Path, default=SPEECH, help=f"folder of the ARCTIC clips (default {SPEECH})")
    check = sub.add_parser("compare", help="compare two lanes' outputs")
    check.add_argument("first", type=Path)
    check.add_argument("second", type=Path)
    check.add_argument("--atol", type=float, default=1e-3, help="largest difference allowed (default 1e-3)")
    args = parser.parse_args(argv)
    if args.command == "score":
        if not args.speech.is_dir():
            print(f"lane_scores: no ARCTIC clips at {args.speech}", file=sys.stderr)
            return 2
        return score(args.out, args.speech)
    return compare(args.first, args.second, args.atol)


if __name__ == "__main__":
    sys.exit(main())
