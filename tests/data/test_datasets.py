"""Dataset readers: MOSEI transcript CSVs, MMSA pickles (restricted unpickling), SDK .csd folders; hostile files
refused quickly, before the work or memory they ask for, with a typed error (issue 13)."""

from __future__ import annotations

import csv
import datetime
import os
import pickle
import struct
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from builders import Reduce, deadline, dump, mmsa_split, peak_rss_mb, write_csd

from fastdaf import data as ds
from fastdaf.errors import FeatureFileError, InputError
from fastdaf.features import FeatureSet


# ============================================================================ helpers
def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


MOSEI_HEADER = ["", "sentence", "polarity", *ds.MOSEI_EMOTIONS]


def mosei_row(seg: str, text: str = "a sp b", label: object = 1.0, emo: object = 0.0) -> list[object]:
    return [seg, text, label, emo, 0.0, 0.0, 0.0, 0.0, 0.0]


class Evil:
    """Pickles as a call to os.system that would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Custom:
    def __init__(self) -> None:
        self.x = 1


# ============================================================================ transcripts
def test_real_mosei_transcripts(shared_data):
    folder = shared_data / "cmu-mosei-text"
    for name, count in (("train", 16327), ("valid", 1871)):
        rows = ds.read_mosei_transcripts(folder / f"{name}.csv")
        assert len(rows) == count
        assert {r.split for r in rows} == {name}
        labels = np.array([r.label for r in rows])
        assert labels.min() >= -3 and labels.max() <= 3
        # published values are rounded to 2 decimals; most are thirds, a few (two-annotator means) sixths
        thirds = np.abs(labels * 3 - np.round(labels * 3)) / 3
        sixths = np.abs(labels * 6 - np.round(labels * 6)) / 6
        assert np.all(sixths <= 0.005 + 1e-9)
        assert np.mean(thirds <= 0.005 + 1e-9) > 0.99
        for r in rows:
            assert set(r.emotions) == set(ds.MOSEI_EMOTIONS)
            assert all(0 <= v <= 3 for v in r.emotions.values())
        # cross-check every row against an independent csv parse of the same file
        with (folder / f"{name}.csv").open(newline="") as f:
            raw = list(csv.reader(f))[1:]
        assert [r.id for r in rows] == [c[0] for c in raw]
        assert [r.text for r in rows] == [c[1] for c in raw]
        assert [r.label for r in rows] == [float(c[2]) for c in raw]
        assert [r.emotions["fear"] for r in rows] == [float(c[8]) for c in raw]
        assert [r.video for r in rows] == [c[0][: c[0].index("[")] for c in raw]
    both = ds.read_transcript_dir(folder, strict_mosei=True)
    assert len(both) == 16327 + 1871
    assert sum(r.split == "valid" for r in both) == 1871


def test_generic_csv_columns_and_splits(tmp_path):
    path = write_csv(
        tmp_path / "mine.csv",
        ["id", "text", "label", "split"],
        [["v1[0]", "hello", "0.5", "dev"], ["v1[1]", "there", "-1", ""], ["solo", "x", "2", "test"]],
    )
    rows = ds.read_transcript_csv(path)
    assert [(r.id, r.video, r.text, r.label, r.split) for r in rows] == [
        ("v1[0]", "v1", "hello", 0.5, "dev"),
        ("v1[1]", "v1", "there", -1.0, "mine"),
        ("solo", "solo", "x", 2.0, "test"),
    ]
    assert rows[0].emotions == {}
    assert {r.split for r in ds.read_transcript_csv(path, split="train")} == {"train"}
    # the strict MOSEI reader wants the six emotion columns
    with pytest.raises(FeatureFileError, match=r"mine\.csv.*'happiness'"):
        ds.read_mosei_transcripts(path)


@pytest.mark.parametrize(
    "header, rows, pattern",
    [
        (["", "sentence", "score"], [["a[0]", "x", "1"]], r"bad\.csv.*label column \('polarity' or 'label'\)"),
        (["key", "sentence", "polarity"], [["a[0]", "x", "1"]], r"bad\.csv.*an id column"),
        (["", "words", "polarity"], [["a[0]", "x", "1"]], r"bad\.csv.*text column"),
        (
            ["", "sentence", "polarity"],
            [["a[0]", "x", "1"], ["a[1]", "y", "high"]],
            r"bad\.csv, line 3: column 'polarity' is 'high'",
        ),
        (["", "sentence", "polarity"], [["a[0]", "x", "nan"]], r"bad\.csv, line 2: column 'polarity' is 'nan'"),
        (
            ["", "sentence", "polarity"],
            [["a[0]", "x", "1"], ["a[1]", "x", "1"], ["a[0]", "z", "0"]],
            r"bad\.csv, line 4: duplicate id 'a\[0\]' \(first on line 2\)",
        ),
        (["", "sentence", "polarity"], [["a[0]", "x"]], r"bad\.csv, line 2: 2 fields, expected 3"),
    ],
)
def test_transcript_errors_name_file_and_line(tmp_path, header, rows, pattern):
    path = write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(FeatureFileError, match=pattern):
        ds.read_transcript_csv(path)


def test_strict_mosei_checks(tmp_path):
    ok = write_csv(tmp_path / "train.csv", MOSEI_HEADER, [mosei_row("v[0]"), mosei_row("v[1]", label=-2.33, emo=1.67)])
    rows = ds.read_mosei_transcripts(ok)
    assert rows[1].label == -2.33 and rows[1].emotions["happiness"] == 1.67 and rows[1].split == "train"
    with pytest.raises(FeatureFileError, match=r"x\.csv, line 3: polarity 3\.5 is outside \[-3, 3\]"):
        ds.read_mosei_transcripts(
            write_csv(tmp_path / "x.csv", MOSEI_HEADER, [mosei_row("v[0]"), mosei_row("v[1]", label=3.5)])
        )
    with pytest.raises(FeatureFileError, match=r"y\.csv, line 2: emotion intensities \{'happiness': -1\.0\}"):
        ds.read_mosei_transcripts(write_csv(tmp_path / "y.csv", MOSEI_HEADER, [mosei_row("v[0]", emo=-1)]))
    with pytest.raises(FeatureFileError, match=r"z\.csv, line 2: id 'novideo' is not shaped"):
        ds.read_mosei_transcripts(write_csv(tmp_path / "z.csv", MOSEI_HEADER, [mosei_row("novideo")]))
    with pytest.raises(FeatureFileError, match=r"no transcript CSV at .*missing\.csv"):
        ds.read_mosei_transcripts(tmp_path / "missing.csv")


def test_transcript_dir_splits_and_cross_file_duplicates(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    write_csv(d / "train.csv", MOSEI_HEADER, [mosei_row("a[0]"), mosei_row("a[1]")])
    write_csv(d / "valid.csv", MOSEI_HEADER, [mosei_row("b[0]")])
    rows = ds.read_transcript_dir(d)
    assert {r.id: r.split for r in rows} == {"a[0]": "train", "a[1]": "train", "b[0]": "valid"}
    write_csv(d / "test.csv", MOSEI_HEADER, [mosei_row("a[1]")])
    with pytest.raises(
        FeatureFileError, match=r"'a\[1\]' is in both (train\.csv and test\.csv|test\.csv and train\.csv)"
    ):
        ds.read_transcript_dir(d)
    with pytest.raises(FeatureFileError, match="no .csv transcript files"):
        (tmp_path / "empty").mkdir()
        ds.read_transcript_dir(tmp_path / "empty")


# ============================================================================ MMSA pickles
@pytest.mark.parametrize("aligned", [True, False])
def test_mmsa_masked_pooling(tmp_path, aligned):
    rng = np.random.default_rng(0 if aligned else 1)
    data = {s: mmsa_split(n, 9, aligned=aligned, rng=rng) for s, n in (("train", 5), ("valid", 3), ("test", 4))}
    data["train"]["audio"][1, 0, 2] = -np.inf  # a valid frame: MMSA turns it into 0
    path = dump(data, tmp_path / ("aligned_50.pkl" if aligned else "unaligned_50.pkl"))
    fs = ds.load_mmsa_pickle(path)
    assert fs.modalities == {"text": 8, "audio": 5, "video": 3}
    assert len(fs) == 12 and fs.present.all()
    assert fs.splits == ["train"] * 5 + ["valid"] * 3 + ["test"] * 4
    assert fs.ids == [f"vid{i}$_${i}" for s in ("train", "valid", "test") for i in range(len(data[s]["text"]))]
    np.testing.assert_allclose(
        fs.labels.numpy(), np.concatenate([data[s]["regression_labels"] for s in ("train", "valid", "test")])
    )
    row = 0
    for s in ("train", "valid", "test"):
        p = data[s]
        for i in range(len(p["text"])):
            t = int(p["text_bert"][i, 1].sum())
            a = t if aligned else p["audio_lengths"][i]
            v = t if aligned else int(p["vision_lengths"][i])
            audio = p["audio"][i, :a].astype(np.float64)
            audio[np.isneginf(audio)] = 0.0
            np.testing.assert_allclose(fs.features["text"][row].numpy(), p["text"][i, :t].mean(0), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(fs.features["audio"][row].numpy(), audio.mean(0), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(
                fs.features["video"][row].numpy(), p["vision"][i, :v].mean(0), rtol=1e-5, atol=1e-6
            )
            row += 1
    assert torch.isfinite(fs.features["audio"]).all() and fs.features["audio"].abs().max() < 10
    rules = fs.info["pooling"]["train"]
    assert ("aligned" in rules["audio"]) and (("lengths" in rules["audio"]) != aligned)
    # round-trips through the fastdaf feature file
    back = FeatureSet.load(fs.save(tmp_path / "f.safetensors"))
    assert back.ids == fs.ids and torch.equal(back.features["video"], fs.features["video"])


def test_mmsa_empty_rows_absent_and_subset_of_splits(tmp_path):
    rng = np.random.default_rng(2)
    part = mmsa_split(3, 6, aligned=False, rng=rng)
    part["audio_lengths"][2] = 0
    part["text_bert"][1, 1] = 0  # no text token: text absent for row 1
    fs = ds.load_mmsa_pickle(dump({"valid": part}, tmp_path / "u.pkl", protocol=2))
    assert fs.splits == ["valid"] * 3
    assert fs.present.tolist() == [[True, True, True], [False, True, True], [True, False, True]]
    assert torch.all(fs.features["text"][1] == 0) and torch.all(fs.features["audio"][2] == 0)
    assert fs.info["absent"] == {"text": 1, "audio": 1, "video": 0}


@pytest.mark.parametrize(
    "mutate, pattern",
    [
        (
            lambda p: p["audio"].__setitem__((2, 0, 1), np.nan),
            r"split 'train', modality 'audio', row 2 .*non-finite value nan",
        ),
        (
            lambda p: p["audio"].__setitem__((1, 0, 0), np.inf),
            r"split 'train', modality 'audio', row 1 .*non-finite value inf",
        ),
        (
            lambda p: p["vision"].__setitem__((3, 0, 0), -np.inf),
            r"split 'train', modality 'video', row 3 .*only in audio",
        ),
        (lambda p: p["text"].__setitem__((0, 0, 0), np.nan), r"split 'train', modality 'text', row 0"),
        (lambda p: p.pop("regression_labels"), r"split 'train' has no 'regression_labels'"),
        (
            lambda p: p.pop("audio_lengths"),
            r"split 'train' has no audio_lengths and 'audio' has 7 time steps, not the text length 9",
        ),
        (lambda p: p.__setitem__("vision_lengths", [1, 2, 3, 99]), r"'vision_lengths' row 3 is 99, expected 0\.\.6"),
        (
            lambda p: p.__setitem__("text_bert", p["text_bert"][:, :2]),
            r"'text_bert' has shape \[4, 2, 9\], expected \[4, 3, 9\]",
        ),
        (lambda p: p.__setitem__("id", ["a", "b", "c"]), r"split 'train' has 3 ids for 4 rows"),
        (
            lambda p: p.__setitem__("regression_labels", np.array([0, 1, np.nan, 0])),
            r"'regression_labels' row 2 is nan",
        ),
    ],
)
def test_mmsa_errors_name_split_modality_row(tmp_path, mutate, pattern):
    part = mmsa_split(4, 9, aligned=False, rng=np.random.default_rng(3))
    mutate(part)
    path = dump({"train": part}, tmp_path / "broken.pkl")
    with pytest.raises(FeatureFileError, match=r"broken\.pkl.*" + pattern):
        ds.load_mmsa_pickle(path)


def test_mmsa_top_level_shape(tmp_path):
    with pytest.raises(FeatureFileError, match=r"top\.pkl: top level is a list"):
        ds.load_mmsa_pickle(dump([1, 2], tmp_path / "top.pkl"))
    with pytest.raises(FeatureFileError, match=r"keys\.pkl: found keys \['training'\], expected 'train'"):
        ds.load_mmsa_pickle(dump({"training": {}}, tmp_path / "keys.pkl"))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_safe_unpickler_admits_plain_data(tmp_path, protocol):
    obj = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "s": np.array(["x", "yz"], dtype=object),
        "u": np.array(["p", "q"]),
        "n": np.int64(4),
        "l": [1, 2.5, 3j, "t", b"raw", bytearray(b"ba"), (1, 2), {3}, frozenset({4}), None, True],
    }
    back = ds.safe_load_pickle(dump(obj, tmp_path / "ok.pkl", protocol))
    np.testing.assert_array_equal(back["a"], obj["a"])
    assert back["s"].tolist() == ["x", "yz"] and back["u"].tolist() == ["p", "q"] and back["n"] == 4
    assert back["l"] == obj["l"]


def test_safe_unpickler_refuses_code_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"train": {"text": Evil(marker)}})
    (tmp_path / "evil.pkl").write_bytes(payload)
    with pytest.raises(
        ds.UnsafePickleError,
        match=r"evil\.pkl: refused to load (posix|os)\.system: only numpy arrays, lists, dicts, strings and numbers",
    ):
        ds.load_mmsa_pickle(tmp_path / "evil.pkl")
    assert not marker.exists()
    # control: the same bytes really do run the command under a plain pickle.loads
    pickle.loads(payload)
    assert marker.exists()

    with pytest.raises(FeatureFileError, match=r"refused to load builtins\.eval"):
        ds.load_mmsa_pickle(dump({"x": Reduce(eval, ("1+1",))}, tmp_path / "eval.pkl"))


@pytest.mark.parametrize(
    "obj, pattern",
    [
        ({"when": datetime.datetime(2024, 1, 1)}, r"refused to load datetime\.datetime"),
        ({"c": Custom()}, r"refused to load (test_datasets|tests\.test_datasets)\.Custom"),
        ({"s": np.array(["a", 3], dtype=object)}, r"object array at <top>/s holds a int at flat index 1"),
        ({"s": np.array([["a"], [[1]]], dtype=object)}, r"object array at <top>/s holds a list"),
    ],
)
def test_safe_unpickler_refuses_non_data(tmp_path, obj, pattern):
    path = dump(obj, tmp_path / "nondata.pkl")
    with pytest.raises(FeatureFileError, match=r"nondata\.pkl.*" + pattern):
        ds.safe_load_pickle(path)


def test_corrupt_pickle(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"train": np.zeros(100)})[:40])
    with pytest.raises(FeatureFileError, match=r"cut\.pkl is not a readable pickle"):
        ds.load_mmsa_pickle(path)


# ---------------------------------------------------------------------------- hostile pickles (issue 13)
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


# ============================================================================ .csd folders
def csd_folder(tmp_path: Path, *, extra: dict[str, dict] | None = None, metadata: bool = True) -> Path:
    """Labels: A has segments [0,2] and [2,5]; B has [0,1]; C has [10,11]."""
    folder = tmp_path / "csd"
    folder.mkdir(exist_ok=True)

    def lab(rows: list) -> np.ndarray:
        return np.array(rows, dtype=np.float32)

    write_csd(
        folder / "CMU_MOSEI_Labels.csd",
        "All Labels",
        {
            "A": (lab([[1.0, 0, 0, 0, 0, 0, 0.5], [-2.0, 1, 0, 0, 0, 0, 0]]), np.array([[0, 2], [2, 5]], float)),
            "B": (lab([[0.33, 0, 0, 0, 0, 0, 0]]), np.array([[0, 1]], float)),
            "C": (lab([[3.0, 0, 0, 0, 0, 0, 0]]), np.array([[10, 11]], float)),
        },
        metadata={"dimension names": '["sentiment", "happy"]', "root name": "All Labels"} if metadata else None,
    )
    # audio rows: [0,1] [1,2] [2,3] [3,4] [4,6]; row 2 touches segment [0,2] only at its boundary
    audio = np.array([[1, 10], [3, -np.inf], [5, 50], [7, 70], [9, 90]], dtype=np.float32)
    write_csd(
        folder / "CMU_MOSEI_COVAREP.csd",
        "COVAREP",
        {
            "A": (audio, np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 6]], float)),
            "B": (np.array([[100, 100]], np.float32), np.array([[5, 6]], float)),  # no overlap with [0,1]
        },
    )  # C missing entirely
    video = np.array([[2.0], [4.0], [np.nan]], dtype=np.float32)  # the NaN row overlaps no segment
    write_csd(
        folder / "CMU_MOSEI_VisualFacet42.csd",
        "FACET 4.2",
        {
            "A": (video, np.array([[0.5, 1.5], [1.5, 3.0], [20, 21]], float)),
            "B": (np.array([[6.0], [8.0]], np.float32), np.array([[0, 0.5], [0.9, 1.2]], float)),
            "C": (np.array([[1.0]], np.float32), np.array([[10.5, 10.6]], float)),
        },
    )
    write_csd(
        folder / "CMU_MOSEI_TimestampedWordVectors.csd",
        "glove_vectors",
        {
            "A": (np.array([[1, 1, 1], [3, 3, 3]], np.float32), np.array([[0, 4], [4, 5]], float)),
            "C": (np.array([[2, 4, 6]], np.float32), np.array([[9, 12]], float)),
        },
    )
    for name, videos in (extra or {}).items():
        write_csd(folder / name, "extra", videos)
    return folder


def test_csd_overlap_pooling_and_absent_modalities(tmp_path):
    folder = csd_folder(tmp_path)
    fs = ds.load_csd_folder(folder, folds={"train": ["A"], "valid": ["B"], "test": ["C"]})
    assert fs.ids == ["A[0]", "A[1]", "B[0]", "C[0]"]
    assert fs.splits == ["train", "train", "valid", "test"]
    assert list(fs.modalities) == ["text", "audio", "video"] and fs.modalities == {"text": 3, "audio": 2, "video": 1}
    assert fs.labels.tolist() == pytest.approx([1.0, -2.0, 0.33, 3.0])
    assert fs.label_names == ["sentiment"] and fs.info["label_vector_columns"][0] == "sentiment"
    # audio: A[0]=[0,2] -> rows 0,1 (row 2 only touches at t=2); -inf -> 0.  A[1]=[2,5] -> rows 2,3,4
    audio = fs.features["audio"].numpy()
    np.testing.assert_allclose(audio[0], [(1 + 3) / 2, (10 + 0) / 2])
    np.testing.assert_allclose(audio[1], [(5 + 7 + 9) / 3, (50 + 70 + 90) / 3])
    np.testing.assert_array_equal(audio[2:], 0)  # B: no overlapping row; C: not in the file
    # video: A[0] <- rows 0,1; A[1] <- row 1; NaN row 2 overlaps nothing; B <- both rows; C <- its row
    np.testing.assert_allclose(fs.features["video"].numpy()[:, 0], [3.0, 4.0, 7.0, 1.0])
    # text: A[0] <- row 0; A[1] <- rows 0 and 1; B missing; C <- its row
    np.testing.assert_allclose(fs.features["text"].numpy(), [[1, 1, 1], [2, 2, 2], [0, 0, 0], [2, 4, 6]])
    assert fs.present.tolist() == [[True, True, True], [True, True, True], [False, False, True], [True, False, True]]
    assert fs.info["absent"] == {"text": 1, "audio": 2, "video": 0}
    assert fs.info["metadata"]["labels"]["root name"] == "All Labels"
    assert fs.info["metadata"]["labels"]["dimension names"] == '["sentiment", "happy"]'
    back = FeatureSet.load(fs.save(tmp_path / "csd.safetensors"))
    assert back.ids == fs.ids and torch.equal(back.present, fs.present)

    emotion = ds.load_csd_folder(folder, folds={"train": ["A"]}, label_column=6)
    assert emotion.ids == ["A[0]", "A[1]"] and emotion.labels.tolist() == [0.5, 0.0] and emotion.label_names == ["fear"]
    assert emotion.info["videos_without_fold"] == 2


def test_csd_non_finite_in_pooled_row_is_named(tmp_path):
    folder = csd_folder(tmp_path, metadata=False)
    write_csd(
        folder / "CMU_MOSEI_VisualFacet42.csd",
        "FACET",
        {"A": (np.array([[1.0], [-np.inf]], np.float32), np.array([[0, 1], [1, 2]], float))},
    )
    with pytest.raises(
        FeatureFileError, match=r"VisualFacet42\.csd: video 'A', feature row 1, column 0 is -inf \(modality 'video'\)"
    ):
        ds.load_csd_folder(folder, folds={"train": ["A", "B", "C"]})
    # -inf is accepted (as 0) when video is listed in zero_neg_inf
    fs = ds.load_csd_folder(folder, folds={"train": ["A"]}, zero_neg_inf=("audio", "video"))
    assert fs.features["video"][0, 0].item() == pytest.approx(0.5)


def test_csd_name_inference_and_ambiguity(tmp_path):
    folder = csd_folder(tmp_path)
    roles = ds.infer_csd_modalities(folder)
    assert {r: p.name for r, p in roles.items()} == {
        "labels": "CMU_MOSEI_Labels.csd",
        "audio": "CMU_MOSEI_COVAREP.csd",
        "video": "CMU_MOSEI_VisualFacet42.csd",
        "text": "CMU_MOSEI_TimestampedWordVectors.csd",
    }
    one = {"A": (np.ones((1, 4), np.float32), np.array([[0, 1]], float))}
    csd_folder(tmp_path, extra={"CMU_MOSEI_VisualOpenFace2.csd": one, "CMU_MOSEI_TimestampedPhones.csd": one})
    with pytest.raises(
        FeatureFileError, match=r"2 files fit video \(CMU_MOSEI_VisualFacet42\.csd, CMU_MOSEI_VisualOpenFace2\.csd\)"
    ) as err:
        ds.load_csd_folder(folder, folds={"train": ["A"]})
    assert "CMU_MOSEI_TimestampedPhones.csd fits no role" in str(err.value) and "explicit mapping" in str(err.value)
    (tmp_path / "amb").mkdir()
    write_csd(tmp_path / "amb" / "labels.csd", "l", one)
    write_csd(tmp_path / "amb" / "audio_video.csd", "x", one)
    with pytest.raises(FeatureFileError, match=r"audio_video\.csd fits several roles \(audio, video\)"):
        ds.infer_csd_modalities(tmp_path / "amb")
    # an explicit mapping settles it and may use any modality name
    fs = ds.load_csd_folder(
        folder,
        folds={"train": ["A"]},
        modalities={
            "labels": "CMU_MOSEI_Labels.csd",
            "openface": "CMU_MOSEI_VisualOpenFace2.csd",
            "audio": str(folder / "CMU_MOSEI_COVAREP.csd"),
        },
    )
    assert list(fs.modalities) == ["audio", "openface"] and fs.modalities["openface"] == 4
    assert fs.present[:, 1].tolist() == [True, False]  # OpenFace row [0,1] overlaps A[0]=[0,2] only
    with pytest.raises(InputError, match="include 'labels'"):
        ds.load_csd_folder(folder, modalities={"audio": "CMU_MOSEI_COVAREP.csd"})
    with pytest.raises(FeatureFileError, match=r"no \.csd file at .*nothere\.csd"):
        ds.load_csd_folder(
            folder, folds={"train": ["A"]}, modalities={"labels": "CMU_MOSEI_Labels.csd", "audio": "nothere.csd"}
        )


def test_csd_default_folds_from_transcripts(tmp_path, monkeypatch):
    folder = csd_folder(tmp_path)
    t = tmp_path / "transcripts"
    t.mkdir()
    write_csv(t / "train.csv", MOSEI_HEADER, [mosei_row("A[0]"), mosei_row("A[1]")])
    write_csv(t / "valid.csv", MOSEI_HEADER, [mosei_row("B[0]")])
    fs = ds.load_csd_folder(folder, transcripts=t)
    assert dict(zip(fs.ids, fs.splits)) == {"A[0]": "train", "A[1]": "train", "B[0]": "valid", "C[0]": "test"}
    with pytest.raises(FeatureFileError, match=r"no transcript folder at .*nowhere"):
        ds.load_csd_folder(folder, transcripts=tmp_path / "nowhere")
    # the default folder ($FASTDAF_MOSEI_TRANSCRIPTS) unset or missing: every video in train, and info says so
    monkeypatch.delenv("FASTDAF_MOSEI_TRANSCRIPTS", raising=False)
    fs = ds.load_csd_folder(folder)
    assert set(fs.splits) == {"train"} and len(fs) == 4 and "every video is in split 'train'" in fs.info["folds"]
    monkeypatch.setenv("FASTDAF_MOSEI_TRANSCRIPTS", str(tmp_path / "absent"))
    fs = ds.load_csd_folder(folder)
    assert set(fs.splits) == {"train"} and len(fs) == 4 and "every video is in split 'train'" in fs.info["folds"]
    monkeypatch.setenv("FASTDAF_MOSEI_TRANSCRIPTS", str(t))
    assert dict(zip(ds.load_csd_folder(folder).ids, ds.load_csd_folder(folder).splits))["B[0]"] == "valid"


def test_csd_default_folds_with_the_shared_transcripts(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("FASTDAF_MOSEI_TRANSCRIPTS", str(shared_data / "cmu-mosei-text"))
    with (shared_data / "cmu-mosei-text" / "train.csv").open(newline="") as f:
        train_video = list(csv.reader(f))[1][0].split("[")[0]
    with (shared_data / "cmu-mosei-text" / "valid.csv").open(newline="") as f:
        valid_video = list(csv.reader(f))[1][0].split("[")[0]
    folder = tmp_path / "real_ids"
    folder.mkdir()
    seg = (np.zeros((1, 7), np.float32), np.array([[0, 1]], float))
    write_csd(folder / "labels.csd", "All Labels", {train_video: seg, valid_video: seg, "not_a_mosei_video": seg})
    write_csd(
        folder / "covarep.csd", "COVAREP", {train_video: (np.ones((1, 2), np.float32), np.array([[0, 1]], float))}
    )
    fs = ds.load_csd_folder(folder)
    assert dict(zip(fs.ids, fs.splits)) == {
        f"{train_video}[0]": "train",
        f"{valid_video}[0]": "valid",
        "not_a_mosei_video[0]": "test",
    }


def test_csd_malformed_files(tmp_path):
    folder = csd_folder(tmp_path)
    with h5py.File(folder / "CMU_MOSEI_Labels.csd", "a") as f:
        del f["All Labels/data/B/intervals"]
    with pytest.raises(
        FeatureFileError,
        match=r"CMU_MOSEI_Labels\.csd: /All Labels/data/B must be a group with 'features' and 'intervals'",
    ):
        ds.load_csd_folder(folder, folds={"train": ["A", "B"]})
    (folder / "CMU_MOSEI_Labels.csd").write_bytes(b"not hdf5")
    with pytest.raises(FeatureFileError, match=r"CMU_MOSEI_Labels\.csd is not a readable HDF5"):
        ds.load_csd_folder(folder, folds={"train": ["A"]})
    write_csd(folder / "CMU_MOSEI_Labels.csd", "L", {"A": (np.zeros((2, 7), np.float32), np.zeros((3, 2)))})
    with pytest.raises(FeatureFileError, match=r"/L/data/A/intervals is float64 \[3, 2\], expected numbers \[2, 2\]"):
        ds.load_csd_folder(folder, folds={"train": ["A"]})
    with h5py.File(folder / "CMU_MOSEI_COVAREP.csd", "w") as f:
        f.create_group("a").create_group("data")
        f.create_group("b").create_group("data")
    write_csd(folder / "CMU_MOSEI_Labels.csd", "L", {"A": (np.zeros((1, 7), np.float32), np.array([[0, 1]], float))})
    with pytest.raises(
        FeatureFileError, match=r"COVAREP\.csd: expected exactly one top-level group holding 'data'.*\['a', 'b'\]"
    ):
        ds.load_csd_folder(folder, folds={"train": ["A"]})
    with pytest.raises(InputError, match=r"video 'A' is in folds 'train' and 'test'"):
        ds.load_csd_folder(folder, folds={"train": ["A"], "test": ["A"]})


# ---------------------------------------------------------------------------- hostile .csd files (issue 13)
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


# ============================================================================ kind detection
def test_detect_dataset_kind(tmp_path):
    (tmp_path / "f.safetensors").write_bytes(b"")
    (tmp_path / "d.PKL").write_bytes(b"")
    (tmp_path / "t.csv").write_text("")
    assert ds.detect_dataset_kind(tmp_path / "f.safetensors") == "features"
    assert ds.detect_dataset_kind(tmp_path / "d.PKL") == "mmsa"
    assert ds.detect_dataset_kind(tmp_path / "t.csv") == "transcripts"
    assert ds.detect_dataset_kind(tmp_path) == "transcripts"
    (tmp_path / "x.csd").write_bytes(b"")
    assert ds.detect_dataset_kind(tmp_path) == "csd"
    with pytest.raises(FeatureFileError, match=r"x\.csd.*pass the folder"):
        ds.detect_dataset_kind(tmp_path / "x.csd")
    (tmp_path / "y.json").write_text("{}")
    with pytest.raises(FeatureFileError, match=r"y\.json.*accepted: a \.safetensors"):
        ds.detect_dataset_kind(tmp_path / "y.json")
    with pytest.raises(FeatureFileError, match=r"no dataset at .*missing"):
        ds.detect_dataset_kind(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatureFileError, match=r"empty is a folder with no \.csd or \.csv"):
        ds.detect_dataset_kind(tmp_path / "empty")
