"""Make `fastdaf.kernels` importable from a plain checkout; imported first by fastdaf/__init__.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _register_checkout_kernels() -> None:
    """Make `fastdaf.kernels` importable from a plain checkout (repo root on sys.path, no install).

    An install maps the top-level kernels/ folder to `fastdaf.kernels` (pyproject.toml); a bare GPU
    machine runs benchmarks/gpu_check.py from a checkout without installing. Only when nothing else
    provides `fastdaf.kernels` and kernels/__init__.py sits beside this package is that folder
    registered as the subpackage.
    """
    name = __package__ + ".kernels"
    if importlib.util.find_spec(name) is not None:
        return
    folder = Path(__file__).resolve().parent.parent / "kernels"
    if not (folder / "__init__.py").is_file():
        return
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_register_checkout_kernels()
