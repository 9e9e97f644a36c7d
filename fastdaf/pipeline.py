"""Prediction: utterances in, sentiment out. `fastdaf.predict` for one-liners, `SentimentPredictor`
for services (load once, call from many threads).

A predictor loads a head checkpoint (default: the bundled model) and the encoders recorded in it,
turns utterances into features with the same `FeatureExtractor` as training, and runs the head: the
fused Triton head on CUDA, the reference head elsewhere. Scores are on the CMU-MOSEI scale, clipped
to [-3, 3] (the head itself is unbounded; see fastdaf.head).

Labels (documented thresholds, the rounding MMSA's Mult_acc metrics use): `negative` if score <= -0.5,
`positive` if score >= 0.5, `neutral` in between.

Audio without speech (fastdaf.audio.pitch.no_speech_reason) and text empty after normalisation count as
absent, with a note in `Prediction.notes`; an utterance left with nothing to encode, or with text that
is not valid Unicode, raises InputError (per row in `predict_each`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .audio.loading import AudioInput
from .checkpoint import encoder_specs, read_config
from .choices import DEFAULT_ENCODER_BACKEND, DEFAULT_HEAD, HEADS
from .config import DAFConfig
from .default_model import resolve as resolve_checkpoint
from .encoders import pick_device
from .errors import InputError, NonFiniteScoreError, UnsupportedError
from .extractor import FeatureExtractor
from .fused import FusedDAFHead, unsupported_reason
from .head import DAFHead
from .records import result_record

logger = logging.getLogger(__name__)

NEUTRAL_BAND = 0.5
SCORE_RANGE = (-3.0, 3.0)


def sentiment_label(score: float) -> str:
    if score >= NEUTRAL_BAND:
        return "positive"
    if score <= -NEUTRAL_BAND:
        return "negative"
    return "neutral"


@dataclasses.dataclass
class Prediction:
    """One utterance's result: CMU-MOSEI score, label, modality weights, extra outputs, notes."""

    score: float
    label: str
    weights: dict[str, float]
    outputs: dict[str, float] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON; `outputs` only when the model has outputs beyond the sentiment score."""
        record = dataclasses.asdict(self)
        if not self.outputs:
            del record["outputs"]
        return record


class SentimentPredictor:
    """Encoders + head loaded once; safe to call from several threads (calls are serialised)."""

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        head_backend: str = DEFAULT_HEAD,
        batch_size: int = 32,
        text_encoder: str | dict | None = None,
        audio_encoder: str | dict | None = None,
        backend: str = DEFAULT_ENCODER_BACKEND,
    ) -> None:
        if head_backend not in HEADS:
            raise InputError(f"head_backend {head_backend!r} is not accepted; choose one of {list(HEADS)}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.device = pick_device(device)
        _, extra = read_config(self.checkpoint)
        encoders = encoder_specs(self.checkpoint, extra)
        if text_encoder is not None:
            encoders["text"] = text_encoder
        if audio_encoder is not None:
            encoders["audio"] = audio_encoder
        self.head = DAFHead.from_pretrained(self.checkpoint, map_location=self.device)
        modalities = dict(self.head.config.modalities)
        if not encoders:
            raise InputError(f"{self.checkpoint} records no encoders; pass text_encoder= and/or audio_encoder=")
        unknown = sorted(set(encoders) - set(modalities))
        if unknown or not set(encoders) <= {"text", "audio"}:
            raise InputError(
                f"encoders {sorted(encoders)} do not match the head's modalities {sorted(modalities)} (text and "
                "audio are supported)"
            )
        # backend "auto" picks TensorRT / CUDA graphs on CUDA where an encoder's features do not depend on padding,
        # else eager
        self.extractor = FeatureExtractor(
            encoders.get("text"), encoders.get("audio"), device=self.device, dtype=dtype, backend=backend
        )
        for m, dim in self.extractor.modalities.items():
            if modalities.get(m) != dim:
                raise InputError(f"the {m} encoder gives {dim}-d vectors but the head expects {modalities.get(m)}")
        self.batch_size = batch_size
        self.head_backend = self._choose_backend(head_backend)
        self.model = self.head
        if self.head_backend == "fused":
            self.model = FusedDAFHead.from_head(self.head)
        self._lock = threading.Lock()

    def _choose_backend(self, wanted: str) -> str:
        return choose_head(wanted, self.head.config, self.device)

    @property
    def modalities(self) -> list[str]:
        return list(self.head.config.modalities)

    @property
    def output_names(self) -> list[str]:
        """The model's outputs beyond the sentiment score (none for the bundled model)."""
        return list(self.head.config.output_names[1:])

    def record(self, result: Prediction | str, row_id: str | None = None) -> dict[str, Any]:
        """`fastdaf.records.result_record` for this model: the output record of `fastdaf predict`."""
        return result_record(result, modalities=self.modalities, output_names=self.output_names, row_id=row_id)

    def predict(
        self,
        text: str | Sequence[str | None] | None = None,
        audio: AudioInput | Sequence[AudioInput | None] | None = None,
        *,
        sampling_rate: int | Sequence[int | None] | None = None,
    ) -> Prediction | list[Prediction]:
        """One utterance (a string and/or one audio input) -> one Prediction; lists -> a list, in order."""
        batched = isinstance(text, (list, tuple)) or (isinstance(audio, (list, tuple)))
        if not batched:
            if text is None and audio is None:
                raise InputError("predict needs text, audio or both")
            return self.predict_batch([text], [audio], [sampling_rate])[0]
        n = len(text) if isinstance(text, (list, tuple)) else len(audio)
        texts = list(text) if isinstance(text, (list, tuple)) else [text] * n if text is None else None
        audios = list(audio) if isinstance(audio, (list, tuple)) else [audio] * n if audio is None else None
        if texts is None or audios is None:
            raise InputError("for several utterances pass lists for text and audio (use None for a missing one)")
        rates = list(sampling_rate) if isinstance(sampling_rate, (list, tuple)) else [sampling_rate] * n
        return self.predict_batch(texts, audios, rates)

    def predict_batch(
        self,
        texts: Sequence[str | None],
        audios: Sequence[AudioInput | None],
        sampling_rates: Sequence[int | None] | None = None,
    ) -> list[Prediction]:
        """Predictions for N utterances in order; any bad input raises (see predict_each for per-row errors)."""
        return self._run(texts, audios, sampling_rates, strict=True)  # type: ignore[return-value]

    def predict_each(
        self,
        texts: Sequence[str | None],
        audios: Sequence[AudioInput | None],
        sampling_rates: Sequence[int | None] | None = None,
        *,
        names: Sequence[str] | None = None,
    ) -> list[Prediction | str]:
        """Like predict_batch, but a bad utterance gives its error message in its place; the rest are predicted."""
        return self._run(texts, audios, sampling_rates, strict=False, names=names)

    def _run(self, texts, audios, sampling_rates, *, strict: bool, names=None) -> list[Prediction | str]:
        if len(texts) != len(audios):
            raise InputError(f"texts ({len(texts)}) and audios ({len(audios)}) differ in length")
        if "text" not in self.extractor.modalities and any(t is not None for t in texts):
            raise InputError("this model has no text modality; pass audio only")
        if "audio" not in self.extractor.modalities and any(a is not None for a in audios):
            raise InputError("this model has no audio modality; pass text only")
        results: list[Prediction | str] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            with self._lock, torch.inference_mode():
                out = self.extractor.extract(
                    texts[chunk],
                    audios[chunk],
                    sampling_rates=None if sampling_rates is None else sampling_rates[chunk],
                    names=None if names is None else names[chunk],
                    strict=strict,
                )
                ok, features, present = out.good()
                scores = weights = None
                if ok:
                    feats = {m: x.to(self.device) for m, x in features.items()}
                    res = self.model(feats, present.to(self.device))
                    scores, weights = res.score.float().cpu(), res.weights.float().cpu()
            k_ok = 0
            for k, err in enumerate(out.errors):
                if err is not None:
                    results.append(err)
                    continue
                if not (bool(torch.isfinite(scores[k_ok]).all()) and bool(torch.isfinite(weights[k_ok]).all())):
                    # never a NaN score (nor invalid JSON): the utterance fails instead
                    where = names[start + k] if names is not None else f"utterance {start + k}"
                    bad = NonFiniteScoreError(
                        f"{where}: the model's score or modality weights are NaN or infinite "
                        f"({scores[k_ok].tolist()}, {weights[k_ok].tolist()}); its weights overflow on this input"
                    )
                    if strict:
                        raise bad
                    results.append(f"{type(bad).__name__}: {bad}")
                else:
                    results.append(self._prediction(scores[k_ok], weights[k_ok], out.notes[k]))
                k_ok += 1
        return results

    def _prediction(self, score: torch.Tensor, weights: torch.Tensor, notes: list[str]) -> Prediction:
        cfg = self.head.config
        values = score.reshape(-1).tolist()
        main = min(max(values[0], SCORE_RANGE[0]), SCORE_RANGE[1])
        return Prediction(
            score=main,
            label=sentiment_label(main),
            weights={m: float(w) for m, w in zip(cfg.modality_names, weights.tolist())},
            outputs={name: v for name, v in zip(cfg.output_names[1:], values[1:])},
            notes=list(notes),
        )


