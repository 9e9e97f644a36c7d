"""The input dtypes fastdaf takes and the names it writes them by (fp32, fp16, bf16), defined once: the CLI,
the encoders, the fused head, the benchmarks and their rows all use these."""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# also accepted where a dtype is given by name (torch's own names)
ALIASES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
DTYPE_NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}


def dtype_name(dtype: torch.dtype) -> str:
    """fp32/fp16/bf16, or torch's own name for any other dtype (float64, ...)."""
    return DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))
