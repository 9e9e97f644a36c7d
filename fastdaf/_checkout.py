"""`fastdaf.kernels` is the kernels/ folder of the tree this package came from; imported first by __init__.py.

An installed wheel carries the kernels inside the package (fastdaf/kernels/, mapped in pyproject.toml), and the
import system finds them there. In a checkout (a plain tree on sys.path as on the GPU machine, an editable install,
or a second tree such as a git worktree beside an installed one) the kernels sit in kernels/ beside fastdaf/: that
folder is registered as `fastdaf.kernels` before anything imports it, whatever else is installed, so the kernel
that runs and is compile-checked is always this tree's own.

kernels/ has no __init__.py on purpose. With one it would be a regular top-level package `kernels` wherever the
checkout is on sys.path (`python -m pytest`, `python -c`, benchmarks/gpu_check.py), and would shadow Hugging Face's
`kernels` distribution, which transformers imports. Without one, an installed `kernels` always wins.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path


def _register_checkout_kernels() -> None:
    name = __package__ + ".kernels"
    package = Path(__file__).resolve().parent
    folder = package.parent / "kernels"
    if (package / "kernels").is_dir() or not (folder / "daf_head.py").is_file():
        return  # an installed package (or no kernels at all: importing them then fails as usual)
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    module = importlib.util.module_from_spec(spec)
    module.__doc__ = "Triton kernels of fastdaf: the checkout's kernels/ folder (see fastdaf/_checkout.py)."
    sys.modules[name] = module
    setattr(sys.modules[__package__], "kernels", module)  # as the import system does for a submodule it loads


_register_checkout_kernels()
