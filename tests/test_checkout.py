"""A checkout shadows nothing and runs its own kernels.

- The top-level kernels/ folder must not hide Hugging Face's `kernels` distribution (transformers >= 5.25 imports
  it) when the checkout is on sys.path: `python -m pytest`, `python -c` and benchmarks/gpu_check.py all put it
  there. A stand-in `kernels` distribution is made in a temporary folder, so the test does not depend on what
  happens to be installed.
- `fastdaf.kernels` is the kernels/ of the tree whose fastdaf/ was imported, even when another tree is
  installed (editable) in the same environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import REPO

# A stand-in for Hugging Face's `kernels`: any name transformers imports from it is a no-op decorator factory.
STAND_IN = '''
"""Stand-in for Hugging Face's kernels package (tests/test_checkout.py)."""
STAND_IN = True


class _NoOp:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) and not kwargs else self

    def __getattr__(self, name):
        return _NoOp()


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _NoOp
'''


def make_stand_in_kernels(root: Path, version: str) -> Path:
    """site/kernels/__init__.py plus its distribution metadata, as pip would install it."""
    site = root / "site"
    (site / "kernels").mkdir(parents=True)
    (site / "kernels" / "__init__.py").write_text(STAND_IN)
    info = site / f"kernels-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: kernels\nVersion: {version}\n")
    (info / "RECORD").write_text("")
    return site


def kernels_window() -> str:
    """A `kernels` version this transformers accepts (it imports the package only then)."""
    from transformers.utils import import_utils

    return getattr(import_utils, "KERNELS_MIN_VERSION", "0.19.1")


# What every run below reports: where `kernels` and `fastdaf.kernels` came from, and that transformers built and
# ran a model with its kernel hub integration active.
PROBE = r"""
import importlib.metadata, json, sys
import torch, transformers
from transformers.utils import is_kernels_available
import transformers.integrations.hub_kernels  # imports names from `kernels` when it is available
import kernels
config = transformers.BertConfig(
    vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20
)
hidden = transformers.BertModel(config).eval()(torch.tensor([[1, 2, 3]])).last_hidden_state
import fastdaf, fastdaf.kernels.daf_head
print(json.dumps({
    "kernels": kernels.__file__,
    "stand_in": getattr(kernels, "STAND_IN", False),
    "kernels_available": is_kernels_available(),
    "model_ran": bool(torch.isfinite(hidden).all()),
    "fastdaf": fastdaf.__file__,
    "fastdaf.kernels": list(fastdaf.kernels.__path__),
    "daf_head": fastdaf.kernels.daf_head.__file__,
}))
"""


def run_probe(cwd: Path, pythonpath: Path | None, *argv: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}  # as a user runs it
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    done = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_checkout_on_sys_path_does_not_shadow_an_installed_kernels_package(tmp_path):
    site = make_stand_in_kernels(tmp_path, kernels_window())
    seen = run_probe(REPO, site, "-c", PROBE)  # `python -c` puts the current folder, the checkout, first
    assert seen["stand_in"] and Path(seen["kernels"]).parent == site / "kernels", seen
    assert seen["kernels_available"] and seen["model_ran"], seen
    assert seen["fastdaf.kernels"] == [str(REPO / "kernels")], seen


def test_pytest_from_the_checkout_sees_the_installed_kernels_package(tmp_path):
    """`python -m pytest` from the checkout (the README's command) with a `kernels` distribution installed."""
    site = make_stand_in_kernels(tmp_path, kernels_window())
    case = tmp_path / "case"
    case.mkdir()
    (case / "test_probe.py").write_text(
        f"import json, os, subprocess, sys\ndef test_probe():\n    exec(compile({PROBE!r}, 'probe', 'exec'), {{}})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--rootdir", str(case), str(case)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seen = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert seen["stand_in"] and seen["kernels_available"] and seen["model_ran"], seen


def _scripts() -> list[Path]:
    found = sorted((REPO / "benchmarks").glob("*.py")) + sorted((REPO / "scripts").glob("*.py"))
    return [p for p in found if 'if __name__ == "__main__"' in p.read_text()]


@pytest.mark.parametrize("script", _scripts(), ids=lambda p: p.name)
def test_every_script_leaves_an_installed_kernels_package_visible(tmp_path, script):
    """Each script's own imports and sys.path changes (gpu_check.py puts the checkout first) run, then the probe."""
    site = make_stand_in_kernels(tmp_path, kernels_window())
    runner = (
        "import runpy, sys\n"
        f"sys.argv = [{str(script)!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(script)!r}, run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (None, 0), exc.code\n" + PROBE
    )
    seen = run_probe(REPO, site, "-c", runner)
    assert seen["stand_in"] and seen["model_ran"], seen
    assert seen["fastdaf.kernels"] == [str(REPO / "kernels")], seen


def test_fastdaf_kernels_come_from_the_tree_whose_fastdaf_was_imported(tmp_path):
    """A second tree (a copy, as a git worktree would be) beside the installed one: its own kernels run."""
    tree = tmp_path / "second-tree"
    for part in ("fastdaf", "kernels"):
        shutil.copytree(REPO / part, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tree / "pyproject.toml")
    seen = run_probe(tree, None, "-c", PROBE)
    assert Path(seen["fastdaf"]).parent == tree / "fastdaf", seen
    assert seen["fastdaf.kernels"] == [str(tree / "kernels")], seen
    assert Path(seen["daf_head"]).parent == tree / "kernels", seen
