"""The wire protocol of the served model: request tensors -> utterances, predictions -> response tensors.

Protocol (batch dimension first, as Triton does; every input optional as in `fastdaf.predict`):
- inputs `text` BYTES [1] (UTF-8), `audio` FP32 [-1] (mono samples), `sampling_rate` INT32 [1]
  (Hz, required with `audio`). A request may hold several rows; all its audio rows share a length.
- outputs `score` FP32 [1] (CMU-MOSEI scale, clipped to [-3, 3]), `label` BYTES [1]
  (negative/neutral/positive), `weights` FP32 [M]: the modality weights in the order of the
  checkpoint's modalities (the bundled model: text, audio), also recorded in the config's
  `weights_order` parameter; `notes` BYTES [1]: the row's `Prediction.notes` as a JSON list of
  strings (`[]` when there are none; e.g. audio without speech that was treated as absent).
  Clients may ignore `notes`; a repository exported before it existed simply does not send it.
- A request with any bad row fails as a whole (one request, one response); other requests do not.

Batching mixed traffic (ABSENT): Triton's dynamic batcher puts in one batch only requests that carry
the same set of inputs, taken in arrival order, so text-only, audio-only and text+audio requests
interleaved are executed one at a time. A client may instead send every input on every request and
mark a missing modality: text `""` (as `fastdaf.predict`, empty text counts as absent when audio is
given) and audio of 0 samples with `sampling_rate` 0. Such requests all batch together; the answers
are the same. `fastdaf.serving.client.TritonClient` does this by default.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError

DEFAULT_MAX_AUDIO_SECONDS = 60.0  # per row; ServeOptions.max_audio_seconds

MAX_TEXT_CHARS = 20_000
INPUTS = ("text", "audio", "sampling_rate")


@dataclasses.dataclass
class Utterance:
    text: str | None
    audio: np.ndarray | None
    sampling_rate: int | None
    row: int = 0  # within its request


def decode_request(
    inputs: Mapping[str, np.ndarray | None], *, max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS
) -> list[Utterance]:
    """One Triton request's tensors (batch dimension first) -> its utterances, or InputError saying what is wrong.

    Checks the structure and sizes the server must refuse before any work; what `fastdaf.predict`
    checks (NaN samples, rates, durations, empty text) is left to it, so both give the same answers.
    """
    unknown = sorted(set(inputs) - set(INPUTS))
    if unknown:
        raise InputError(f"unknown inputs {unknown}; accepted: {list(INPUTS)}")
    text, audio, rate = (inputs.get(k) for k in INPUTS)
    if text is None and audio is None:
        raise InputError("the request has neither `text` nor `audio`; send one or both")
    given = {k: v for k, v in zip(INPUTS, (text, audio, rate)) if v is not None}
    for key, value in given.items():
        if value.ndim != 2:
            raise InputError(
                f"`{key}` has shape {list(value.shape)}; expected [batch, {'samples' if key == 'audio' else 1}]"
            )
    rows = {k: v.shape[0] for k, v in given.items()}
    if len(set(rows.values())) > 1:
        raise InputError(f"the inputs disagree on the batch size: {rows}")
    n = next(iter(rows.values()))
    if n == 0:
        raise InputError("the request holds 0 rows")
    texts: list[str | None] = [None] * n
    if text is not None:
        if text.shape[1] != 1 or text.dtype != object:
            raise InputError(f"`text` must be BYTES of shape [batch, 1], got {text.dtype} {list(text.shape)}")
        for i, value in enumerate(text[:, 0]):
            raw = value if isinstance(value, bytes) else str(value).encode()
            try:
                decoded = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"`text` row {i} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if len(decoded) > MAX_TEXT_CHARS:
                raise InputError(f"`text` row {i} has {len(decoded)} characters; at most {MAX_TEXT_CHARS} are accepted")
            texts[i] = decoded
    audios: list[np.ndarray | None] = [None] * n
    rates: list[int | None] = [None] * n
    if audio is not None:
        if audio.dtype != np.float32:
            raise InputError(f"`audio` must be FP32 samples, got {audio.dtype}")
        if rate is None:
            raise InputError("`audio` needs `sampling_rate` (INT32 [batch, 1], in Hz)")
        if rate.shape[1] != 1 or rate.dtype != np.int32:
            raise InputError(f"`sampling_rate` must be INT32 of shape [batch, 1], got {rate.dtype} {list(rate.shape)}")
        for i in range(n):
            sr = int(rate[i, 0])
            if audio.shape[1] == 0 and sr == 0:
                continue  # audio marked absent: lets a client send every input on every request (see ABSENT)
            if sr > 0 and audio.shape[1] > max_audio_seconds * sr:
                raise InputError(
                    f"`audio` row {i} holds {audio.shape[1] / sr:.1f} s at {sr} Hz; this server accepts at most "
                    f"{max_audio_seconds:g} s"
                )
            audios[i], rates[i] = audio[i], sr
    elif rate is not None:
        raise InputError("`sampling_rate` was sent without `audio`")
    return [Utterance(t, a, r, row) for row, (t, a, r) in enumerate(zip(texts, audios, rates))]


def encode_results(predictions: Sequence[Any], modalities: Sequence[str]) -> dict[str, np.ndarray]:
    """Predictions of one request -> its output tensors (batch dimension first)."""
    return {
        "score": np.array([[p.score] for p in predictions], dtype=np.float32),
        "label": np.array([[p.label.encode()] for p in predictions], dtype=object),
        "weights": np.array([[p.weights[m] for m in modalities] for p in predictions], dtype=np.float32).reshape(
            len(predictions), len(modalities)
        ),
        "notes": np.array([[json.dumps(list(p.notes)).encode()] for p in predictions], dtype=object),
    }


def answer_requests(
    predictor: Any, requests: Sequence[Mapping[str, np.ndarray | None]], *, max_audio_seconds: float
) -> list[dict[str, np.ndarray] | str]:
    """Outputs or an error message per request; the good requests are predicted in one batch.

    Never raises: an unexpected failure of the batch is retried request by request, so it stays
    with the request that caused it.
    """
    decoded: list[list[Utterance] | str] = []
    for inputs in requests:
        try:
            decoded.append(decode_request(inputs, max_audio_seconds=max_audio_seconds))
        except InputError as exc:
            decoded.append(str(exc))
    good = [d for d in decoded if not isinstance(d, str)]
    try:
        flat = _predict(predictor, [u for rows in good for u in rows])
        per_request, k = [], 0
        for rows in good:
            per_request.append(flat[k : k + len(rows)])
            k += len(rows)
    except Exception:  # noqa: BLE001 - isolate the failure to its request
        per_request = []
        for rows in good:
            try:
                per_request.append(_predict(predictor, rows))
            except Exception as exc:  # noqa: BLE001 - the request's answer says what failed
                per_request.append([f"internal error: {type(exc).__name__}: {exc}"] * len(rows))
    answers: list[dict[str, np.ndarray] | str] = []
    results = iter(per_request)
    for d in decoded:
        if isinstance(d, str):
            answers.append(d)
            continue
        mine = next(results)
        problems = [
            r if f"row {i}:" in r or len(mine) == 1 else f"row {i}: {r}"
            for i, r in enumerate(mine)
            if isinstance(r, str)
        ]
        answers.append("; ".join(problems) if problems else encode_results(mine, predictor.modalities))
    return answers


def _predict(predictor: Any, utterances: Sequence[Utterance]) -> list:
    if not utterances:
        return []
    # messages name the row within its own request, not within the server's batch
    return predictor.predict_each(
        [u.text for u in utterances],
        [u.audio for u in utterances],
        [u.sampling_rate for u in utterances],
        names=[f"row {u.row}" for u in utterances],
    )
