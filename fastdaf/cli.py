"""The `fastdaf` command line: one sub-command per job; `--json` prints one JSON object for machines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import FastDAFError


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, allow_nan=True))


def cmd_demo(args: argparse.Namespace) -> int:
    """Train dynamic, static and mean fusion on the synthetic cue task and compare them."""
    from .config import DAFConfig
    from .metrics import format_table, sentiment_metrics
    from .synthetic import make_cue_task
    from .train import predict_features, train_head

    data, informative = make_cue_task(seed=args.seed)
    train, valid, test = data.split("train"), data.split("valid"), data.split("test")
    test_informative = informative[[i for i, s in enumerate(data.splits) if s == "test"]]
    names = list(data.modalities)
    results: dict[str, Any] = {}
    for fusion in args.fusion:
        cfg = DAFConfig(data.modalities, fusion=fusion, projection_size=64, attention_size=32, hidden_size=64)
        trained = train_head(cfg, train, valid, seed=args.seed, epochs=args.epochs, progress=not args.json)
        score, weights = predict_features(trained.head, test)
        follows = float((weights.argmax(dim=1) == test_informative).float().mean())
        results[fusion] = {
            "metrics": sentiment_metrics(score, test.labels),
            "weight_on_informative": float(weights.gather(1, test_informative[:, None]).mean()),
            "weights_follow_informative": follows,
            "epochs": len(trained.history),
        }
        if fusion == "dynamic":
            examples = [
                {"informative": names[int(test_informative[i])], "label": round(float(test.labels[i]), 3),
                 "score": round(float(score[i]), 3), "weights": {m: round(float(weights[i, j]), 3) for j, m in enumerate(names)}}
                for i in range(5)
            ]
            results[fusion]["examples"] = examples
    if args.json:
        _print_json({"task": "synthetic cue task (fastdaf.synthetic.make_cue_task)", "split": "test", "results": results})
        return 0
    print("Synthetic task: per utterance only one modality carries the label; a cue in its features says which.")
    print("Test-split metrics (MMSA definitions):")
    print(format_table({f: r["metrics"] for f, r in results.items()}))
    print()
    for fusion, r in results.items():
        print(f"{fusion:8s} mean weight on the informative modality {r['weight_on_informative']:.3f}; "
              f"argmax follows it in {100 * r['weights_follow_informative']:.1f}% of rows")
    if "dynamic" in results:
        print("\nDynamic fusion, first test utterances:")
        for ex in results["dynamic"]["examples"]:
            w = ", ".join(f"{m}={v:.3f}" for m, v in ex["weights"].items())
            print(f"  informative={ex['informative']:5s} label={ex['label']:+.2f} score={ex['score']:+.2f} weights: {w}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a head from a fastdaf feature file with `train` and `valid` splits."""
    from .config import DAFConfig
    from .features import FeatureSet
    from .train import TrainOptions, train_head

    data = FeatureSet.load(args.features)
    train, valid = data.split(args.train_split), data.split(args.valid_split)
    n_outputs = 1 if data.labels is None or data.labels.dim() == 1 else data.labels.shape[1]
    cfg = DAFConfig(
        data.modalities, fusion=args.fusion, projection_size=args.projection_size, attention_size=args.attention_size,
        hidden_size=args.hidden_size, dropout=args.dropout, n_outputs=n_outputs,
        output_names=data.label_names if data.label_names and len(data.label_names) == n_outputs else None,
    )
    options = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           modality_dropout=args.modality_dropout, patience=args.patience)
    result = train_head(cfg, train, valid, options, progress=not args.json)
    result.head.save_pretrained(args.out, extra={**result.record(), "features": str(args.features)})
    if args.json:
        _print_json({"checkpoint": str(args.out), "best_epoch": result.best_epoch, "valid_metrics": result.metrics})
    else:
        from .metrics import format_table

        print(f"saved {args.out} (best epoch {result.best_epoch})")
        print(format_table({args.valid_split: result.metrics}))
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """Encode every row of a manifest into a fastdaf feature file (resumable, bad rows reported)."""
    from .extractor import FeatureExtractor, extract_manifest

    extractor = FeatureExtractor(
        None if args.text_encoder == "none" else {"kind": "text", "model": args.text_encoder, "normalizer": args.text_normalizer},
        None if args.audio_encoder == "none" else args.audio_encoder,
        device=args.device,
    )
    summary = extract_manifest(args.manifest, args.out, extractor, batch_size=args.batch_size, progress=not args.json)
    if args.json:
        _print_json(summary)
    else:
        rate = f", {summary['utterances_per_s']} utterances/s" if summary["utterances_per_s"] else ""
        print(f"{summary['succeeded']} rows extracted, {summary['skipped_already_done']} already done, "
              f"{summary['failed']} failed, of {summary['rows']} ({summary['seconds']} s{rate}) -> {summary['output']}")
        if summary["error_report"]:
            print(f"failed rows and reasons: {summary['error_report']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .config import FUSION_MODES

    parser = argparse.ArgumentParser(prog="fastdaf", description="Fast multimodal sentiment with Dynamic Attention Fusion")
    parser.add_argument("--version", action="version", version=f"fastdaf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train heads on a small synthetic task and print metrics and modality weights")
    demo.add_argument("--fusion", nargs="+", choices=FUSION_MODES, default=["dynamic", "static", "mean"])
    demo.add_argument("--epochs", type=int, default=200)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    demo.set_defaults(func=cmd_demo)

    extract = sub.add_parser("extract", help="encode a manifest (CSV/JSONL: id,text,audio,label,split) into a feature file")
    extract.add_argument("manifest", type=Path)
    extract.add_argument("--out", type=Path, required=True, help="feature file (.safetensors) to write or resume")
    extract.add_argument("--text-encoder", default="default", help="'default' (all-MiniLM-L6-v2), a model path / hub id, or 'none'")
    extract.add_argument("--text-normalizer", default="mosei", choices=("none", "whitespace", "mosei"))
    extract.add_argument("--audio-encoder", default="acoustic",
                         help="'acoustic' (built-in features), a speech model path / hub id (wav2vec2, HuBERT, WavLM, Whisper), or 'none'")
    extract.add_argument("--batch-size", type=int, default=32)
    extract.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    extract.add_argument("--json", action="store_true")
    extract.set_defaults(func=cmd_extract)

    train = sub.add_parser("train", help="train a DAF head on a fastdaf feature file")
    train.add_argument("features", type=Path, help="feature file (.safetensors) with train/valid splits")
    train.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    train.add_argument("--fusion", choices=FUSION_MODES, default="dynamic")
    train.add_argument("--projection-size", type=int, default=128)
    train.add_argument("--attention-size", type=int, default=64)
    train.add_argument("--hidden-size", type=int, default=128)
    train.add_argument("--dropout", type=float, default=0.1)
    train.add_argument("--epochs", type=int, default=100)
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--patience", type=int, default=10)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--modality-dropout", type=float, default=0.0)
    train.add_argument("--train-split", default="train")
    train.add_argument("--valid-split", default="valid")
    train.add_argument("--json", action="store_true")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FastDAFError as exc:
        print(f"fastdaf {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
