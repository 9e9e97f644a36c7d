"""The `fastdaf` command line: every command and its options, each with help that states its default
(fastdaf.options.CommandParser). fastdaf.cli runs the command it parses (`args.command`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .choices import DEFAULT_ENCODER_BACKEND, DEFAULT_HEAD, DEFAULT_SERVE_DEVICE, ENCODER_BACKENDS, HEADS, SERVE_DEVICES
from .config import FUSION_MODES
from .encoders import NORMALIZERS
from .engines.isolation import NETWORKS
from .engines.ray import FORMATS
from .fused import SUPPORTED_FUSION
from .options import CommandParser, device_option, fraction, non_negative, positive_int
from .version import __version__


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
        "--ray-network",
        choices=NETWORKS,
        default=None,
        help="the local Ray instance's network, without --address: private runs the job in its own Linux namespaces, "
        "where Ray listens on a loopback interface nothing else reaches and every Ray process ends with the run (no "
        "network for the job: a remote manifest needs host); host lets Ray listen on every interface, guarded by its "
        "token (default: private)",
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
    serve.add_argument(
        "--max-request-mb",
        type=non_negative,
        default=64.0,
        help="larger requests (HTTP body, gRPC message) are refused before they are read: HTTP 413, gRPC "
        "RESOURCE_EXHAUSTED; 0: no limit, Triton listens itself, one hop less (default: 64; 60 s of float32 audio "
        "at 48 kHz is 11 MB)",
    )
    serve.add_argument("--verbose", action="store_true", help="print the Triton server's log")

    export = sub.add_parser(
        "export-triton", help="write a Triton model repository (config.pbtxt + Python-backend model.py + checkpoint)"
    )
    export.add_argument("directory", type=Path, help="model repository folder (the model goes to DIRECTORY/fastdaf)")
    add_serve_options(export)
    export.add_argument("--force", action="store_true", help="replace an existing DIRECTORY/fastdaf")

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

    env = sub.add_parser(
        "env", help="print what a bug report needs: versions, GPU and driver, fused-head support, build tools, extras"
    )
    env.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


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
