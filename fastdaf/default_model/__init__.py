"""The bundled models: DAF head checkpoints that ship inside the package, so prediction works offline right after
install. `scripts/build_default_model.py` and `scripts/build_fast_model.py` in the repository train them
reproducibly; their model cards are in the README and in each `config.json`'s `extra.model_card`.

- "default" (this folder): text (all-MiniLM-L6-v2) + voice (Whisper-base's layer-3 encoder, carried in
  `whisper-encoder/`), trained on CMU-MOSEI transcripts and RAVDESS acted speech. Its weights inherit RAVDESS's
  licence, CC BY-NC-SA 4.0: non-commercial use only.
- "fast" (`fast/`): the 0.1 model, text + the built-in acoustic features, trained on CMU-MOSEI transcripts with
  synthetic speech (its audio hears no emotion); no RAVDESS data, half the CPU time per utterance.

A checkpoint argument naming one of them ("default", "fast") means the bundled model unless a folder of that name
exists (a local folder wins, as with Hugging Face's `from_pretrained`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError

DIRECTORY = Path(__file__).resolve().parent
BUNDLED = {"default": DIRECTORY, "fast": DIRECTORY / "fast"}


def path(name: str = "default") -> Path:
    """Directory of a bundled checkpoint (config.json + model.safetensors)."""
    if name not in BUNDLED:
        raise CheckpointError(f"no bundled model named {name!r}; bundled: {sorted(BUNDLED)}")
    if not (BUNDLED[name] / "config.json").is_file():
        raise CheckpointError(
            f"the bundled {name!r} model is missing from {BUNDLED[name]} (a broken install?); "
            "reinstall fastdaf or pass a checkpoint directory"
        )
    return BUNDLED[name]


def resolve(checkpoint: str | Path | None) -> Path:
    """A checkpoint argument as a directory: None -> the default model; a bundled name -> that model unless a
    folder of that name exists; anything else -> the path as given (read_config reports what is wrong with it)."""
    if checkpoint is None:
        return path()
    if str(checkpoint) in BUNDLED and not Path(checkpoint).exists():
        return path(str(checkpoint))
    return Path(checkpoint)
