"""The same neutral sentence said happily and angrily, scored by the bundled model: the voice decides.

    python examples/emotion_in_the_voice.py [--ravdess ../shared/data/emotional-speech/ravdess] [--actor 16]

The clips are RAVDESS speech (Livingstone & Russo 2018, CC BY-NC-SA 4.0), read from the data folder, never shipped
with fastdaf. Actors 16-18 were held out of the bundled model's training and selection.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import fastdaf

SENTENCE = "Kids are talking by the door"
DELIVERIES = {"happily": "03", "angrily": "05", "sadly": "04", "neutrally": "01"}  # RAVDESS emotion codes


def clip(ravdess: Path, actor: int, emotion_code: str) -> Path:
    """RAVDESS file name: modality-channel-emotion-intensity-statement-repetition-actor (strong intensity, "Kids")."""
    intensity = "01" if emotion_code == "01" else "02"  # neutral has no strong take
    return ravdess / f"Actor_{actor:02d}" / f"03-01-{emotion_code}-{intensity}-01-01-{actor:02d}.flac"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "emotional-speech" / "ravdess"
    parser.add_argument("--ravdess", type=Path, default=default)
    parser.add_argument("--actor", type=int, default=16)
    args = parser.parse_args(argv)
    for how, code in DELIVERIES.items():
        result = fastdaf.predict(SENTENCE, str(clip(args.ravdess, args.actor, code)))
        weights = ", ".join(f"{m} {w:.2f}" for m, w in result.weights.items())
        print(f"{SENTENCE!r} said {how:9s} score {result.score:+.2f} ({result.label}), weights: {weights}")
    text_only = fastdaf.predict(SENTENCE)
    print(f"{SENTENCE!r} as text only   score {text_only.score:+.2f} ({text_only.label})")


if __name__ == "__main__":
    main()
