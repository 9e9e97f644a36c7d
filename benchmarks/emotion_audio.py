"""Which audio encoder hears emotion, at what CPU cost, and what a DAF head trained with it does (issue 22).

    python benchmarks/emotion_audio.py [--seeds 3] [--skip-fusion] [--json FILE] [--results FILE | --no-results]

Data: RAVDESS speech, actors 1-18 (`../shared/data/emotional-speech/ravdess`), labels from the default
`fastdaf.data.emotion.EmotionMapping` (surprised left out); CMU-MOSEI transcripts (`../shared/data/cmu-mosei-text`).
Splits by actor only: fit on actors 1-12; two folds of held-out actors, each one used for selection (early stopping)
and the other for the test: select 13-15 / test 16-18, and select 16-18 / test 13-15. Needs fastdaf[whisper].

1. Encoders, CPU cost: per clip (batch 1, torch threads as set), median over the first 40 RAVDESS clips after a
   warm-up: the built-in acoustic features, fastdaf's Whisper-base encoder on the clip's own frames at layer 3 and 6,
   and at layer 6 on Whisper's 30 s input (what transformers' encoder computes for every clip).
2. Probes: every Whisper layer 0-6 (mean over the clip's frames) and the built-in features, as the audio of an
   audio-only DAF head (projection 128, happy clips x4 so that the sign decision is balanced), per fold: balanced
   accuracy and macro-F1 of the score's sign (happy vs sad/angry/fearful/disgust), Pearson r with the mapped labels.
3. Fusion (unless --skip-fusion): text (all-MiniLM-L6-v2, layers 1-6) + Whisper layer 3 and 4, dynamic fusion,
   modality dropout 0.3, trained on CMU-MOSEI train paired with a neutral or calm clip of a fit actor (drawn by a
   generator seeded by the row id: the voice carries no sentiment, the text does) plus the fit actors' clips x8
   (happy x4), selected on MOSEI valid (paired with the selection actors' neutral clips) plus the selection actors;
   per seed and fold: the emotion metrics and mean audio weight on the test actors, and MOSEI valid with the
   neutral voices and text only.

Timings are benchmark rows (fastdaf.bench_rows); accuracies are printed and, with --json, written to a file.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fastdaf.audio import load_audio
from fastdaf.bench_rows import add_results_options, bench_row, write_results
from fastdaf.config import DAFConfig
from fastdaf.data.emotion import read_emotion_manifest
from fastdaf.encoders import AcousticEncoder, TextEncoder
from fastdaf.encoders.whisper import WhisperEncoder, log_mel
from fastdaf.extractor import load_data
from fastdaf.features import FeatureSet, concat
from fastdaf.metrics import emotion_metrics, sentiment_metrics
from fastdaf.train import TrainOptions, predict_features, train_head

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RAVDESS = SHARED / "emotional-speech" / "ravdess"
MOSEI = SHARED / "cmu-mosei-text"
FIT = set(range(1, 13))
FOLDS = (({13, 14, 15}, {16, 17, 18}), ({16, 17, 18}, {13, 14, 15}))  # (selection, test)
BENCHMARK = "benchmarks/emotion_audio.py"


def median_ms(fn, clips) -> float:
    fn(clips[0])
    times = []
    for clip in clips:
        start = time.perf_counter()
        fn(clip)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def whisper_layers(encoder: WhisperEncoder, waves) -> dict[int, torch.Tensor]:
    """Mean over each clip's frames of every layer's hidden states, one pass per clip."""
    out: list[list[torch.Tensor]] = []
    with torch.inference_mode():
        for wave in waves:
            states, _ = encoder.net.hidden_states(*log_mel([wave], encoder.n_mels, torch.device("cpu")))
            out.append([h[0].mean(0) for h in states])
    return {layer: torch.stack([clip[layer] for clip in out]) for layer in range(len(out[0]))}


def audio_only(x: torch.Tensor, rows, actors: np.ndarray, seed: int = 0) -> list[dict]:
    def subset(chosen: set[int], happy: int) -> tuple[FeatureSet, list[str]]:
        idx = [
            i for i, r in enumerate(rows) if actors[i] in chosen for _ in range(happy if r.emotion == "happy" else 1)
        ]
        data = FeatureSet(
            {"audio": x[idx]}, torch.ones(len(idx), 1, dtype=torch.bool), torch.tensor([rows[i].label for i in idx])
        )
        return data, [rows[i].emotion for i in idx]

    out = []
    for select, test in FOLDS:
        options = TrainOptions(epochs=200, patience=20, batch_size=64, seed=seed)
        head = train_head(
            DAFConfig({"audio": x.shape[1]}, projection_size=128, hidden_size=128),
            subset(FIT, 4)[0],
            subset(select, 4)[0],
            options,
        ).head
        data, emotions = subset(test, 1)
        scores, _ = predict_features(head, data)
        m = emotion_metrics(scores, data.labels, emotions)
        out.append({"test_actors": sorted(test), **{k: m[k] for k in ("balanced_acc", "macro_F1", "Corr")}})
    return out


def fusion(whisper: dict[int, torch.Tensor], rows, actors: np.ndarray, seeds: int) -> list[dict]:
    text_encoder = TextEncoder("default", layer=[1, 2, 3, 4, 5, 6])
    mosei = load_data(MOSEI, encoders={"text": text_encoder.spec()})
    sentences = sorted({r.text for r in rows})
    sentence_vectors = dict(zip(sentences, text_encoder.encode(sentences).vectors))
    out = []
    for layer in (3, 4):
        audio = whisper[layer]
        for seed in range(seeds):
            for select, test in FOLDS:

                def ravdess(chosen: set[int], copies: int) -> FeatureSet:
                    idx = [
                        i
                        for i, r in enumerate(rows)
                        if actors[i] in chosen
                        for _ in range(copies * (4 if r.emotion == "happy" and copies > 1 else 1))
                    ]
                    return FeatureSet(
                        {"text": torch.stack([sentence_vectors[rows[i].text] for i in idx]), "audio": audio[idx]},
                        torch.ones(len(idx), 2, dtype=torch.bool),
                        torch.tensor([rows[i].label for i in idx]),
                    )

                def mosei_with(split: str, chosen: set[int]) -> FeatureSet:
                    voices = [i for i, r in enumerate(rows) if actors[i] in chosen and r.emotion in ("neutral", "calm")]
                    part = mosei.split(split)
                    pick = [voices[random.Random(f"{seed}:{row_id}").randrange(len(voices))] for row_id in part.ids]
                    return FeatureSet(
                        {"text": part.features["text"], "audio": audio[pick]},
                        torch.ones(len(part), 2, dtype=torch.bool),
                        part.labels,
                    )

                cfg = DAFConfig(
                    {"text": 384, "audio": audio.shape[1]},
                    fusion="dynamic",
                    projection_size=128,
                    attention_size=64,
                    hidden_size=128,
                    dropout=0.1,
                )
                options = TrainOptions(epochs=100, patience=10, seed=seed, modality_dropout=0.3)
                result = train_head(
                    cfg,
                    concat([mosei_with("train", FIT), ravdess(FIT, 8)]),
                    concat([mosei_with("valid", select), ravdess(select, 8)]),
                    options,
                )
                data = ravdess(test, 1)
                scores, weights = predict_features(result.head, data)
                m = emotion_metrics(
                    scores, data.labels, [r.emotion for i, r in enumerate(rows) if actors[i] in test], weights[:, 1]
                )
                voiced = mosei_with("valid", select)
                text_only = FeatureSet(voiced.features, torch.tensor([[True, False]] * len(voiced)), voiced.labels)
                v_scores, v_weights = predict_features(result.head, voiced)
                t_scores, _ = predict_features(result.head, text_only)
                out.append(
                    {
                        "layer": layer,
                        "seed": seed,
                        "test_actors": sorted(test),
                        "best_epoch": result.best_epoch,
                        **{k: m[k] for k in ("balanced_acc", "macro_F1", "acc_3", "Corr")},
                        "audio_weight_by_emotion": {e: v["mean_audio_weight"] for e, v in m["per_emotion"].items()},
                        "score_by_emotion": {e: v["mean_score"] for e, v in m["per_emotion"].items()},
                        "mosei_valid_neutral_voice": {
                            k: sentiment_metrics(v_scores, voiced.labels)[k] for k in ("Non0_acc_2", "MAE")
                        },
                        "mosei_valid_audio_weight": round(float(v_weights[:, 1].mean()), 4),
                        "mosei_valid_text_only": {
                            k: sentiment_metrics(t_scores, voiced.labels)[k] for k in ("Non0_acc_2", "MAE")
                        },
                    }
                )
                print(json.dumps(out[-1]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds of the fusion section (default 3)")
    parser.add_argument("--skip-fusion", action="store_true", help="only the encoders' cost and the probes")
    parser.add_argument("--json", type=Path, default=None, help="write every accuracy figure here (default: none)")
    add_results_options(parser)
    args = parser.parse_args(argv)
    rows, _ = read_emotion_manifest(RAVDESS)
    actors = np.array([int(r.speaker) for r in rows])
    waves = [load_audio(r.audio, target_rate=16000).samples for r in rows]
    acoustic, whisper6 = AcousticEncoder(device="cpu"), WhisperEncoder("whisper-base", layer=6, device="cpu")
    whisper3 = WhisperEncoder("whisper-base", layer=3, device="cpu")
    clips = waves[:40]
    seconds = statistics.mean(w.numel() / 16000 for w in clips)

    def padded_30s(wave):
        mel, _ = log_mel([wave], 80, torch.device("cpu"))
        full = torch.nn.functional.pad(mel, (0, 3000 - mel.shape[-1]))
        with torch.inference_mode():
            whisper6.net(full, torch.tensor([3000]), 6)

    costs = {
        "acoustic (built-in, 62-d)": median_ms(lambda w: acoustic.encode([w]), clips),
        "whisper-base layer 3, clip frames": median_ms(lambda w: whisper3.encode([w]), clips),
        "whisper-base layer 6, clip frames": median_ms(lambda w: whisper6.encode([w]), clips),
        "whisper-base layer 6, 30 s input": median_ms(padded_30s, clips),
    }
    for name, ms in costs.items():
        print(f"{name}: {ms:.1f} ms per clip (mean clip {seconds:.2f} s, {torch.get_num_threads()} threads)")
    rows_out = [
        bench_row(
            BENCHMARK,
            "audio encoder, one clip",
            device="cpu",
            backend=name,
            shape={"clip_seconds": round(seconds, 2), "batch": 1},
            p50_ms=ms,
        )
        for name, ms in costs.items()
    ]
    layers = whisper_layers(whisper6, waves)
    probes = {f"whisper layer {layer}": audio_only(x, rows, actors) for layer, x in layers.items()}
    probes["acoustic (built-in)"] = audio_only(acoustic.encode(waves).vectors, rows, actors)
    for name, folds in probes.items():
        print(
            f"{name}: "
            + "; ".join(
                f"test {f['test_actors']}: bal {f['balanced_acc']:.3f} F1 {f['macro_F1']:.3f} r {f['Corr']:.3f}"
                for f in folds
            )
        )
    report = {"costs_ms": costs, "clip_seconds": seconds, "probes": probes}
    if not args.skip_fusion:
        report["fusion"] = fusion(layers, rows, actors, args.seeds)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    write_results(rows_out, args, prog=BENCHMARK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
