"""Compatibility: the client's old import path (README of 0.1), kept so existing scripts run. It lives in
`fastdaf.serving.client`."""

from .serving.client import PROTOCOLS, ServerError, TritonClient, load_request, run_load

__all__ = ["PROTOCOLS", "ServerError", "TritonClient", "load_request", "run_load"]
