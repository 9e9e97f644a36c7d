"""Talking to a served fastdaf model: `TritonClient` for one call, `run_load` for `fastdaf-bench serve`.

Works with `fastdaf serve` and with any Triton server running an `export-triton` repository; needs
`tritonclient` (installed with nvidia-pytriton: `pip install 'fastdaf[serve]'`). The protocol is
documented in fastdaf/serving.py.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..audio.loading import load_audio
from ..errors import FastDAFError, InputError
from ..examples import ARCTIC_PROMPTS, EXAMPLE_CLIP
from .repository import MODEL_NAME

PROTOCOLS = ("http", "grpc")


class ServerError(FastDAFError):
    """The server answered a request with an error (its message says why), or could not be reached."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


def _tritonclient(protocol: str):
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol {protocol!r} is not accepted; choose one of {list(PROTOCOLS)}")
    try:
        if protocol == "http":
            import tritonclient.http as module  # noqa: PLC0415 - serve extra, per protocol
        else:
            import tritonclient.grpc as module  # noqa: PLC0415 - serve extra, per protocol
    except ImportError as exc:
        raise FastDAFError(
            f"tritonclient is not importable ({exc}); install it with: pip install 'fastdaf[serve]'"
        ) from None
    return module


def build_inputs(
    module: Any,
    text: str | bytes | None,
    audio: np.ndarray | None,
    sampling_rate: int | None,
    *,
    mark_absent: Sequence[str] = (),
    audio_dtype: str = "FP32",
) -> list:
    """One utterance as Triton inputs (batch of 1).

    `mark_absent`: modalities to send even when missing, marked absent (text "", audio of 0 samples
    at sampling_rate 0), so that Triton can batch this request with any other (fastdaf/serving.py).
    `audio_dtype` other than FP32 only to test the server's checks.
    """
    if text is None and "text" in mark_absent and audio is not None:
        text = ""
    if audio is None and sampling_rate is None and "audio" in mark_absent and text:
        audio, sampling_rate = np.zeros(0, dtype=np.float32), 0
    inputs = []
    if text is not None:
        value = np.array([[text.encode() if isinstance(text, str) else text]], dtype=object)
        inputs.append(module.InferInput("text", list(value.shape), "BYTES"))
        inputs[-1].set_data_from_numpy(value)
    if audio is not None:
        samples = np.asarray(audio)[None]
        inputs.append(module.InferInput("audio", list(samples.shape), audio_dtype))
        inputs[-1].set_data_from_numpy(samples)
    if sampling_rate is not None:
        rate = np.array([[sampling_rate]], dtype=np.int32)
        inputs.append(module.InferInput("sampling_rate", [1, 1], "INT32"))
        inputs[-1].set_data_from_numpy(rate)
    return inputs


