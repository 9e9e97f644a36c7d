"""The Ray engine's input (fastdaf.engines.ray): which files a manifest names, their rows read and checked, and
those rows as the Arrow table handed to the workers.

A manifest is one CSV/JSONL file, a folder of them (searched recursively; files named `.*` or `_*` and files that
are not .csv/.jsonl/.ndjson are skipped), or a glob in the last path component (`/data/part-*.jsonl`,
`s3://bucket/manifests/*.csv`), on the local filesystem or any filesystem pyarrow reaches (s3://, gs://, hdfs://,
...). Every file is read by `fastdaf.data.manifests.read_manifest`, so the rules are the local engine's: empty
cells are absent, ids are required and unique (across all files too) unless allowed, and relative audio paths
resolve against the manifest file's folder. One local file is read on the driver (a bad manifest is refused
before Ray starts); several, or remote ones, are parsed by Ray tasks in parallel (`parse_remotely`). A remote
file is read from a local copy, and its relative audio paths are mapped back onto the manifest's URI folder.

Each row carries its position (`_pos`: the file's index, in path order, in the high bits, the row's index in its
file in the low ones) and its name in messages, as the local engine names it, `id 'x' (line 3)`, and with
several files `id 'x' (line 3 of part-0001.csv)`. Text and audio travel as UTF-8 bytes with lone surrogates
kept (see `_input_schema`).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.manifests import read_manifest
from ..errors import ManifestError
from ..extras import require

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")
# a row's position: file index in the high bits, row index in its file in the low ones
_ROWS_PER_FILE = 2**32
_GLOB_CHARS = re.compile(r"[*?\[]")
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# remote manifests are parsed from a local copy this deep in a fresh temporary folder, so that relative
# audio paths (even with a few '..') stay inside it and can be mapped back onto the manifest's URI
_COPY_DEPTH = 16


def pyarrow_modules():
    """pyarrow and its parquet/compute/fs modules (Ray Data's dependency: present whenever ray is)."""
    modules = ("pyarrow", "pyarrow.compute", "pyarrow.fs", "pyarrow.parquet")
    return tuple(require(name, "--engine ray (bulk scoring on Ray Data)") for name in modules)


# ------------------------------------------------------------------------------------------ the rows table
def _input_schema():
    """Rows handed to the workers. Text and audio travel as UTF-8 bytes with lone surrogates kept
    ("surrogatepass"): JSON can hold text that is not valid Unicode, Arrow strings cannot, and the worker
    must see the very string the single-process path sees to give the same error."""
    pa = pyarrow_modules()[0]
    return pa.schema(
        [
            ("_pos", pa.int64()),
            ("name", pa.string()),
            ("id", pa.string()),
            ("text", pa.binary()),
            ("audio", pa.binary()),
        ]
    )


def _to_bytes(value: str | None) -> bytes | None:
    return None if value is None else value.encode("utf-8", "surrogatepass")


def from_bytes(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "surrogatepass")


def rows_table(rows: Sequence[Any], first: int, display: str | None):
    """Input rows (ManifestRow) as an Arrow table, at positions first, first + 1, ...; `display` names their
    file in messages (None: one manifest, named as the single-process path names it)."""
    pa = pyarrow_modules()[0]
    where = (lambda r: f"line {r.line}") if display is None else (lambda r: f"line {r.line} of {display}")
    return pa.table(
        {
            "_pos": list(range(first, first + len(rows))),
            "name": [f"id {r.id!r} ({where(r)})" for r in rows],
            "id": [r.id for r in rows],
            "text": [_to_bytes(r.text) for r in rows],
            "audio": [_to_bytes(r.audio) for r in rows],
        },
        schema=_input_schema(),
    )


# ----------------------------------------------------------------------------------------------- the files
def _split_uri(manifest: str):
    """(filesystem, path on it, remote?) for a local path, file:// URI or any URI pyarrow reaches."""
    pafs = pyarrow_modules()[2]
    if URI.match(manifest):
        try:
            fs, path = pafs.FileSystem.from_uri(manifest)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... naming the cause
            raise ManifestError(f"cannot open the manifest location {manifest!r}: {exc}") from exc
        return fs, path, not isinstance(fs, pafs.LocalFileSystem)
    return pafs.LocalFileSystem(), os.path.abspath(manifest), False


def manifest_files(manifest: str) -> tuple[Any, list[str], bool, str | None]:
    """The manifest files in order (sorted by path): (filesystem, paths, remote?, base folder for display).
    The base is None for a single file."""
    pafs = pyarrow_modules()[2]
    fs, path, remote = _split_uri(manifest)
    accepted = "a .csv/.jsonl/.ndjson manifest, a folder of them, or a glob like 'folder/*.jsonl'"
    try:
        folder, pattern = posixpath.split(path) if remote else os.path.split(path)
        if _GLOB_CHARS.search(pattern):
            if _GLOB_CHARS.search(folder):
                raise ManifestError(f"{manifest!r}: a glob may only be in the last path component; give {accepted}")
            infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
            files = sorted(
                i.path
                for i in infos
                if i.type == pafs.FileType.File and fnmatch.fnmatchcase(posixpath.basename(i.path), pattern)
            )
            if not files:
                raise ManifestError(f"no file matches {manifest!r}; give {accepted}")
            wrong = [f for f in files if not f.lower().endswith(MANIFEST_SUFFIXES)]
            if wrong:
                raise ManifestError(
                    f"{manifest!r} matches {len(wrong)} file(s) that are not .csv/.jsonl/.ndjson manifests "
                    f"(e.g. {wrong[0]!r}); narrow the glob"
                )
            return fs, files, remote, folder
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return fs, [path], remote, None
        if info.type != pafs.FileType.Directory:
            raise ManifestError(f"no manifest at {manifest!r}; give {accepted}")
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except OSError as exc:
        raise ManifestError(f"cannot list the manifest {manifest!r}: {exc}") from exc
    files = sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File
        and i.path.lower().endswith(MANIFEST_SUFFIXES)
        and not any(part.startswith((".", "_")) for part in _relative(i.path, path, remote).split("/"))
    )
    if not files:
        raise ManifestError(f"the folder {manifest!r} holds no .csv/.jsonl/.ndjson manifest; give {accepted}")
    return fs, files, remote, path


