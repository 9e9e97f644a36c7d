"""The `fastdaf` command line: one sub-command per job; `--json` prints one JSON object for machines."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from . import environment
from .ablation import control_verdicts, markdown_table, plot, run_ablation, weights_summary
from .checkpoint import encoder_specs, read_config
from .choices import DEFAULT_ENCODER_BACKEND, DEFAULT_HEAD, DEFAULT_SERVE_DEVICE, ENCODER_BACKENDS, HEADS, SERVE_DEVICES
from .config import FUSION_MODES, DAFConfig
from .data.emotion import EmotionMapping, rows_of_speakers, speaker_splits
from .default_model import resolve as resolve_checkpoint
from .encoders import NORMALIZERS
from .engines.local import predict_rows
from .engines.ray import FORMATS, predict_manifest
from .errors import FastDAFError, InputError, Interrupted
from .evaluation import CONTROL_KINDS, evaluate, plot_evaluation, verdicts, without
from .extractor import FeatureExtractor, extract_manifest, load_data, read_manifest
from .fused import SUPPORTED_FUSION
from .head import DAFHead
from .metrics import EMOTION_METRIC_NAMES, format_table, sentiment_metrics
from .options import CommandParser, device_option, fraction, non_negative, positive_int
from .outputs import output_lock, provenance, refuse_symlink
from .pipeline import SentimentPredictor, score_options
from .serving import MODEL_NAME, ServeOptions, serve, write_model_repository
from .synthetic import make_cue_task
from .train import TrainOptions, first_output, predict_features, train_head
from .version import __version__


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, allow_nan=True))


def _check_out(path: Path, suffixes: tuple[str, ...], accepted: str, *, create_folder: bool = False) -> None:
    """Refuse an --out that cannot be written before any work (it used to fail after the last row)."""
    if path.suffix.lower() not in suffixes:
        raise InputError(f"--out must end in {accepted}, got {path.name!r}")
    refuse_symlink(path)
    if path.is_dir():
        raise InputError(f"--out {str(path)!r} is a folder; give a file name ending in {accepted}")
    if create_folder:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"--out {str(path)!r}: cannot create the folder {str(path.parent)!r} ({exc.strerror})"
            ) from exc
    if not path.parent.is_dir():
        raise InputError(f"--out {str(path)!r}: the folder {str(path.parent)!r} does not exist; create it first")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"--out {str(path)!r} is not writable")


def _check_out_folder(path: Path) -> None:
    """A checkpoint/report folder: refused up front if a file is in the way (it used to fail after training)."""
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {str(path)!r} is a file; give a folder (it is created if missing)")


def cmd_demo(args: argparse.Namespace) -> int:
    """Train dynamic, static and mean fusion on the synthetic cue task and compare them."""
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
                {
                    "informative": names[int(test_informative[i])],
                    "label": round(float(test.labels[i]), 3),
                    "score": round(float(score[i]), 3),
                    "weights": {m: round(float(weights[i, j]), 3) for j, m in enumerate(names)},
                }
                for i in range(5)
            ]
            results[fusion]["examples"] = examples
    if args.json:
        _print_json(
            {"task": "synthetic cue task (fastdaf.synthetic.make_cue_task)", "split": "test", "results": results}
        )
        return 0
    print("Synthetic task: per utterance only one modality carries the label; a cue in its features says which.")
    print("Test-split metrics (MMSA definitions):")
    print(format_table({f: r["metrics"] for f, r in results.items()}))
    print()
    for fusion, r in results.items():
        print(
            f"{fusion:8s} mean weight on the informative modality {r['weight_on_informative']:.3f}; "
            f"argmax follows it in {100 * r['weights_follow_informative']:.1f}% of rows"
        )
    if "dynamic" in results:
        print("\nDynamic fusion, first test utterances:")
        for ex in results["dynamic"]["examples"]:
            w = ", ".join(f"{m}={v:.3f}" for m, v in ex["weights"].items())
            print(
                f"  informative={ex['informative']:5s} label={ex['label']:+.2f} score={ex['score']:+.2f} weights: {w}"
            )
    return 0


def _split_or_all(data, name: str | None, *, default: tuple[str, ...] = ("test", "valid")):
    """The rows of split `name`; without a name the first of `default` present, else every row."""
    if name is not None:
        return data.split(name), name
    for candidate in default:
        if data.splits is not None and candidate in data.splits:
            return data.split(candidate), candidate
    return data, "all"


def _train_options(args: argparse.Namespace, **more: Any) -> TrainOptions:
    """The training options `train` and `ablate` share, checked (by TrainOptions) before any data loads."""
    return TrainOptions(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        modality_dropout=args.modality_dropout,
        **more,
    )


def cmd_train(args: argparse.Namespace) -> int:
    """Train a head on a feature file, an MMSA pickle, a .csd folder or transcript CSVs."""
    _check_out_folder(args.out)
    options = _train_options(args, seed=args.seed, weight_decay=args.weight_decay)
    mapping = EmotionMapping.load(args.emotion_mapping) if args.emotion_mapping else None
    encoders = None
    if args.text_encoder or args.audio_encoder:  # only read for data fastdaf encodes (transcripts, emotion)
        encoders = {m: e for m, e in (("text", args.text_encoder or "default"), ("audio", args.audio_encoder)) if e}
    data = load_data(args.data, encoders=encoders, progress=not args.json, emotion_mapping=mapping)
    if args.valid_speakers or args.test_speakers:
        speakers = _row_speakers(data, args.data, "--valid-speakers/--test-speakers")
        data.splits = speaker_splits(speakers, valid=args.valid_speakers or (), test=args.test_speakers or ())
    elif data.splits is None:
        raise InputError(f"{args.data} has no train/valid splits; for emotion-labelled speech give --valid-speakers")
    train, valid = data.split(args.train_split), data.split(args.valid_split)
    n_outputs = 1 if data.labels is None or data.labels.dim() == 1 else data.labels.shape[1]
    cfg = DAFConfig(
        data.modalities,
        fusion=args.fusion,
        projection_size=args.projection_size,
        attention_size=args.attention_size,
        hidden_size=args.hidden_size,
        dropout=args.dropout,
        n_outputs=n_outputs,
        output_names=data.label_names if data.label_names and len(data.label_names) == n_outputs else None,
    )
    result = train_head(cfg, train, valid, options, progress=not args.json)
    extra = {
        **result.record(),
        "data": str(args.data),
        **({"encoders": data.info["encoders"]} if data.info and "encoders" in data.info else {}),
        **({"emotion_mapping": data.info["emotion_mapping"]} if data.info and "emotion_mapping" in data.info else {}),
    }
    result.head.save_pretrained(args.out, extra=extra)
    if args.json:
        _print_json({"checkpoint": str(args.out), "best_epoch": result.best_epoch, "valid_metrics": result.metrics})
    else:
        print(f"saved {args.out} (best epoch {result.best_epoch} of {len(result.history)})")
        print(format_table({args.valid_split: result.metrics}))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """MMSA metrics of a checkpoint (default: the bundled model) on a split of a dataset."""
    checkpoint = resolve_checkpoint(args.checkpoint)
    head = DAFHead.from_pretrained(checkpoint)
    _, extra = read_config(checkpoint)
    mapping = _emotion_mapping(args.emotion_mapping, extra)
    data = load_data(
        args.data,
        encoders=encoder_specs(checkpoint, extra),
        progress=not args.json,
        emotion_mapping=mapping,
        splits=None if args.split is None else (args.split,),  # only the rows evaluated are encoded
        speakers=args.speakers,
    )
    rows, split = _split_or_all(data, args.split)
    if args.speakers:
        rows, split = _speakers(rows, args.speakers, args.data), f"speakers {' '.join(args.speakers)}"
    if rows.labels is None:
        raise InputError(f"{args.data}: split {split!r} has no labels to evaluate against")
    missing = sorted(set(rows.modalities) ^ set(head.config.modalities))
    if rows.modalities != dict(head.config.modalities):
        raise InputError(
            f"{args.data} has modalities {rows.modalities}; the checkpoint expects {dict(head.config.modalities)} "
            f"(differ: {missing})"
        )

    labelled = torch.isfinite(first_output(rows.labels))
    rows = rows.subset(labelled.nonzero().flatten())
    if args.drop:
        rows = without(rows, args.drop)
    result = evaluate(head, rows, controls=args.controls, seeds=range(args.control_seeds), progress=not args.json)
    if args.plot is not None:
        plot_evaluation(head, rows, args.plot)
    if args.json:
        _print_json(result)
        return 0
    dropped = f", without {', '.join(args.drop)}" if args.drop else ""
    print(f"{checkpoint} on {args.data} ({split}, {len(rows)} rows{dropped})")
    table = {split: result["metrics"]}
    for modality, c in (result.get("controls") or {}).items():
        table.update({f"{modality} {kind}": c[kind] for kind in CONTROL_KINDS})
    print(format_table(table))
    print("modality weights where present (mean, p10/p50/p90) and drop effect (mean |score change| without it):")
    for modality, w in result["weights"].items():
        drop = "n/a" if w["drop_effect"] is None else f"{w['drop_effect']:.4f}"
        print(f"  {modality}: {w['mean']} ({w['p10']}/{w['p50']}/{w['p90']}), drop effect {drop}")
    for line in verdicts(result):
        print(line)
    if "emotions" in result:
        print(EmotionMapping.from_dict(result["emotion_mapping"]).describe())
        print(format_table({split: result["emotions"]}, EMOTION_METRIC_NAMES))
        for emotion, e in result["emotions"]["per_emotion"].items():
            weight = f", audio weight {e['mean_audio_weight']:.3f}" if "mean_audio_weight" in e else ""
            print(f"  {emotion}: {e['rows']} rows, mean score {e['mean_score']:+.3f}{weight}")
    if args.plot is not None:
        print(f"wrote {args.plot}")
    return 0


def _emotion_mapping(path: Path | None, extra: dict[str, Any]) -> EmotionMapping:
    """--emotion-mapping FILE, else the mapping the checkpoint was trained with, else the default."""
    if path is not None:
        return EmotionMapping.load(path)
    recorded = extra.get("emotion_mapping")
    return EmotionMapping.from_dict(recorded) if recorded else EmotionMapping()


def _row_speakers(rows, source: Path, option: str) -> list[str | None]:
    """Each row's speaker (emotion-labelled speech records them by id)."""
    by_id = (rows.info or {}).get("speakers")
    if by_id is None or rows.ids is None:
        raise InputError(f"{source}: {option} needs emotion-labelled speech with a speaker (or actor) column")
    return [by_id[row_id] for row_id in rows.ids]


