"""The `fastdaf` command: what each sub-command does with its arguments (fastdaf.cli_parser defines them); `--json`
prints one JSON object for machines."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from . import environment
from .ablation import control_verdicts, markdown_table, plot, run_ablation, weights_summary
from .checkpoint import encoder_specs, read_config
from .cli_parser import build_parser
from .config import DAFConfig
from .data.emotion import EmotionMapping, rows_of_speakers, speaker_splits
from .default_model import resolve as resolve_checkpoint
from .engines.isolation import DEFAULT_NETWORK
from .engines.local import predict_rows
from .engines.ray import predict_manifest
from .errors import FastDAFError, InputError, Interrupted
from .evaluation import CONTROL_KINDS, evaluate, plot_evaluation, verdicts, without
from .extractor import FeatureExtractor, extract_manifest, load_data, read_manifest
from .head import DAFHead
from .metrics import EMOTION_METRIC_NAMES, format_table, sentiment_metrics
from .outputs import check_out_file, check_out_folder, output_lock, provenance
from .pipeline import SentimentPredictor, score_options
from .serving import MODEL_NAME, ServeOptions, serve, write_model_repository
from .synthetic import make_cue_task
from .train import TrainOptions, first_output, predict_features, train_head


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, allow_nan=True))


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
    check_out_folder(args.out)
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
    check_out_folder(args.out)
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
    check_out_file(args.out, (".safetensors",), ".safetensors", create_folder=True)
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
        max_request_bytes=max(1024, round(args.max_request_mb * 2**20)) if args.max_request_mb else None,
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
            ("--ray-network", args.ray_network),
            ("--workers", args.workers),
            ("--num-gpus-per-worker", args.num_gpus_per_worker),
            ("--format", args.format),
        )
        if value is not None
    ]
    if ray_only:
        raise InputError(f"{', '.join(ray_only)}: only with --engine ray (the local engine writes --out FILE)")
    if args.out is not None:
        check_out_file(args.out, (".csv", ".jsonl", ".ndjson"), ".csv or .jsonl")
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
    if args.address is not None and args.ray_network is not None:
        raise InputError("--ray-network is for the Ray instance fastdaf starts; with --address the cluster's applies")
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
        ray_network=args.ray_network or DEFAULT_NETWORK,
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


def cmd_env(args: argparse.Namespace) -> int:
    info = environment.report()
    if args.json:
        _print_json(info)
    else:
        print(environment.format_report(info))
    return 0


# each command of fastdaf.cli_parser and what runs it
COMMANDS = {
    "demo": cmd_demo,
    "predict": cmd_predict,
    "serve": cmd_serve,
    "export-triton": cmd_export_triton,
    "extract": cmd_extract,
    "train": cmd_train,
    "eval": cmd_eval,
    "ablate": cmd_ablate,
    "env": cmd_env,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except Interrupted as exc:
        print(f"fastdaf {args.command}: {exc}; partial outputs removed", file=sys.stderr)
        return 128 + exc.signum
    except FastDAFError as exc:
        print(f"fastdaf {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
