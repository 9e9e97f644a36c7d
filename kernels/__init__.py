"""Triton kernels of fastdaf, installed as `fastdaf.kernels` (the folder is mapped in pyproject.toml)."""