def _speakers(rows, speakers: list[str], source: Path):
    """The rows of these speakers."""
    return rows.subset(rows_of_speakers(_row_speakers(rows, source, "--speakers"), speakers, source))


def cmd_ablate(args: argparse.Namespace) -> int:
    """Dynamic vs static / mean / concat fusion and each modality alone, over N seeds."""
    _check_out_folder(args.out)
    options = _train_options(args)
    data = load_data(args.data, progress=not args.json)
    train, valid = data.split(args.train_split), data.split(args.valid_split)
    scored, split = _split_or_all(data, args.eval_split, default=(args.valid_split,))
    head_options = {
        "projection_size": args.projection_size,
        "attention_size": args.attention_size,
        "hidden_size": args.hidden_size,
    }
    results = run_ablation(
        train,
        valid,
        scored,
        seeds=list(range(args.seeds)),
        options=options,
        head_options=head_options,
        progress=not args.json,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(results)
    title = f"Ablation on {args.data} ({split} split, {len(scored)} rows, {args.seeds} seeds, mean +- std)"
    (args.out / "ablation.md").write_text(f"# {title}\n\n{table}\n")
    figure = plot(results, list(data.modalities), args.out / "ablation.png")
    summary = {name: {"mean": r["mean"], "std": r["std"]} for name, r in results.items()}
    if "weights" in results.get("dynamic", {}):
        summary["dynamic"]["weights"] = weights_summary(results["dynamic"]["weights"], list(data.modalities))
    controls = control_verdicts(results, list(data.modalities))
    if args.json:
        _print_json(
            {
                "split": split,
                "seeds": args.seeds,
                "results": summary,
                "controls": controls,
                "table": str(args.out / "ablation.md"),
                "plot": str(figure),
            }
        )
    else:
        print(title)
        print(table)
        for modality, c in controls.items():
            verdict = "beats" if c["informative"] else "does NOT beat (no measurable information)"
            print(f"dynamic fusion with real {modality} {verdict} every seed of its shuffled and constant controls")
        print(f"wrote {args.out / 'ablation.md'} and {figure}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """Encode every row of a manifest into a fastdaf feature file (resumable, bad rows reported)."""
    _check_out(args.out, (".safetensors",), ".safetensors", create_folder=True)
    read_manifest(
        args.manifest, allow_duplicate_ids=args.allow_duplicate_ids
    )  # a bad manifest is refused before the encoders load
    extractor = FeatureExtractor(
        None
        if args.text_encoder == "none"
        else {"kind": "text", "model": args.text_encoder, "normalizer": args.text_normalizer},
        None if args.audio_encoder == "none" else args.audio_encoder,
        device=args.device,
        backend=args.backend,
    )
    summary = extract_manifest(
        args.manifest,
        args.out,
        extractor,
        batch_size=args.batch_size,
        progress=not args.json,
        allow_duplicate_ids=args.allow_duplicate_ids,
    )
    if args.json:
        _print_json(summary)
    else:
        rate = f", {summary['utterances_per_s']} utterances/s" if summary["utterances_per_s"] else ""
        print(
            f"{summary['succeeded']} rows extracted, {summary['skipped_already_done']} already done, "
            f"{summary['failed']} failed, of {summary['rows']} ({summary['seconds']} s{rate}) -> {summary['output']}"
        )
        if summary["error_report"]:
            print(f"failed rows and reasons: {summary['error_report']}")
    return 0


def _serve_options(args: argparse.Namespace):
    return ServeOptions(
        max_batch_size=args.max_batch_size,
        preferred_batch_sizes=tuple(args.preferred_batch_sizes) if args.preferred_batch_sizes else None,
        max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances,
        device=args.device,
        max_audio_seconds=args.max_audio_seconds,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the model on Triton Inference Server (bundled with nvidia-pytriton) until SIGTERM/SIGINT."""

    def ready(info: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps({"event": "ready", **info}), flush=True)
        else:
            print(
                f"serving model {info['model']!r}: HTTP {info['http']}, gRPC {info['grpc']} "
                f"(ready in {info['startup_s']} s; SIGTERM or Ctrl-C stops it after the accepted requests)",
                flush=True,
            )

    code = serve(
        args.checkpoint,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        options=_serve_options(args),
        exit_timeout_s=args.exit_timeout,
        verbose=args.verbose,
        on_ready=ready,
    )
    if args.json:
        print(json.dumps({"event": "stopped", "exit_code": code}), flush=True)
    else:
        print("server stopped" if code == 0 else "the Triton server died; rerun with --verbose for its log", flush=True)
    return code


def cmd_export_triton(args: argparse.Namespace) -> int:
    """Write a standalone Triton model repository (Python backend) for a separately deployed server."""
    repo = write_model_repository(args.directory, args.checkpoint, _serve_options(args), overwrite=args.force)
    files = sorted(str(p.relative_to(repo)) for p in (repo / MODEL_NAME).rglob("*") if p.is_file())
    if args.json:
        _print_json({"repository": str(repo), "model": MODEL_NAME, "files": files})
    else:
        print(f"wrote model {MODEL_NAME!r} to the Triton model repository {repo}:")
        for f in files:
            print(f"  {f}")
        print(
            f"run it with: tritonserver --model-repository {repo}  (fastdaf must be installed in the server's Python)"
        )
    return 0


def _add_head_and_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--projection-size", type=positive_int, default=128, help="per-modality projection width (default: 128)"
    )
    parser.add_argument("--attention-size", type=positive_int, default=64, help="attention scorer width (default: 64)")
    parser.add_argument("--hidden-size", type=positive_int, default=128, help="regressor hidden width (default: 128)")
    parser.add_argument("--dropout", type=fraction, default=0.1, help="dropout in the head, in [0, 1) (default: 0.1)")
    parser.add_argument("--epochs", type=positive_int, default=100, help="most epochs (default: 100)")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="training batch size (default: 256)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate, > 0 (default: 0.001)")
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=10,
        help="stop after this many epochs without a better validation MAE (default: 10)",
    )
    parser.add_argument(
        "--modality-dropout",
        type=fraction,
        default=0.0,
        help="chance of hiding each modality of a training row, in [0, 1) (default: 0)",
    )


