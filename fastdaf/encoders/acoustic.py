"""The built-in acoustic encoder: prosodic/spectral utterance features (`fastdaf.audio.acoustic`), no weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..audio.acoustic import FEATURE_DIM, FEATURE_NAMES, SAMPLE_RATE, acoustic_features_and_speech
from ..audio.pitch import speech_reason
from ..choices import DEFAULT_ENCODER_BACKEND
from .base import Encoded, pick_device
from .runners import Buckets, InputSpec, make_runner

ACOUSTIC_BUCKETS_S = (1, 2, 4, 8, 16, 32, 64)  # seconds per clip; a batch is padded up to the next one
ACOUSTIC_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def acoustic_buckets() -> Buckets:
    """The padded shapes a bucketed backend prepares for the built-in features; fastdaf-bench times these."""
    return Buckets(batch=ACOUSTIC_BATCH_BUCKETS, length=tuple(s * SAMPLE_RATE for s in ACOUSTIC_BUCKETS_S))


class AcousticCore(torch.nn.Module):
    """Padded 16 kHz waveforms + lengths -> the built-in utterance vectors, with each clip's speech and voiced
    frame counts from the same pitch track (no host synchronisation)."""

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return acoustic_features_and_speech(waveforms, lengths, check=False)


class AcousticEncoder:
    """The built-in prosodic/spectral utterance features (see fastdaf.audio.acoustic), no weights."""

    modality = "audio"
    takes_waveforms = True
    # speech is judged from the pitch track the features compute (Encoded.absent), not by the extractor's own
    # no_speech_reason beforehand: one pitch track per clip
    judges_speech = True

    def __init__(
        self,
        *,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        backend: str = DEFAULT_ENCODER_BACKEND,
    ) -> None:
        self.device = pick_device(device)
        self.sampling_rate, self.dim, self.feature_names = SAMPLE_RATE, FEATURE_DIM, FEATURE_NAMES
        # measured on the 2-core CPU: 64 MOSEI-length clips took 4.9 s unsorted in batches of 32,
        # 1.9 s sorted in 16s, 1.6 s sorted in 8s; a GPU wants large batches
        self.batch_size = batch_size or (64 if self.device.type == "cuda" else 8)
        # the features ignore samples past each clip's length (tested), so bucketed backends are exact;
        # padded rows get the padded length (silence), which keeps them finite
        specs = {"waveforms": InputSpec(pad=0.0), "lengths": InputSpec(has_length=False, length_pad="size")}
        buckets = acoustic_buckets()
        example = {
            "waveforms": torch.zeros(1, self.sampling_rate, device=self.device),
            "lengths": torch.tensor([self.sampling_rate], device=self.device),
        }
        self.backend = backend
        self.core = AcousticCore()
        outputs = ("features", "speech_frames", "voiced_frames")
        # fmt: off
        self.runner = make_runner(self.core, backend, self.device,
                                  specs=specs, example=example, output_names=outputs, buckets=buckets,
                                  dtype=torch.float32, exportable=False)
        # fmt: on

    def spec(self) -> dict[str, Any]:
        return {"kind": "acoustic", "dim": self.dim}

    def encode(self, waves: Sequence[torch.Tensor]) -> Encoded:
        """Clips are batched by similar length (the features do not depend on padding, but the cost
        does: a batch is padded to its longest clip), then put back in input order."""
        order = sorted(range(len(waves)), key=lambda i: waves[i].numel())
        out = torch.empty(len(waves), self.dim)
        counts = torch.zeros(len(waves), 2, dtype=torch.long)  # speech frames, voiced frames
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                clips = [torch.as_tensor(waves[i]).reshape(-1).float() for i in idx]
                lengths = torch.tensor([c.numel() for c in clips])
                padded = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
                features, speech, voiced = self.runner(
                    {"waveforms": padded.to(self.device), "lengths": lengths.to(self.device)}
                )
                out[idx] = features.float().cpu()
                counts[idx] = torch.stack([speech, voiced], dim=-1).cpu()
        absent = [speech_reason(int(speech), int(voiced)) for speech, voiced in counts.tolist()]
        return Encoded(out, [None] * len(waves), absent=absent)
