"""Text-only DAF heads on frozen all-MiniLM-L6-v2 features of CMU-MOSEI: which layers to pool.

    python benchmarks/text_heads.py [--cache /tmp/fastdaf-build/mosei_text_layers.safetensors]

Encodes train + valid transcripts once (mean pooling of every hidden state, cached), then trains
text-only heads (seed 0, early stopping on valid MAE) on: the last layer, the average of layers 1-6
(the bundled model's choice), and concatenations of layers 4,5,6 and 2,4,6; prints valid metrics.

It writes no benchmark rows (fastdaf.bench_rows, benchmarks/results.jsonl): it measures the quality
of trained heads (MAE, accuracy, correlation on a data set), nothing is timed, and its figures are
tables in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fastdaf import DAFConfig, FeatureSet, train_head
from fastdaf.data import read_transcript_dir
from fastdaf.encoders import TextEncoder, masked_mean

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmu-mosei-text"


def layer_features(cache: Path) -> FeatureSet:
    if cache.exists():
        return FeatureSet.load(cache)
    rows = [r for r in read_transcript_dir(DATA) if r.split in ("train", "valid")]
    enc = TextEncoder(native=True)
    texts = [enc.normalize(r.text) for r in rows]
    keep = [i for i, t in enumerate(texts) if t.strip()]
    layers: dict[int, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for s in range(0, len(keep), 128):
            batch = enc.tokenizer(
                [texts[i] for i in keep[s : s + 128]],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            out = enc.model(batch["input_ids"], batch["attention_mask"], output_hidden_states=True)
            for k, h in enumerate(out.hidden_states):
                layers.setdefault(k, []).append(masked_mean(h, batch["attention_mask"]))
    n = len(keep)
    data = FeatureSet(
        {f"l{k}": torch.cat(v) for k, v in layers.items()},
        torch.ones(n, len(layers), dtype=torch.bool),
        torch.tensor([rows[i].label for i in keep]),
        ids=[rows[i].id for i in keep],
        splits=[rows[i].split for i in keep],
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    return FeatureSet.load(data.save(cache))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/fastdaf-build/mosei_text_layers.safetensors"))
    args = parser.parse_args()
    d = layer_features(args.cache)
    L = d.features
    variants = {
        "last layer": L["l6"],
        "mean of layers 1-6": torch.stack([L[f"l{i}"] for i in range(1, 7)]).mean(0),
        "concat layers 4,5,6": torch.cat([L["l4"], L["l5"], L["l6"]], 1),
        "concat layers 2,4,6": torch.cat([L["l2"], L["l4"], L["l6"]], 1),
    }
    results = []
    for name, x in variants.items():
        fs = FeatureSet({"text": x}, torch.ones(len(x), 1, dtype=torch.bool), d.labels, d.ids, d.splits)
        for size, dropout in ((128, 0.1), (256, 0.3)):
            cfg = DAFConfig({"text": x.shape[1]}, projection_size=size, hidden_size=size, dropout=dropout)
            r = train_head(cfg, fs.split("train"), fs.split("valid"), epochs=100, patience=10, seed=0)
            m = r.metrics
            results.append(
                {
                    "features": name,
                    "projection": size,
                    "dropout": dropout,
                    "MAE": m["MAE"],
                    "Non0_acc_2": m["Non0_acc_2"],
                    "Corr": m["Corr"],
                    "best_epoch": r.best_epoch,
                }
            )
            print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main()