def cmd_predict(args: argparse.Namespace) -> int:
    """Sentiment of one utterance (--text/--audio) or of every row of a manifest."""
    if args.manifest is None and args.text is None and args.audio is None:
        raise InputError("give --text and/or --audio for one utterance, or --manifest FILE for many")
    if args.manifest is not None and (args.text is not None or args.audio is not None):
        raise InputError("--manifest cannot be combined with --text/--audio")
    if args.manifest is None and args.out is not None:
        raise InputError("--out is for --manifest runs; the result for one utterance goes to stdout")
    if args.engine == "ray":
        return _predict_manifest_ray(args)
    ray_only = [
        name
        for name, value in (
            ("--address", args.address),
            ("--workers", args.workers),
            ("--num-gpus-per-worker", args.num_gpus_per_worker),
            ("--format", args.format),
        )
        if value is not None
    ]
    if ray_only:
        raise InputError(f"{', '.join(ray_only)}: only with --engine ray (the local engine writes --out FILE)")
    if args.out is not None:
        _check_out(args.out, (".csv", ".jsonl", ".ndjson"), ".csv or .jsonl")
    rows = None if args.manifest is None else read_manifest(args.manifest, allow_duplicate_ids=args.allow_duplicate_ids)
    # one writer per output, from before the model loads to the last row (fastdaf.outputs)
    with output_lock(args.out) if args.out is not None else contextlib.nullcontext():
        return _predict(args, rows)