class TritonClient:
    """predict() on a served fastdaf model; plain dicts back, ServerError with the server's message on failure."""

    def __init__(
        self,
        url: str = "127.0.0.1:8000",
        *,
        protocol: str = "http",
        model: str = MODEL_NAME,
        timeout_s: float = 60.0,
        mark_absent: bool = True,
    ) -> None:
        self.module = _tritonclient(protocol)
        self.protocol, self.model = protocol, model
        url = url.removeprefix("http://").removeprefix("https://")
        self.url = url
        if protocol == "http":
            self.client = self.module.InferenceServerClient(
                url, connection_timeout=timeout_s, network_timeout=timeout_s
            )
        else:
            self.client = self.module.InferenceServerClient(url)
        self.timeout_s = timeout_s
        self.mark_absent = mark_absent  # send every input, missing ones marked absent: batches with any other request
        self._parameters: dict[str, str] | None = None

    def _as_json(self, method: str) -> dict[str, Any]:
        # the HTTP client answers JSON already; the gRPC one answers protobuf unless asked for JSON
        call = getattr(self.client, method)
        return call(self.model, as_json=True) if self.protocol == "grpc" else call(self.model)

    def parameters(self) -> dict[str, str]:
        """The served model's config parameters (weights_order, max_audio_seconds), read once."""
        if self._parameters is None:
            try:
                config = self._as_json("get_model_config")
            except Exception as exc:  # noqa: BLE001 - any failure means no such model answers; said so
                raise ServerError(f"no fastdaf model {self.model!r} answers at {self.url} ({exc})") from None
            config = config.get("config", config)  # gRPC wraps the config in a response
            self._parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        return self._parameters

    def statistics(self) -> dict[str, int]:
        """Cumulative counts from Triton's model statistics: requests, executions (batches), and their ns."""
        model = self._as_json("get_inference_statistics")["model_stats"][0]
        infer = model.get("inference_stats", {})
        return {
            "requests": int(model.get("inference_count", 0)),
            "executions": int(model.get("execution_count", 0)),
            "queue_ns": int(infer.get("queue", {}).get("ns", 0)),
            "compute_ns": int(infer.get("compute_infer", {}).get("ns", 0)),
        }

    def weights_order(self) -> list[str]:
        """The modality order of the `weights` output."""
        return self.parameters()["weights_order"].split(",")

    def predict(
        self,
        text: str | bytes | None = None,
        audio: np.ndarray | None = None,
        sampling_rate: int | None = None,
        *,
        audio_dtype: str = "FP32",
    ) -> dict[str, Any]:
        """{"score", "label", "weights": {modality: weight}, "notes": [str]} for one utterance, as `fastdaf.predict`
        gives."""
        order = self.weights_order()
        inputs = build_inputs(
            self.module,
            text,
            audio,
            sampling_rate,
            audio_dtype=audio_dtype,
            mark_absent=order if self.mark_absent else (),
        )
        try:
            if self.protocol == "http":
                result = self.client.infer(self.model, inputs, timeout=int(self.timeout_s * 1e6))
            else:
                result = self.client.infer(self.model, inputs, client_timeout=self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - tritonclient raises InferenceServerException and transport errors
            status = exc.status() if hasattr(exc, "status") else None
            message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
            raise ServerError(
                message or type(exc).__name__, status=str(status) if status is not None else type(exc).__name__
            ) from None
        weights = result.as_numpy("weights")[0]
        notes = result.as_numpy("notes")  # None from a repository exported before `notes` existed
        return {
            "score": float(result.as_numpy("score")[0, 0]),
            "label": result.as_numpy("label")[0, 0].decode(),
            "weights": {m: float(w) for m, w in zip(order, weights)},
            "notes": json.loads(notes[0, 0]) if notes is not None else [],
        }

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> TritonClient:  # not typing.Self: it needs Python 3.11; fastdaf supports 3.10
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# ---------------------------------------------------------------- load generation

# which inputs the good requests carry: "mixed" cycles text only, audio only, both (Triton's dynamic
# batcher batches only requests with the same set of inputs, so mixed traffic is batched little)
MIXES = ("mixed", "text+audio", "text", "audio")
BAD_KINDS = ("missing", "empty_text", "wrong_type", "nan_audio", "oversized_audio", "bad_utf8", "no_rate")


@dataclasses.dataclass
class LoadRequest:
    id: int
    kind: str  # "good" or one of BAD_KINDS
    text: str | bytes | None = None
    audio: np.ndarray | None = None
    sampling_rate: int | None = None
    audio_dtype: str = "FP32"


_CLIP: tuple[np.ndarray, int] | None = None


def _clip() -> tuple[np.ndarray, int]:
    global _CLIP
    if _CLIP is None:
        wave = load_audio(EXAMPLE_CLIP)
        _CLIP = (wave.samples.numpy().astype(np.float32), wave.sampling_rate)
    return _CLIP


def load_request(i: int, *, bad_every: int = 0, max_audio_seconds: float = 60.0, mix: str = "mixed") -> LoadRequest:
    """Request number i of the load: a distinct real utterance (the bundled clip, cut differently; the
    ARCTIC prompts, worded differently), or with bad_every=K, every K-th one a bad request of each kind in turn.
    Deterministic, so a test can rebuild request i and predict it in process."""

    clip, rate = _clip()
    if bad_every and i % bad_every == bad_every - 1:
        kind = BAD_KINDS[(i // bad_every) % len(BAD_KINDS)]
        return {
            "missing": LoadRequest(i, kind),
            "empty_text": LoadRequest(i, kind, text=""),
            "wrong_type": LoadRequest(i, kind, audio=clip.astype(np.float64), sampling_rate=rate, audio_dtype="FP64"),
            "nan_audio": LoadRequest(i, kind, audio=np.full(rate, np.nan, np.float32), sampling_rate=rate),
            "oversized_audio": LoadRequest(
                i, kind, audio=np.zeros(int(rate * (max_audio_seconds + 1)), np.float32), sampling_rate=rate
            ),
            "bad_utf8": LoadRequest(i, kind, text=b"\xff\xfe not utf-8"),
            "no_rate": LoadRequest(i, kind, audio=clip),
        }[kind]
    prompts = list(ARCTIC_PROMPTS.values())
    text = f"{prompts[i % len(prompts)]} (take {i})"
    start = (i * 997) % (len(clip) // 4)
    length = len(clip) // 2 + (i * 7919) % (len(clip) // 2 - start)
    audio = clip[start : start + length]
    if mix not in MIXES:
        raise InputError(f"mix {mix!r} is not accepted; choose one of {list(MIXES)}")
    which = i % 3 if mix == "mixed" else {"text": 0, "audio": 1, "text+audio": 2}[mix]
    return LoadRequest(
        i,
        "good",
        text=text if which != 1 else None,
        audio=audio if which != 0 else None,
        sampling_rate=rate if which != 0 else None,
    )


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def _statistics(client: TritonClient) -> dict[str, int] | None:
    try:
        return client.statistics()
    except Exception:  # noqa: BLE001 - a server that guards its statistics endpoint
        return None


def run_load(
    url: str,
    n_requests: int,
    *,
    concurrency: int = 32,
    protocol: str = "http",
    bad_every: int = 0,
    mix: str = "mixed",
    mark_absent: bool = False,
    timeout_s: float = 120.0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send n_requests from `concurrency` clients (one connection each); returns (summary, one record per request)."""
    if n_requests < 1 or concurrency < 1:
        raise InputError(f"n_requests and concurrency must be >= 1, got {n_requests} and {concurrency}")
    # fail fast, before the clock starts, if nothing serves there
    probe = TritonClient(url, protocol=protocol)
    limit = float(probe.parameters().get("max_audio_seconds", 60.0))
    before = _statistics(probe)
    requests = [load_request(i, bad_every=bad_every, max_audio_seconds=limit, mix=mix) for i in range(n_requests)]
    todo: queue.Queue[LoadRequest] = queue.Queue()
    for r in requests:
        todo.put(r)
    records: list[dict[str, Any]] = []
    lock = threading.Lock()

    def worker() -> None:
        with TritonClient(url, protocol=protocol, timeout_s=timeout_s, mark_absent=mark_absent) as client:
            while True:
                try:
                    r = todo.get_nowait()
                except queue.Empty:
                    return
                record: dict[str, Any] = {"id": r.id, "kind": r.kind, "sent_at": time.time()}
                t0 = time.perf_counter()
                try:
                    record.update(
                        ok=True, **client.predict(r.text, r.audio, r.sampling_rate, audio_dtype=r.audio_dtype)
                    )
                except ServerError as exc:
                    record.update(ok=False, error=str(exc), status=exc.status)
                record["latency_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
                record["done_at"] = time.time()
                with lock:
                    records.append(record)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    records.sort(key=lambda rec: rec["id"])
    after = _statistics(probe)
    probe.close()
    good = [rec["latency_ms"] for rec in records if rec["kind"] == "good" and rec["ok"]]
    summary = {
        "url": url,
        "protocol": protocol,
        "mix": mix,
        "mark_absent": mark_absent,
        "requests": n_requests,
        "concurrency": concurrency,
        "succeeded": sum(rec["ok"] for rec in records),
        "failed": sum(not rec["ok"] for rec in records),
        "bad_requests_sent": sum(rec["kind"] != "good" for rec in records),
        "seconds": round(seconds, 3),
        "requests_per_s": round(n_requests / seconds, 2),
        "latency_ms_good": {"p50": _percentile(good, 50), "p90": _percentile(good, 90), "p99": _percentile(good, 99)},
    }
    if before and after and after["executions"] > before["executions"]:  # other clients' traffic would count too
        summary["server_mean_batch"] = round(
            (after["requests"] - before["requests"]) / (after["executions"] - before["executions"]), 2
        )
    return summary, records
