"""Example inputs: one CMU ARCTIC clip shipped with the package (attribution in README.md here), and
the prompts of the six CMU ARCTIC clips of the project's shared test data (tests and benchmarks use them)."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_CLIP = Path(__file__).resolve().parent / "cmu_arctic_us_axb_a0004.wav"
EXAMPLE_TEXT = "Lord, but I'm glad to see you again, Phil."

ARCTIC_PROMPTS = {
    "aew_a0001": "Author of the danger trail, Philip Steels, etc.",
    "aew_a0002": "Not at this particular case, Tom, apologized Whittemore.",
    "aew_a0003": "For the twentieth time that evening the two men shook hands.",
    "axb_a0004": "Lord, but I'm glad to see you again, Phil.",
    "axb_a0005": "Will we ever forget it.",
    "axb_a0006": "God bless 'em, I hope I'll go on seeing them forever.",
}