def _predict(args: argparse.Namespace, rows: list | None) -> int:
    predictor = SentimentPredictor(
        args.checkpoint, device=args.device, head_backend=args.head, backend=args.backend, batch_size=args.batch_size
    )
    if rows is None:
        result = predictor.predict(args.text, args.audio, sampling_rate=args.sampling_rate)
        if args.json:
            _print_json(predictor.record(result))
        else:
            weights = ", ".join(f"{m} {w:.2f}" for m, w in result.weights.items())
            print(f"sentiment {result.score:+.2f} ({result.label}); modality weights: {weights}")
            for note in result.notes:
                print(f"note: {note}")
        return 0
    made_by = provenance(predictor.checkpoint, args.manifest, score_options(predictor, args.backend))
    return predict_rows(predictor, rows, args.out, made_by, progress=not args.json)


def _predict_manifest_ray(args: argparse.Namespace) -> int:
    """--engine ray: the manifest (file, folder or glob; local or remote) on Ray Data workers (fastdaf.engines.ray),
    results in the folder --out in input order."""
    if args.manifest is None:
        raise InputError("--engine ray scores a --manifest (a file, folder or glob); one utterance runs locally")
    if args.out is None:
        raise InputError("--engine ray needs --out DIR: the folder for predictions.parquet (and predictions.jsonl)")
    summary = predict_manifest(
        args.manifest,
        args.out,
        checkpoint=args.checkpoint,
        address=args.address,
        workers=args.workers,
        num_gpus_per_worker=args.num_gpus_per_worker or 0,
        batch_size=args.batch_size,
        formats=tuple(args.format or ("parquet",)),
        device=args.device,
        head_backend=args.head,
        backend=args.backend,
        allow_duplicate_ids=args.allow_duplicate_ids,
        progress=not args.json,
    )
    if args.json:
        _print_json(summary)
    else:
        print(
            f"{summary['predicted']} predicted, {summary['failed']} failed, of {summary['rows']} rows "
            f"({summary['workers']} Ray workers, {summary['seconds']} s, {summary['rows_per_s']} rows/s) -> "
            + ", ".join(summary["outputs"].values()),
            file=sys.stderr,
        )
    return 0