def _relative(path: str, base: str, remote: bool) -> str:
    rel = posixpath.relpath(path, base) if remote else os.path.relpath(path, base)
    return rel.replace(os.sep, "/")


def _read_file(fs, path: str, remote: bool, allow_duplicate_ids: bool, uri: str) -> list:
    """read_manifest on one file. A remote file is read from a local copy; its relative audio paths are
    then mapped onto the manifest's URI folder, and messages name the URI, not the copy."""
    if not remote:
        return read_manifest(path, allow_duplicate_ids=allow_duplicate_ids)
    with tempfile.TemporaryDirectory(prefix="fastdaf-manifest-") as tmp:
        base = Path(tmp).resolve()
        folder = base.joinpath(*["d"] * _COPY_DEPTH)
        folder.mkdir(parents=True)
        copy = folder / posixpath.basename(path)
        try:
            with fs.open_input_stream(path) as f:
                copy.write_bytes(f.readall())
        except OSError as exc:
            raise ManifestError(f"cannot read the manifest {uri!r}: {exc}") from exc
        try:
            rows = read_manifest(copy, allow_duplicate_ids=allow_duplicate_ids)
        except ManifestError as exc:
            raise ManifestError(str(exc).replace(str(copy), uri)) from None
    uri_folder = posixpath.dirname(uri)
    for r in rows:
        if r.audio is not None and r.audio.startswith(str(base) + os.sep):
            rel = os.path.relpath(r.audio, folder).replace(os.sep, "/")
            r.audio = _join_uri(uri_folder, rel)
    return rows


def _join_uri(folder: str, rel: str) -> str:
    """folder (a URI) / rel, with '..' resolved inside the URI's path."""
    scheme, _, rest = folder.partition("://")
    return f"{scheme}://{posixpath.normpath(posixpath.join(rest, rel))}"


def _uri_of(path: str, manifest: str, remote: bool) -> str:
    """How a file found under `manifest` is named in messages: a URI with the manifest's scheme when remote."""
    if not remote:
        return path
    scheme = manifest.split("://", 1)[0]
    return f"{scheme}://{path}"


# ------------------------------------------------------------------------------------- parsed in Ray tasks
def parse_remotely(ray, fs, files: list[str], remote: bool, base: str | None, manifest: str, allow: bool):
    """Parse every manifest file in Ray tasks (one file per task), materialised; ids checked across files."""
    items = [
        {"file": k, "path": p, "display": _relative(p, base, remote) if base is not None else posixpath.basename(p)}
        for k, p in enumerate(files)
    ]
    parsed = (
        ray.data.from_items(items, override_num_blocks=len(items))
        .map_batches(
            _parse_files,
            fn_kwargs={"fs": fs, "remote": remote, "allow_duplicate_ids": allow, "manifest": manifest},
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.TaskPoolStrategy(),
        )
        .materialize()
    )
    if not allow:
        pa = pyarrow_modules()[0]
        ids = [t for t in parsed.select_columns(["id", "name"]).iter_batches(batch_format="pyarrow", batch_size=None)]
        _check_ids_across(
            pa.concat_tables(ids) if ids else pa.table({"id": pa.array([], pa.string()), "name": []}), manifest
        )
    return parsed


def _parse_files(batch, *, fs, remote: bool, allow_duplicate_ids: bool, manifest: str):
    """map_batches function (one file per batch): the file's rows as an input table."""
    pa = pyarrow_modules()[0]
    tables = []
    for index, path, display in zip(
        batch.column("file").to_pylist(), batch.column("path").to_pylist(), batch.column("display").to_pylist()
    ):
        rows = _read_file(fs, path, remote, allow_duplicate_ids, _uri_of(path, manifest, remote))
        tables.append(rows_table(rows, index * _ROWS_PER_FILE, display))
    return pa.concat_tables(tables) if tables else _input_schema().empty_table()


def _check_ids_across(ids_table, manifest: str) -> None:
    """Refuse ids that appear in more than one file (each file's own repeats are read_manifest's to refuse)."""
    pc = pyarrow_modules()[1]
    counts = pc.value_counts(ids_table.column("id"))
    repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    if len(repeated) == 0:
        return
    shown = repeated.slice(0, 10).to_pylist()
    where: dict[str, list[str]] = {i: [] for i in shown}
    keep = ids_table.filter(pc.is_in(ids_table.column("id"), value_set=repeated.slice(0, 10)))
    for i, name in zip(keep.column("id").to_pylist(), keep.column("name").to_pylist()):
        where[i].append(name.split(" (", 1)[1].rstrip(")"))
    listed = "; ".join(f"{i!r} on {', '.join(where[i][:10])}" for i in shown)
    more = f"; and {len(repeated) - len(shown)} more" if len(repeated) > len(shown) else ""
    raise ManifestError(
        f"{manifest}: {len(repeated)} id(s) appear more than once ({listed}{more}); make ids unique, "
        "or allow repeats with --allow-duplicate-ids (allow_duplicate_ids=True)"
    )
