"""Checks every reader makes of the arrays it reads, written once."""

from __future__ import annotations

import numpy as np


def first_bad_row(ok: np.ndarray) -> int | None:
    """The first row (along axis 0) where `ok` is False anywhere, or None when all is well: errors name it."""
    bad = np.argwhere(~np.asarray(ok, dtype=bool))
    return int(bad[0, 0]) if bad.size else None


def first_nonfinite_row(values: np.ndarray) -> int | None:
    """The first row holding NaN or an infinity, or None."""
    return first_bad_row(np.isfinite(values))