def _add_checkpoint_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="checkpoint directory, or a bundled model: default (text + Whisper voice, CC BY-NC-SA) or fast",
    )


def _add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", type=device_option, default=None, help="cpu, cuda or cuda:N (default: cuda when available)"
    )


def _add_backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=ENCODER_BACKENDS,
        default=DEFAULT_ENCODER_BACKEND,
        help=f"encoder backend (default: {DEFAULT_ENCODER_BACKEND}: TensorRT if installed, else CUDA graphs on CUDA, "
        "else eager)",
    )


def cmd_env(args: argparse.Namespace) -> int:
    info = environment.report()
    if args.json:
        _print_json(info)
    else:
        print(environment.format_report(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastdaf", description="Fast multimodal sentiment with Dynamic Attention Fusion"
    )
    parser.add_argument("--version", action="version", version=f"fastdaf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)

    demo = sub.add_parser("demo", help="train heads on a small synthetic task and print metrics and modality weights")
    demo.add_argument(
        "--fusion",
        nargs="+",
        choices=FUSION_MODES,
        default=list(SUPPORTED_FUSION),
        help=f"fusion modes to train and compare (default: {' '.join(SUPPORTED_FUSION)})",
    )
    demo.add_argument("--epochs", type=positive_int, default=200, help="most training epochs per head")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and of training")
    demo.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    demo.set_defaults(func=cmd_demo)

    predict = sub.add_parser("predict", help="sentiment of one utterance (--text/--audio) or a manifest of them")
    predict.add_argument("--text", default=None, help="the utterance's transcript")
    predict.add_argument("--audio", default=None, help="the utterance's audio file (wav, flac, ogg, mp3, ...)")
    predict.add_argument(
        "--sampling-rate", type=int, default=None, help="only for raw sample input (not needed for files)"
    )
    predict.add_argument(
        "--manifest",
        default=None,
        help="CSV/JSONL with id,text,audio columns: one output row per input row; with --engine ray also a folder "
        "or glob of them, local or a URI pyarrow reads (s3://, gs://, ...)",
    )
    predict.add_argument(
        "--out",
        type=Path,
        default=None,
        help="with --manifest: results .csv or .jsonl, written as rows finish; a rerun skips the rows already "
        "in it (default: JSONL on stdout); with --engine ray a folder (required; created if missing) for "
        "predictions.parquet and/or predictions.jsonl",
    )
    predict.add_argument(
        "--batch-size", type=positive_int, default=32, help="with --manifest: utterances scored together (default: 32)"
    )
    predict.add_argument(
        "--allow-duplicate-ids",
        action="store_true",
        help="with --manifest: accept ids that repeat (refused by default)",
    )
    _add_checkpoint_option(predict)
    _add_device_option(predict)
    predict.add_argument(
        "--head",
        choices=HEADS,
        default=DEFAULT_HEAD,
        help=f"head implementation (default: {DEFAULT_HEAD}: fused on CUDA)",
    )
    _add_backend_option(predict)
    predict.add_argument(
        "--json", action="store_true", help="one utterance: print a JSON object; manifest: no progress bar"
    )
    bulk = predict.add_argument_group(
        "bulk scoring on Ray Data (--engine ray; needs the extra: pip install 'fastdaf[ray]')"
    )
    bulk.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="with --manifest: local scores in this process; ray on Ray Data workers, each loading the model once "
        "(default: local)",
    )
    bulk.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join, HOST:6379 or auto (default: start a local Ray instance on this machine)",
    )
    bulk.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="model replicas (default: one per --num-gpus-per-worker GPUs in the cluster, else one per CPU)",
    )
    bulk.add_argument(
        "--num-gpus-per-worker",
        type=non_negative,
        default=None,
        help="GPUs each worker reserves; 0.5 puts two workers on a GPU (default: 0, CPU workers)",
    )
    bulk.add_argument(
        "--format",
        nargs="+",
        choices=FORMATS,
        default=None,
        help="files written in --out DIR: parquet (predictions.parquet), jsonl (predictions.jsonl) (default: parquet)",
    )
    predict.set_defaults(func=cmd_predict)

    def add_serve_options(p: argparse.ArgumentParser) -> None:
        _add_checkpoint_option(p)
        p.add_argument("--max-batch-size", type=int, default=32, help="largest batch Triton's dynamic batcher forms")
        p.add_argument(
            "--preferred-batch-sizes",
            type=int,
            nargs="+",
            default=None,
            help="batch sizes the batcher aims for (default: those of 8 16 32 below --max-batch-size, and it)",
        )
        p.add_argument(
            "--max-queue-delay-us",
            type=int,
            default=2000,
            help="longest a request waits for others to batch with (microseconds)",
        )
        p.add_argument("--instances", type=int, default=1, help="model instances (each loads the encoders)")
        p.add_argument(
            "--instance-kind",
            "--device",  # its 0.1 name (README), still accepted
            dest="device",
            choices=SERVE_DEVICES,
            default=DEFAULT_SERVE_DEVICE,
            help="where Triton runs the model's instances: cpu or gpu (auto: gpu when CUDA is available here; when "
            "exporting for another server, name its kind); --device is its 0.1 name, still accepted",
        )
        p.add_argument(
            "--max-audio-seconds", type=float, default=60.0, help="longer audio is refused with an error response"
        )
        p.add_argument("--json", action="store_true", help="machine-readable output (JSON lines for serve)")

    serve = sub.add_parser("serve", help="serve the model on Triton Inference Server (HTTP + gRPC, dynamic batching)")
    add_serve_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port (KServe v2 protocol)")
    serve.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (KServe v2 protocol)")
    serve.add_argument(
        "--exit-timeout", type=int, default=20, help="seconds to finish accepted requests after SIGTERM (1-25)"
    )
    serve.add_argument("--verbose", action="store_true", help="print the Triton server's log")
    serve.set_defaults(func=cmd_serve)

    export = sub.add_parser(
        "export-triton", help="write a Triton model repository (config.pbtxt + Python-backend model.py + checkpoint)"
    )
    export.add_argument("directory", type=Path, help="model repository folder (the model goes to DIRECTORY/fastdaf)")
    add_serve_options(export)
    export.add_argument("--force", action="store_true", help="replace an existing DIRECTORY/fastdaf")
    export.set_defaults(func=cmd_export_triton)

    extract = sub.add_parser(
        "extract", help="encode a manifest (CSV/JSONL: id,text,audio,label,split) into a feature file"
    )
    extract.add_argument("manifest", type=Path, help="CSV or JSONL manifest; audio paths are relative to its folder")
    extract.add_argument(
        "--out", type=Path, required=True, help="feature file (.safetensors) to write or resume (its folder is created)"
    )
    extract.add_argument(
        "--allow-duplicate-ids", action="store_true", help="accept ids that repeat (refused by default)"
    )
    extract.add_argument(
        "--text-encoder", default="default", help="'default' (all-MiniLM-L6-v2), a model path / hub id, or 'none'"
    )
    extract.add_argument(
        "--text-normalizer",
        default="mosei",
        choices=sorted(NORMALIZERS),
        help="text clean-up before encoding (default: mosei, which drops the pause token 'sp')",
    )
    extract.add_argument(
        "--audio-encoder",
        default="acoustic",
        help="'acoustic' (built-in features), a speech model path / hub id (wav2vec2, HuBERT, WavLM, Whisper), "
        "or 'none'",
    )
    extract.add_argument(
        "--batch-size", type=positive_int, default=32, help="utterances encoded together (default: 32)"
    )
    _add_device_option(extract)
    _add_backend_option(extract)
    extract.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    extract.set_defaults(func=cmd_extract)

    train = sub.add_parser(
        "train", help="train a DAF head (DATA: a feature file, an MMSA pickle, a .csd folder or transcript CSVs)"
    )
    train.add_argument(
        "data",
        type=Path,
        help="feature file (.safetensors), MMSA .pkl, folder of .csd files, or transcript .csv / folder of them",
    )
    train.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    train.add_argument(
        "--fusion", choices=FUSION_MODES, default="dynamic", help="how modalities are combined (default: dynamic)"
    )
    _add_head_and_training_options(train)
    train.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives the same head (default: 0)"
    )
    train.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay, >= 0 (default: 0.01)")
    train.add_argument("--train-split", default="train", help="split trained on (default: train)")
    train.add_argument("--valid-split", default="valid", help="split for early stopping (default: valid)")
    train.add_argument(
        "--text-encoder",
        default=None,
        help="data fastdaf encodes (transcripts, emotion-labelled speech): text encoder spec (default: 'default')",
    )
    train.add_argument(
        "--audio-encoder",
        default=None,
        help="emotion-labelled speech: audio encoder spec, e.g. 'whisper:whisper-base:3' or 'acoustic' (default: "
        "'acoustic')",
    )
    train.add_argument(
        "--valid-speakers",
        nargs="+",
        default=None,
        metavar="SPEAKER",
        help="emotion-labelled speech: the speakers of the valid split, never a clip-level split (default: none)",
    )
    train.add_argument(
        "--test-speakers", nargs="+", default=None, metavar="SPEAKER", help="speakers held out of both (default: none)"
    )
    train.add_argument(
        "--emotion-mapping",
        type=Path,
        default=None,
        help="emotion-labelled speech: a mapping JSON file, recorded in the checkpoint (default: fastdaf's)",
    )
    train.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    train.set_defaults(func=cmd_train)

    eval_cmd = sub.add_parser(
        "eval", help="MMSA metrics of a checkpoint (default: the bundled model) on a dataset split"
    )
    eval_cmd.add_argument(
        "data",
        type=Path,
        help="labelled data: a feature file, an MMSA pickle, a .csd folder, transcript CSVs, or emotion-labelled "
        "speech (a RAVDESS folder, a CSV/JSONL with an emotion column)",
    )
    _add_checkpoint_option(eval_cmd)
    eval_cmd.add_argument("--split", default=None, help="split to evaluate (default: test, else valid, else every row)")
    eval_cmd.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="MODALITY",
        help="mark this modality absent in every row (repeatable; rows left with none are skipped), e.g. --drop audio "
        "for the text-only view (default: none)",
    )
    eval_cmd.add_argument(
        "--controls",
        action="store_true",
        help="also score each modality shuffled across rows and replaced by one constant input, and say whether it "
        "carries measurable information (default: off)",
    )
    eval_cmd.add_argument("--control-seeds", type=positive_int, default=5, help="seeds per control (default: 5)")
    eval_cmd.add_argument(
        "--speakers",
        nargs="+",
        default=None,
        metavar="SPEAKER",
        help="emotion-labelled speech: score these speakers only, e.g. the held-out actors (default: every speaker)",
    )
    eval_cmd.add_argument(
        "--emotion-mapping",
        type=Path,
        default=None,
        help='emotion-labelled speech: a JSON file {"scores": {emotion: score}, "intensity_scale": {intensity: '
        "factor}} (default: the checkpoint's, else fastdaf.data.emotion's)",
    )
    eval_cmd.add_argument(
        "--plot", type=Path, default=None, help="PNG of the weight distributions and predicted vs label (default: none)"
    )
    eval_cmd.add_argument(
        "--json",
        action="store_true",
        help='one JSON object: {"metrics": {MMSA keys}, "weights": {modality: {mean, p10, p50, p90, drop_effect}}, '
        '"controls": ... with --controls} (default: off, a table)',
    )
    eval_cmd.set_defaults(func=cmd_eval)

    ablate = sub.add_parser(
        "ablate", help="dynamic vs static/mean/concat fusion and unimodal heads, N seeds, table + plot"
    )
    ablate.add_argument("data", type=Path, help="same kinds of data as train")
    ablate.add_argument("--out", type=Path, required=True, help="folder for ablation.md and ablation.png")
    ablate.add_argument("--seeds", type=positive_int, default=3, help="seeds per variant (default: 3)")
    _add_head_and_training_options(ablate)
    ablate.add_argument("--train-split", default="train", help="split trained on (default: train)")
    ablate.add_argument("--valid-split", default="valid", help="split for early stopping (default: valid)")
    ablate.add_argument("--eval-split", default=None, help="split scored (default: the validation split)")
    ablate.add_argument("--json", action="store_true", help="print one JSON object (results, controls, files)")
    ablate.set_defaults(func=cmd_ablate)

    env = sub.add_parser(
        "env", help="print what a bug report needs: versions, GPU and driver, fused-head support, build tools, extras"
    )
    env.add_argument("--json", action="store_true", help="print one JSON object")
    env.set_defaults(func=cmd_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Interrupted as exc:
        print(f"fastdaf {args.command}: {exc}; partial outputs removed", file=sys.stderr)
        return 128 + exc.signum
    except FastDAFError as exc:
        print(f"fastdaf {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
