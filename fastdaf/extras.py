"""Optional packages, imported when a feature needs them: one place that knows which extra installs which.

The core install carries what `fastdaf predict` and the served model need. Plots (`fastdaf ablate`, `eval --plot`,
`fastdaf-bench plot`) need `fastdaf[plot]` (matplotlib); CMU-MultimodalSDK `.csd` folders need `fastdaf[data]`
(h5py); `fastdaf serve` needs `fastdaf[serve]`; `fastdaf predict --engine ray` needs `fastdaf[ray]`
(Ray Data and pyarrow).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError

EXTRAS = {"matplotlib": "plot", "h5py": "data", "ray": "ray", "pyarrow": "ray"}


def require(module: str, what: str) -> ModuleType:
    """`module`, or a MissingExtraError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(what, EXTRAS[module.split(".")[0]]) from exc


def pyplot(what: str = "plots") -> ModuleType:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    require("matplotlib", what).use("Agg")
    return importlib.import_module("matplotlib.pyplot")
