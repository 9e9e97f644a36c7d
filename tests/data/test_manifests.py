"""fastdaf.data.manifests: manifests are read with a byte order mark, empty and repeated ids are refused naming their
lines (issue 13, finding 7), rows still to do are counted by id, and a malformed manifest is named."""

import pytest

from fastdaf.data import ManifestRow, pending_rows, read_manifest
from fastdaf.errors import ManifestError


def test_manifest_errors(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("name,sentence\nx,y\n")
    with pytest.raises(ManifestError, match="needs an 'id' column"):
        read_manifest(bad)
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ManifestError, match="manifests are .csv or .jsonl"):
        read_manifest(tmp_path / "m.txt")
    broken = tmp_path / "m.jsonl"
    broken.write_text('{"id": "a", "text": "x"}\n{oops\n')
    with pytest.raises(ManifestError, match=r"m.jsonl:2: not valid JSON"):
        read_manifest(broken)


def test_manifests_with_a_byte_order_mark_are_read(tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_bytes("id,text\na,héllo\nb,fine\n".encode("utf-8-sig"))
    jsonl_path = tmp_path / "m.jsonl"
    jsonl_path.write_bytes('{"id": "a", "text": "héllo"}\n{"id": "b", "text": "fine"}\n'.encode("utf-8-sig"))
    for path in (csv_path, jsonl_path):
        rows = read_manifest(path)
        assert [(r.id, r.text) for r in rows] == [("a", "héllo"), ("b", "fine")]


def test_empty_and_duplicate_ids_are_refused_with_their_lines(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("id,text\na,one\nb,two\na,three\nc,four\nb,five\na,six\n")
    with pytest.raises(
        ManifestError, match=r"2 id\(s\) appear more than once \('a' on lines 2, 4, 7; 'b' on lines 3, 6\)"
    ):
        read_manifest(path)
    assert [r.id for r in read_manifest(path, allow_duplicate_ids=True)] == ["a", "b", "a", "c", "b", "a"]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"id": "a", "text": "x"}\n{"id": "  ", "text": "y"}\n{"text": "z"}\n')
    for allow in (False, True):  # an empty id is never accepted
        with pytest.raises(ManifestError, match=r"2 row\(s\) have an empty id \(line 2, 3\)"):
            read_manifest(jsonl, allow_duplicate_ids=allow)


def test_pending_rows_counts_repeated_ids():
    rows = [ManifestRow(k, i, "t", None, None, None) for k, i in enumerate("abacb", start=2)]
    assert [(r.line, r.id) for r in pending_rows(rows, ["a", "b"])] == [(4, "a"), (5, "c"), (6, "b")]
    assert [r.line for r in pending_rows(rows, ["a", "b", "a"])] == [5, 6]
    assert pending_rows(rows, []) == rows
