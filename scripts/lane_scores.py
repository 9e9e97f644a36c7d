"""The bundled model's scores on the six CMU ARCTIC clips, to compare two install lanes (CI: torch 2.11 and newest).

    python scripts/lane_scores.py score --out runs/ci/lock.jsonl          # in one lane's environment
    python scripts/lane_scores.py compare runs/ci/lock.jsonl runs/ci/latest.jsonl [--atol 1e-3]

`score` runs this environment's `fastdaf predict --manifest` (the real command, with audio) on the clips of
`../shared/data/speech` (16 kHz) with their prompts, and on copies of them at other rates (--rates; float WAV,
made in float64 by this tree's fastdaf/audio/dsp.py, so both lanes read the same files and fastdaf resamples them
back to 16 kHz), and writes its JSONL output (ids `clip@rate`) plus a `.versions.json` beside it. `compare` fails
(exit 1) unless both files hold the same rows, every clip at every rate, no row failed, and every score and
modality weight agrees within --atol (the records round to 4 decimals).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile
import torch

from fastdaf.examples import ARCTIC_PROMPTS as PROMPTS

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
RATES = (16000, 8000, 22050, 44100, 48000, 24414)  # 24,414 Hz: TESS's rate, gcd 2 with 16 kHz


def this_trees_resample():
    """fastdaf/audio/dsp.py of this script's tree (standalone: torch only), whichever fastdaf is installed."""
    spec = importlib.util.spec_from_file_location("lane_scores_dsp", REPO / "fastdaf" / "audio" / "dsp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.resample


def fastdaf_command() -> list[str]:
    """This environment's `fastdaf` console script (what a user runs), or the module if it is not installed."""
    script = Path(sys.executable).parent / "fastdaf"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "fastdaf.cli"]


def write_manifest(folder: Path, speech: Path, rates: list[int]) -> Path:
    resample = this_trees_resample()
    manifest = folder / "arctic.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "audio"])
        for clip, text in PROMPTS.items():
            source = speech / f"cmu_arctic_us_{clip}.wav"
            samples, rate = soundfile.read(source, dtype="float64")
            for target in rates:
                path = source
                if target != rate:
                    path = folder / f"{clip}@{target}.wav"
                    copy = resample(torch.from_numpy(samples), rate, target).numpy()
                    soundfile.write(path, copy, target, subtype="FLOAT")
                writer.writerow([f"{clip}@{target}", text, str(path)])
    return manifest


def score(out: Path, speech: Path, rates: list[int]) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # a fresh run, not a resumed one
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_manifest(Path(tmp), speech, rates)
        done = subprocess.run([*fastdaf_command(), "predict", "--manifest", str(manifest), "--out", str(out)])
    if done.returncode != 0:
        return done.returncode
    import triton

    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "triton": triton.__version__}
    out.with_suffix(".versions.json").write_text(json.dumps(versions))
    print(f"{out}: {len(read(out))} rows scored with {versions}")
    return 0


def read(path: Path) -> dict[str, dict]:
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


def compare(first: Path, second: Path, atol: float) -> int:
    a, b = read(first), read(second)
    problems = []
    if set(a) != set(b):
        problems.append(
            f"rows differ: only in {first.name}: {sorted(set(a) - set(b))}, in {second.name}: {sorted(set(b) - set(a))}"
        )
    clips = {row_id.split("@")[0] for row_id in a}
    if clips != set(PROMPTS):
        problems.append(f"clips missing: {sorted(set(PROMPTS) - clips)}")
    worst = 0.0
    print(f"{'row':<16} {first.stem:>10} {second.stem:>10} {'|diff|':>9}")
    for row_id in sorted(set(a) & set(b)):
        x, y = a[row_id], b[row_id]
        if x["error"] or y["error"]:
            problems.append(f"{row_id}: failed ({x['error'] or y['error']})")
            continue
        diffs = [abs(x["score"] - y["score"])] + [abs(x["weights"][m] - y["weights"][m]) for m in x["weights"]]
        worst = max(worst, *diffs)
        print(f"{row_id:<16} {x['score']:>10.4f} {y['score']:>10.4f} {max(diffs):>9.1e}")
    for path in (first, second):
        versions = path.with_suffix(".versions.json")
        if versions.is_file():
            print(f"{path.stem}: {versions.read_text()}")
    print(f"largest score or weight difference: {worst:.1e} (allowed {atol:g}) over {len(set(a) & set(b))} rows")
    if worst > atol:
        problems.append(f"scores differ by {worst:.1e} > {atol:g}")
    for problem in problems:
        print(f"lane_scores: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("score", help="score the clips with this environment's fastdaf")
    run.add_argument("--out", type=Path, required=True, help="JSONL output (fastdaf predict's records)")
    run.add_argument("--speech", type=Path, default=SPEECH, help=f"folder of the ARCTIC clips (default {SPEECH})")
    run.add_argument("--rates", type=int, nargs="+", default=list(RATES), help=f"rates scored (default {RATES})")
    check = sub.add_parser("compare", help="compare two lanes' outputs")
    check.add_argument("first", type=Path)
    check.add_argument("second", type=Path)
    check.add_argument("--atol", type=float, default=1e-3, help="largest difference allowed (default 1e-3)")
    args = parser.parse_args(argv)
    if args.command == "score":
        if not args.speech.is_dir():
            print(f"lane_scores: no ARCTIC clips at {args.speech}", file=sys.stderr)
            return 2
        return score(args.out, args.speech, args.rates)
    return compare(args.first, args.second, args.atol)


if __name__ == "__main__":
    sys.exit(main())