_FALLBACKS_LOGGED: set[str] = set()


def choose_head(wanted: str, config: DAFConfig, device: torch.device) -> str:
    """The head backend for `wanted` (choices.HEADS): auto takes the fused head on CUDA when it supports this head
    (fastdaf.fused.unsupported_reason), else the reference head, saying why once; fused asked for raises the
    reason."""
    if wanted not in HEADS:
        raise InputError(f"head_backend {wanted!r} is not accepted; choose one of {list(HEADS)}")
    if wanted == "reference":
        return wanted
    reason = unsupported_reason(config, device)
    if wanted == "fused":
        if reason is not None:
            raise UnsupportedError(reason)
        return wanted
    if device.type != "cuda":
        return "reference"
    if reason is not None:
        if reason not in _FALLBACKS_LOGGED:
            _FALLBACKS_LOGGED.add(reason)
            logger.warning("fastdaf: the reference head runs instead of the fused one: %s", reason)
        return "reference"
    return "fused"


def score_options(predictor: SentimentPredictor, encoder_backend: str) -> dict[str, Any]:
    """The options of a run that change its scores (in the last digits or more): recorded with its outputs."""
    return {
        "head": predictor.head_backend,
        "encoder_backend": encoder_backend,
        "device": str(predictor.device),
        "batch_size": predictor.batch_size,
    }


_DEFAULT: dict[tuple, SentimentPredictor] = {}
_DEFAULT_LOCK = threading.Lock()


def default_predictor(model: str | Path | None = None, device: str | torch.device | None = None) -> SentimentPredictor:
    """A cached predictor per (model, device): loading happens once per process."""
    key = (str(model) if model is not None else None, str(device) if device is not None else None)
    with _DEFAULT_LOCK:
        if key not in _DEFAULT:
            _DEFAULT[key] = SentimentPredictor(model, device=device)
        return _DEFAULT[key]


def predict(
    text: str | Sequence[str | None] | None = None,
    audio: AudioInput | Sequence[AudioInput | None] | None = None,
    *,
    sampling_rate: int | Sequence[int | None] | None = None,
    model: str | Path | None = None,
    device: str | torch.device | None = None,
) -> Prediction | list[Prediction]:
    """Sentiment of one utterance (or lists of them) with the bundled model, offline, in one line.

    >>> fastdaf.predict("I love this!", "clip.wav").score
    """
    return default_predictor(model, device).predict(text, audio, sampling_rate=sampling_rate)
