"""Speech: self-supervised speech models from transformers (wav2vec2, HuBERT, WavLM, the Whisper encoder)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..choices import DEFAULT_ENCODER_BACKEND
from ..errors import EncoderError
from .base import Encoded, combine_windows, load_pretrained, pick_device, pick_dtype
from .runners import Buckets, InputSpec, make_runner

SPEECH_WINDOW_BUCKETS_S = (1, 2, 4, 8, 16)  # seconds of audio per window; a batch is padded up to the next one
SPEECH_BATCH_BUCKETS = (1, 2, 4, 8, 16)


def speech_buckets(window_seconds: float, sampling_rate: int) -> Buckets:
    """The padded shapes a bucketed backend prepares for a speech encoder; fastdaf-bench times these."""
    seconds = [s for s in SPEECH_WINDOW_BUCKETS_S if s < window_seconds] + [window_seconds]
    return Buckets(batch=SPEECH_BATCH_BUCKETS, length=tuple(int(s * sampling_rate) for s in seconds))


class SpeechCore(torch.nn.Module):
    """Model inputs + valid frame counts -> (sum of hidden states over valid frames, frame count)."""

    def __init__(self, model: torch.nn.Module, layer: int | None, input_name: str) -> None:
        super().__init__()
        self.model, self.layer, self.input_name = model, layer, input_name

    def forward(self, inputs: torch.Tensor, frames: torch.Tensor, attention_mask: torch.Tensor | None = None):
        kwargs = {self.input_name: inputs}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        out = self.model(**kwargs, output_hidden_states=self.layer is not None)
        hidden = (out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]).float()
        mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < frames[:, None]
        return (hidden * mask.unsqueeze(-1)).sum(dim=1), mask.sum(dim=1)


class SpeechEncoder:
    """A frozen self-supervised speech model (wav2vec2 / HuBERT / WavLM / Whisper encoder)."""

    modality = "audio"
    takes_waveforms = True

    def __init__(
        self,
        model: str,
        *,
        layer: int | None = None,
        window_seconds: float = 20.0,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 8,
        backend: str = DEFAULT_ENCODER_BACKEND,
    ) -> None:
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel  # noqa: PLC0415 - heavy: only when a Hugging Face model is built

        self.model_name = model
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        config = load_pretrained(AutoConfig.from_pretrained, model, "speech encoder config")
        self.is_whisper = config.model_type == "whisper"
        self.feature_extractor = load_pretrained(
            AutoFeatureExtractor.from_pretrained, model, "speech feature extractor"
        )
        net = load_pretrained(AutoModel.from_pretrained, model, "speech encoder")
        if self.is_whisper:
            net = net.get_encoder()
            window_seconds = min(window_seconds, float(self.feature_extractor.chunk_length))
        elif not hasattr(net, "_get_feat_extract_output_lengths"):
            raise EncoderError(
                f"{model!r} ({config.model_type}) is not a supported speech encoder: use wav2vec2, HuBERT, WavLM or "
                "Whisper"
            )
        self.model = net.to(self.device, self.dtype).eval()
        self.model.requires_grad_(False)
        if window_seconds <= 0 or batch_size < 1:
            raise EncoderError("window_seconds must be > 0 and batch_size >= 1")
        self.layer, self.window_seconds, self.batch_size = layer, window_seconds, batch_size
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.dim = int(getattr(config, "hidden_size", None) or config.d_model)
        # wav2vec2-style models with group norm in the feature encoder must not be given an attention mask
        self.pass_mask = getattr(config, "feat_extract_norm", "layer") == "layer"
        # transformers reads a given attention mask on the host (runners docstring): masked models are not capturable
        self.capturable = not (self.pass_mask and not self.is_whisper)
        self.core = SpeechCore(self.model, layer, "input_features" if self.is_whisper else "input_values")
        self.runner = self._runner(backend)

    def _runner(self, backend: str):
        # Whisper always sees 30 s of (padded) log-mel; masked wav2vec2-style models ignore padding;
        # group-norm feature encoders do not: TensorRT is refused for them, and CUDA graphs are captured per
        # exact input shape (they batch only equal-length windows, see _batches)
        graph_safe = self.is_whisper or self.pass_mask
        specs = {
            "inputs": InputSpec(pad=0.0, has_length=not self.is_whisper),
            "frames": InputSpec(has_length=False, pad=1),
        }
        if self.pass_mask and not self.is_whisper:
            specs["attention_mask"] = InputSpec(pad=0)
        buckets = speech_buckets(self.window_seconds, self.sampling_rate)
        self.backend = backend
        example = (
            self._inputs([np.zeros(self.sampling_rate, dtype=np.float32)]) if backend in ("tensorrt", "auto") else None
        )
        # fmt: off
        return make_runner(self.core, backend, self.device,
                           specs=specs, example=example, output_names=("sums", "counts"), buckets=buckets,
                           graph_safe=graph_safe, capturable=self.capturable, dtype=self.dtype)
        # fmt: on

    def spec(self) -> dict[str, Any]:
        return {"kind": "speech", "model": self.model_name, "layer": self.layer, "window_seconds": self.window_seconds}

    def _windows(self, waves: Sequence[torch.Tensor]) -> tuple[list[np.ndarray], list[int]]:
        size = int(self.window_seconds * self.sampling_rate)
        pieces, owner = [], []
        for i, wave in enumerate(waves):
            n = max(1, math.ceil(wave.numel() / size))
            for w in range(n):
                pieces.append(wave[w * size : (w + 1) * size].numpy())
                owner.append(i)
        return pieces, owner

    def _inputs(self, pieces: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Model inputs for a list of windows, and each window's count of valid output frames."""
        fe = self.feature_extractor(
            pieces,
            sampling_rate=self.sampling_rate,
            return_tensors="pt",
            padding=not self.is_whisper or "max_length",
            return_attention_mask=True,
        )
        lengths = torch.tensor([len(p) for p in pieces])
        if self.is_whisper:
            hop = int(self.feature_extractor.hop_length)
            frames = torch.clamp((lengths // hop + 1) // 2, min=1, max=self.model.config.max_source_positions)
            inputs = {"inputs": fe["input_features"]}
        else:
            frames = self.model._get_feat_extract_output_lengths(lengths).clamp_min(1)
            inputs = {"inputs": fe["input_values"]}
            if self.pass_mask and "attention_mask" in fe:
                inputs["attention_mask"] = fe["attention_mask"]
        inputs["frames"] = frames
        return {
            k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device) for k, v in inputs.items()
        }

    def _frame_sums(self, pieces: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of hidden states over valid frames, and the number of valid frames, per piece."""
        sums, counts = self.runner(self._inputs(pieces))
        return sums.float().cpu(), counts.cpu()

    def _batches(self, pieces: list[np.ndarray]) -> list[list[int]]:
        """Which pieces run together. Models whose feature encoder normalises over time (group norm,
        no attention mask) see zero padding as signal, so they batch only pieces of equal length:
        a clip then gets the same vector alone or inside a batch."""
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
        if self.is_whisper or self.pass_mask:
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        batches: list[list[int]] = []
        for i in order:
            if batches and len(batches[-1]) < self.batch_size and len(pieces[batches[-1][0]]) == len(pieces[i]):
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    @torch.inference_mode()
    def encode(self, waves: Sequence[torch.Tensor]) -> Encoded:
        """waves: mono float32 tensors at `sampling_rate` (see fastdaf.audio.load_audio)."""
        pieces, owner = self._windows(waves)
        sums_t = torch.zeros(len(pieces), self.dim)
        counts_t = torch.zeros(len(pieces), dtype=torch.long)
        for batch in self._batches(pieces):
            s, c = self._frame_sums([pieces[i] for i in batch])
            sums_t[batch], counts_t[batch] = s, c
        return combine_windows(sums_t, counts_t, torch.tensor(owner), len(waves), self.window_seconds)
