"""Hostile files (issue 13): refused quickly, before the work or memory they ask for, with a typed error."""

from __future__ import annotations

import contextlib
import json
import pickle
import resource
import signal
import struct
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from builders import Reduce, write_csd

from fastdaf import CheckpointError, ConfigError, DAFConfig, DAFHead
from fastdaf import data as ds
from fastdaf.checkpoint import CONFIG_FILE, MAX_CONFIG_BYTES, WEIGHTS_FILE, read_config
from fastdaf.cli import main as cli_main
from fastdaf.config import MAX_INPUT_DIM, MAX_LAYER_SIZE, MAX_WEIGHTS
from fastdaf.errors import FeatureFileError


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (rather than hang the test run) if the body takes longer than `seconds`."""

    def expire(*_):
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ============================================================================ pickles
def shared_list(levels: int = 40) -> list:
    """`levels` levels of [x, x]: a few hundred bytes as a pickle, 2**levels items when walked as a tree."""
    x: list = []
    for _ in range(levels):
        x = [x, x]
    return x


def nested_pickle(levels: int) -> bytes:
    """{'train': [[[...]]]} nested `levels` deep, written opcode by opcode (pickle.dumps would recurse)."""
    return b"\x80\x02}X" + struct.pack("<I", 5) + b"train" + b"]" * levels + b"a" * (levels - 1) + b"s."


@pytest.mark.parametrize("data", [{"train": shared_list()}, {"train": {"text": shared_list(), "id": ["a"]}}])
def test_shared_sub_objects_are_walked_once(tmp_path, data):
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps(data))
    assert path.stat().st_size < 400
    start = time.perf_counter()
    with (
        deadline(10),
        pytest.raises(FeatureFileError, match=r"d\.pkl: <top>/train.* stands for more than 10,000,000 items"),
    ):
        ds.load_mmsa_pickle(path)
    assert time.perf_counter() - start < 1.0


def test_pickle_cycles_depth_and_legitimate_sharing(tmp_path):
    loop: list = []
    loop.append(loop)
    (tmp_path / "loop.pkl").write_bytes(pickle.dumps({"train": loop}))
    with deadline(10), pytest.raises(FeatureFileError, match=r"loop\.pkl: <top>/train\[0\] contains itself"):
        ds.safe_load_pickle(tmp_path / "loop.pkl")
    (tmp_path / "deep.pkl").write_bytes(nested_pickle(100_000))
    with deadline(10), pytest.raises(FeatureFileError, match=r"deep\.pkl: data nested deeper than 64 levels"):
        ds.safe_load_pickle(tmp_path / "deep.pkl")
    # plain data may share sub-objects: they are read, and stay shared
    ids = ["a", "b"]
    (tmp_path / "ok.pkl").write_bytes(
        pickle.dumps({"valid": {"id": ids}, "test": {"id": ids}, "k": {(1, (2, 3)): shared_list(5)}})
    )
    back = ds.safe_load_pickle(tmp_path / "ok.pkl")
    assert back["valid"]["id"] is back["test"]["id"] and back["test"]["id"] == ["a", "b"]


@pytest.mark.parametrize(
    "gadget, words",
    [
        (Reduce(bytearray, (1 << 20,)), r"bytearray\(1048576\) allocates from a count"),
        (Reduce(bytes, (1 << 20,)), r"bytes\(1048576\) allocates from a count"),
        (Reduce(np.ndarray, ((1 << 20,),)), r"numpy\.ndarray\(\.\.\.\) allocates from a shape"),
        (
            Reduce(np.core.multiarray._reconstruct, (np.ndarray, (1 << 20,), b"b")),
            r"only for an empty numpy\.ndarray, got shape \(1048576,\)",
        ),
    ],
)
def test_pickles_cannot_allocate_more_than_they_hold(tmp_path, gadget, words):
    """A few bytes naming an admitted constructor with a count must not allocate that much (bytearray(2**33): 8 GB)."""
    path = tmp_path / "alloc.pkl"
    path.write_bytes(pickle.dumps({"train": gadget}, protocol=2))
    with pytest.raises(FeatureFileError, match=r"alloc\.pkl is not a readable pickle of plain data: .*" + words):
        ds.safe_load_pickle(path)


# ============================================================================ checkpoints
def checkpoint(tmp_path: Path, name: str = "ckpt", **extra) -> Path:
    DAFHead(DAFConfig({"text": 8, "audio": 4})).save_pretrained(tmp_path / name, extra=extra)
    return tmp_path / name


def rewrite(path: Path, change) -> None:
    meta = json.loads((path / CONFIG_FILE).read_text())
    change(meta)
    (path / CONFIG_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"projection_size": 30_000}, f"projection_size must be in 1..{MAX_LAYER_SIZE}, got 30000"),
        ({"hidden_size": 10**9}, f"hidden_size must be in 1..{MAX_LAYER_SIZE}, got 1000000000"),
        ({"attention_size": 30_000}, "attention_size must be in 1..8192"),
        ({"n_outputs": 10**9}, "n_outputs must be in 1..64"),
        (
            {"modalities": {"text": 10**9}},
            f"input dimension of modality 'text' must be in 1..{MAX_INPUT_DIM}, got 1000000000",
        ),
        # each size within its limit, together too many weights
        (
            {"modalities": {"text": 30_000, "audio": 30_000, "video": 30_000}, "projection_size": 8192},
            f"this head would hold [0-9,]+ weights, more than the {MAX_WEIGHTS:,} accepted",
        ),
    ],
)
def test_checkpoint_sizes_are_refused_before_allocation(tmp_path, changes, words):
    path = checkpoint(tmp_path)
    rewrite(path, lambda m: m["config"].update(changes))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=rf"ckpt/config\.json: invalid head config: {words}"):
        read_config(path)
    before = peak_rss_mb()
    with pytest.raises(CheckpointError, match=words):
        DAFHead.from_pretrained(path)
    assert time.perf_counter() - start < 1.0 and peak_rss_mb() - before < 100


@pytest.mark.parametrize("fusion", ["dynamic", "static", "mean", "concat"])
def test_n_weights_counts_what_the_head_allocates(fusion):
    cfg = DAFConfig(
        {"text": 12, "audio": 6, "video": 3},
        fusion=fusion,
        n_outputs=3,
        projection_size=10,
        attention_size=7,
        hidden_size=9,
    )
    assert cfg.n_weights == sum(t.numel() for t in DAFHead(cfg).state_dict().values())
    with pytest.raises(ConfigError, match="more than the 67,108,864 accepted"):
        DAFConfig({"text": MAX_INPUT_DIM, "audio": MAX_INPUT_DIM}, projection_size=1024, fusion=fusion)


def test_weights_header_is_checked_before_tensors_are_read(tmp_path):
    """A model.safetensors whose header claims a 512 MiB tensor (a sparse file) is refused from the header."""
    path = checkpoint(tmp_path)
    header = json.dumps(
        {"projections.text.weight": {"dtype": "F32", "shape": [128, 1 << 20], "data_offsets": [0, 512 << 20]}}
    ).encode()
    with (path / WEIGHTS_FILE).open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + (512 << 20))
    before, start = peak_rss_mb(), time.perf_counter()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing tensor\(s\) \[.*'mlp_out.bias'"):
        DAFHead.from_pretrained(path)
    assert time.perf_counter() - start < 1.0 and peak_rss_mb() - before < 100


def test_config_json_nesting_size_and_encoders_are_typed_errors(tmp_path, capsys):
    deep = checkpoint(tmp_path, "deep")
    (deep / CONFIG_FILE).write_text('{"format": "fastdaf-daf-head", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CheckpointError, match=r"deep/config\.json nests JSON too deeply to read"):
        read_config(deep)
    big = checkpoint(tmp_path, "big")
    with (big / CONFIG_FILE).open("a") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)
    with pytest.raises(
        CheckpointError, match=r"big/config\.json is 16,777,217 bytes; a checkpoint config\.json is at most 16,777,216"
    ):
        read_config(big)
    for name, encoders, words in (
        ("list", ["text"], "'extra.encoders' is a list"),
        ("number", {"text": 5}, "'extra.encoders.text' is a int"),
    ):
        bad = checkpoint(tmp_path, name, encoders=encoders)
        with pytest.raises(
            CheckpointError,
            match=rf"{name}/config\.json: {words}; expected an object mapping a modality name to an encoder spec",
        ):
            read_config(bad)
    assert (
        read_config(checkpoint(tmp_path, "fine", encoders={"text": "default", "audio": {"kind": "acoustic"}}))[1][
            "encoders"
        ]["text"]
        == "default"
    )
    # the CLI turns them into exit code 2 with the message, before any model or data is loaded
    for ckpt, words in ((deep, "nests JSON too deeply"), (tmp_path / "list", "'extra.encoders' is a list")):
        for argv in (
            ["predict", "--checkpoint", str(ckpt), "--text", "hi"],
            ["eval", str(tmp_path / "absent.pkl"), "--checkpoint", str(ckpt)],
        ):
            assert cli_main(argv) == 2
            err = capsys.readouterr().err
            assert f"fastdaf {argv[0]}: error: " in err and words in err and "Traceback" not in err


# ============================================================================ .csd folders
def labels_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "csd"
    folder.mkdir()
    write_csd(folder / "labels.csd", "L", {"A": (np.zeros((1, 7), np.float32), np.array([[0.0, 1.0]]))})
    return folder


def load(folder: Path):
    return ds.load_csd_folder(folder, folds={"train": ["A"]})


def test_csd_shapes_are_checked_before_reading(tmp_path):
    """A small file whose (compressed, never written) dataset claims 200,000 x 1000 values is refused from its
    metadata."""
    folder = labels_folder(tmp_path)
    with h5py.File(folder / "covarep.csd", "w") as f:
        video = f.create_group("C/data/A")
        video.create_dataset("features", shape=(200_000, 1000), dtype="f4", chunks=(1000, 1000), compression="gzip")
        video.create_dataset("intervals", shape=(200_000, 2), dtype="f8", chunks=(1000, 2), compression="gzip")
    assert (folder / "covarep.csd").stat().st_size < 200_000
    before, start = peak_rss_mb(), time.perf_counter()
    with pytest.raises(
        FeatureFileError,
        match=r"covarep\.csd: /C/data/A/features has shape \[200000, 1000\]; "
        r"accepted: at most 65,536 columns and 67,108,864 values",
    ):
        load(folder)
    assert time.perf_counter() - start < 1.0 and peak_rss_mb() - before < 100
    # the labels file is bounded the same way: segments are counted from the shapes before any label is read
    with h5py.File(folder / "labels.csd", "a") as f:
        del f["L/data/A/features"], f["L/data/A/intervals"]
        f["L/data/A"].create_dataset("features", shape=(300_000, 7), dtype="f4", chunks=(1000, 7), compression="gzip")
        f["L/data/A"].create_dataset("intervals", shape=(300_000, 2), dtype="f8", chunks=(1000, 2), compression="gzip")
    with pytest.raises(
        FeatureFileError,
        match=r"labels\.csd: video 'A' has labels \[300000, 7\] after 0 segments; accepted: at most 200,000",
    ):
        load(folder)


def test_csd_links_and_outside_data_are_refused(tmp_path):
    folder = labels_folder(tmp_path)
    other = tmp_path / "other.h5"
    write_csd(other, "C", {"A": (np.full((1, 3), 7.0), np.array([[0.0, 1.0]]))})
    cases = {
        "to_other_file": lambda f: f.__setitem__("C", h5py.ExternalLink(str(other), "/C")),
        "to_passwd": lambda f: f.create_group("C/data").__setitem__("A", h5py.ExternalLink("/etc/passwd", "/x")),
        "in_metadata": lambda f: (
            write_plain(f),
            f.create_group("C/metadata").__setitem__("m", h5py.ExternalLink(str(other), "/C")),
        ),
        "soft": lambda f: (write_plain(f, "B"), f.__setitem__("C/data/A", h5py.SoftLink("/C/data/B"))),
    }
    words = {
        "to_other_file": rf"/C is an external link to {other}:/C",
        "to_passwd": r"/C/data/A is an external link to /etc/passwd:/x",
        "in_metadata": rf"/C/metadata/m is an external link to {other}:/C",
        "soft": r"/C/data/A is a soft link to /C/data/B",
    }
    for name, make in cases.items():
        with h5py.File(folder / "covarep.csd", "w") as f:
            make(f)
        with pytest.raises(
            FeatureFileError,
            match=rf"covarep\.csd: {words[name]}; \.csd entries must be plain groups and datasets inside the file",
        ):
            load(folder)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.ones(3).tobytes())
    with h5py.File(folder / "covarep.csd", "w") as f:
        video = f.create_group("C/data/A")
        video.create_dataset("features", shape=(1, 3), dtype="f8", external=[(str(raw), 0, 24)])
        video["intervals"] = np.array([[0.0, 1.0]])
    with pytest.raises(
        FeatureFileError, match=r"covarep\.csd: dataset /C/data/A/features keeps its data in other files"
    ):
        load(folder)


def write_plain(f: h5py.File, vid: str = "A") -> None:
    video = f.require_group(f"C/data/{vid}")
    video["features"] = np.ones((1, 3))
    video["intervals"] = np.array([[0.0, 1.0]])


def test_csd_oversized_metadata_is_skipped_unread(tmp_path):
    folder = labels_folder(tmp_path)
    with h5py.File(folder / "covarep.csd", "w") as f:
        write_plain(f)
        meta = f.create_group("C/metadata")
        meta["root name"] = "COVAREP"
        meta.create_dataset(
            "huge", shape=(1 << 16,), dtype="S4096", chunks=(1024,), compression="gzip"
        )  # 256 MiB if read
    before = peak_rss_mb()
    fs = load(folder)
    assert fs.info["metadata"]["audio"] == {"root name": "COVAREP"} and peak_rss_mb() - before < 100
