"""Write the lock files: the exact version of every package each install lane takes, resolved today.

    python scripts/lock.py                 # rewrite requirements/*.lock (needs the registry; ~1 min)
    python scripts/lock.py --lane latest   # one lane only

pyproject.toml keeps ranges, for people who install fastdaf into their own environment. The locks pin
everything, so that a release upstream cannot change what the README's commands and CI install: each is used as
a pip constraints file through PIP_CONSTRAINT (which also reaches the isolated build environment of the editable
install, so setuptools and wheel are pinned too):

    PIP_CONSTRAINT=requirements/test.lock pip install -e '.[test]'

Lanes (LANES below): `core` (the core install on torch 2.11), `test` (the README's commands and CI's first lane:
the core plus every extra, on torch 2.11 and triton 3.6, what the lent GPU machine runs), `latest` (the core on
the newest torch the registry serves, with pytest: CI's second lane). A lane is resolved by pip itself
(`pip install --dry-run --ignore-installed --report`), for this interpreter and platform (CI's: CPython 3.11,
Linux x86-64), with this machine's pip configuration and PIP_* variables left out so that only the registry and
pyproject.toml decide. Run it with the Python CI uses; regenerate after changing a dependency or to move the
`latest` lane forward, then run both lanes (`bash .ci/run`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "requirements"
BUILD = ["setuptools>=68", "wheel"]  # pyproject.toml's build-system.requires, pinned with the rest
TORCH_OF_THE_GPU_MACHINE = "torch==2.11.*"  # brings triton 3.6
LANES = {
    "core": {"install": ".", "also": [TORCH_OF_THE_GPU_MACHINE], "what": "the core install (pip install -e .)"},
    "test": {
        "install": ".[test]",
        "also": [TORCH_OF_THE_GPU_MACHINE],
        "what": "the core and every extra (pip install -e '.[test]'): the README's commands, CI's first lane",
    },
    "latest": {
        "install": ".",
        "also": ["pytest>=8"],
        "what": "the core on the newest torch the registry serves, with pytest: CI's second lane",
    },
}
KEPT_PIP_VARIABLES = {"PIP_CERT", "PIP_DEFAULT_TIMEOUT"}  # how to reach the registry, not what to pick


def resolve(lane: str) -> list[tuple[str, str]]:
    """(name, version) of every package pip would install for the lane into an empty environment."""
    spec = LANES[lane]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in KEPT_PIP_VARIABLES}
    env["PIP_CONFIG_FILE"] = os.devnull  # no machine or user pip configuration (constraints, local indexes)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        command += ["--report", str(report), "-e", str(REPO) + spec["install"].removeprefix("."), *spec["also"]]
        subprocess.run(command + BUILD, check=True, env=env, cwd=REPO)
        installs = json.loads(report.read_text())["install"]
    pins = {(i["metadata"]["name"].lower().replace("_", "-"), i["metadata"]["version"]) for i in installs}
    return sorted(pin for pin in pins if pin[0] != "fastdaf")


def write_lock(lane: str, pins: list[tuple[str, str]]) -> Path:
    today = datetime.date.today().isoformat()
    where = f"CPython {platform.python_version()} on {platform.system()} {platform.machine()}"
    lines = [
        f"# fastdaf lock `{lane}`: {LANES[lane]['what']}.",
        f"# Made by `python scripts/lock.py` on {today} with {where}; resolved by pip for that platform.",
        f"# Use: PIP_CONSTRAINT=requirements/{lane}.lock pip install ... (see scripts/lock.py). Do not edit by hand.",
        *(f"{name}=={version}" for name, version in pins),
    ]
    path = LOCKS / f"{lane}.lock"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lane", choices=sorted(LANES), action="append", help="lanes to lock (default: all)")
    args = parser.parse_args(argv)
    LOCKS.mkdir(exist_ok=True)
    for lane in args.lane or LANES:
        pins = resolve(lane)
        path = write_lock(lane, pins)
        torch = dict(pins).get("torch")
        print(f"{path.relative_to(REPO)}: {len(pins)} packages (torch {torch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
