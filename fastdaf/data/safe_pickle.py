"""Reading a data pickle without running it: `SafeUnpickler` and `safe_load_pickle`.

Feature widths are taken from the file (768/74/35 in the MMSA releases) and must agree across splits.
Reading a pickle can run code, so the file is read by `SafeUnpickler`, which admits only what numpy
arrays, lists, dicts, sets, tuples, strings and numbers need and refuses every other global with an
`UnsafePickleError` naming the refused `module.name`, before anything of it runs. Object-dtype arrays
holding anything but `str` are refused too. Admitted constructors build only from data in the file
(`bytes(n)`, `bytearray(n)`, `numpy.ndarray(shape)` would allocate from a count and are refused). The
loaded structure is then walked once, each shared sub-object once, and refused if it has a cycle,
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import io
import pickle
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FeatureFileError

MAX_PICKLE_DEPTH = 64  # nesting of containers in a data pickle (MMSA files nest 3 levels)
MAX_PICKLE_ITEMS = 10_000_000  # list/dict/set items, shared sub-objects counted at each use (MMSA: ~10**5)

BOUNDED_REPR = reprlib.Repr()  # bounded reprs of pickle data in messages: a key may be a huge nested tuple
BOUNDED_REPR.maxstring = BOUNDED_REPR.maxother = 60


class UnsafePickleError(FeatureFileError):
    """A pickle asks for something other than plain data (a callable, a class instance): refused unrun."""


def _numpy_internals() -> dict[str, Any]:
    """numpy's pickle helpers, found under numpy._core (numpy 2) or numpy.core (numpy 1)."""
    try:
        from numpy._core import multiarray, numeric  # noqa: PLC0415 - numpy 2 / numpy 1 layouts
    except ImportError:  # pragma: no cover - numpy 1.x without the numpy._core alias
        from numpy.core import multiarray, numeric  # noqa: PLC0415 - type: ignore[no-redef]
    return {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar, "_frombuffer": numeric._frombuffer}


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """What protocol-2 pickles use to rebuild `bytes` (`_codecs.encode(str, 'latin1')`), and nothing more."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "").replace("_", "") != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is admitted only to rebuild bytes from latin-1 text")
    return text.encode("latin-1")


def _from_bytes(kind: type) -> Any:
    """`bytes` / `bytearray` rebuilt from data in the file; `bytes(n)` would allocate n bytes from a few."""

    def build(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError(f"{kind.__name__}({args[0]}) allocates from a count, not data; refused")
        return kind(*args)

    return build


class _ArrayType:
    """Stands in for `numpy.ndarray`, which a data pickle names only as `_reconstruct`'s first argument."""

    def __call__(self, *args: Any) -> Any:
        raise pickle.UnpicklingError("numpy.ndarray(...) allocates from a shape, not data; refused")


_ARRAY_TYPE = _ArrayType()


def _empty_array(numpy_reconstruct: Any) -> Any:
    """numpy's `_reconstruct`, admitted as numpy pickles use it: an empty array that the file's bytes then fill.

    A non-empty shape would allocate memory the file does not hold (a few bytes asking for gigabytes).
    """

    def build(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not _ARRAY_TYPE or not isinstance(shape, tuple) or 0 not in shape:
            raise pickle.UnpicklingError(
                f"_reconstruct is admitted only for an empty numpy.ndarray, got shape {shape!r}"
            )
        return numpy_reconstruct(np.ndarray, shape, dtype)

    return build


def _safe_globals() -> dict[tuple[str, str], Any]:
    """The only globals a data pickle may name: numpy array rebuilding, plain containers, numbers, strings.

    Each admitted callable builds only from data present in the file, so memory use stays bounded by it.
    """
    np_int = _numpy_internals()
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _ARRAY_TYPE, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = _empty_array(np_int["_reconstruct"])
        table[(f"{core}.multiarray", "scalar")] = np_int["scalar"]
        table[(f"{core}.numeric", "_frombuffer")] = np_int["_frombuffer"]
    for name in ("list", "dict", "set", "frozenset", "tuple", "str", "int", "float", "complex", "bool"):
        table[("builtins", name)] = getattr(builtins, name)
    table[("builtins", "bytes")] = _from_bytes(bytes)
    table[("builtins", "bytearray")] = _from_bytes(bytearray)
    table[("collections", "OrderedDict")] = collections.OrderedDict
    table[("_codecs", "encode")] = _latin1_bytes
    return table


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only plain-data globals; anything else is refused before it can run."""

    def __init__(self, file: io.BufferedIOBase, *, source: str = "<pickle>") -> None:
        super().__init__(file)
        self.source = source
        self._allowed = _safe_globals()

    def find_class(self, module: str, name: str) -> Any:
        """Look the global up in the allow-list; refuse with the name and the rule otherwise."""
        key = (module, name)
        if key in _compat_pickle.NAME_MAPPING:  # Python 2 names, written by protocols 0-2 (e.g. __builtin__.complex)
            key = _compat_pickle.NAME_MAPPING[key]
        elif module in _compat_pickle.IMPORT_MAPPING:
            key = (_compat_pickle.IMPORT_MAPPING[module], name)
        found = self._allowed.get(key)
        if found is None:
            raise UnsafePickleError(
                f"{self.source}: refused to load {module}.{name}: only numpy arrays, lists, dicts, strings and numbers "
                f"are admitted in a data pickle (a pickle naming other globals can run code when loaded)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        """Persistent references point outside the file: refused like any other non-data global."""
        raise UnsafePickleError(f"{self.source}: refused a persistent reference {pid!r}: only plain data is admitted")


def _check_object_array(arr: np.ndarray, source: str, where: str) -> None:
    """Object arrays may hold only strings (anything else is not plain data)."""
    for i, item in enumerate(arr.reshape(-1).tolist()):
        if not isinstance(item, str):
            raise UnsafePickleError(
                f"{source}: object array at {where} holds a {type(item).__name__} at flat index {i}; "
                "object arrays may hold only strings"
            )


def _members(obj: Any) -> Any:
    """(child, step) of a container, the step naming it lazily; dict keys are walked too (a key can be a nested
    tuple)."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            yield key, (" key ", key)
            yield value, ("/", key)
    else:
        for i, value in enumerate(obj):
            yield value, ("[", i)


def _place(where: str, step: tuple[str, Any] | None) -> str:
    """`where` extended by one step (if any), with a bounded rendering of the key."""
    if step is None:
        return where
    sep, name = step
    if sep == "[":
        return f"{where}[{name}]"
    return where + sep + (name if isinstance(name, str) and len(name) <= 60 else BOUNDED_REPR.repr(name))


def _check_plain_data(obj: Any, source: str, where: str) -> None:
    """Check a loaded pickle is plain data that readers can walk: no cycles, bounded depth and size.

    A pickle stores a shared sub-object once, so 40 levels of `[x, x]` fit in a few hundred bytes but
    stand for 2**40 items to anything that walks them as a tree (numpy, repr). Each container is
    therefore visited once (by id, with an explicit stack, so depth cannot exhaust Python's), and its
    depth and unshared size are computed from its members' and bounded by `MAX_PICKLE_DEPTH` and
    `MAX_PICKLE_ITEMS`. Object arrays may hold only strings.
    """
    done: dict[int, tuple[int, int]] = {}  # id -> (depth, unshared size) of each finished container
    open_ids: set[int] = set()  # containers on the current path: meeting one again is a cycle
    frames: list[list[Any]] = []  # [container, where, members, depth, size]

    def visit(node: Any, where: str, step: tuple[str, Any] | None) -> tuple[int, int] | None:
        """(depth, size) of a leaf or a finished container; None once a new container is pushed.

        The place is put into words only when needed: most members are leaves."""
        if isinstance(node, np.ndarray):
            if node.dtype.kind == "O" and id(node) not in done:
                _check_object_array(node, source, _place(where, step))
                done[id(node)] = (0, 1)
            return 0, 1
        if not isinstance(node, (Mapping, list, tuple, set, frozenset)):
            return 0, 1
        if id(node) in done:
            return done[id(node)]
        if id(node) in open_ids:
            raise FeatureFileError(f"{source}: {_place(where, step)} contains itself; plain data holds no cycles")
        if len(frames) >= MAX_PICKLE_DEPTH:
            raise FeatureFileError(
                f"{source}: data nested deeper than {MAX_PICKLE_DEPTH} levels at {_place(where, step)}"
            )
        open_ids.add(id(node))
        frames.append([node, _place(where, step), _members(node), 0, 1])
        return None

    visit(obj, where, None)
    while frames:
        frame = frames[-1]
        child, step = next(frame[2], (None, None))
        if step is not None:
            found = visit(child, frame[1], step)
        else:
            frames.pop()
            open_ids.discard(id(frame[0]))
            found = done[id(frame[0])] = (frame[3] + 1, frame[4])
            if not frames:
                return
            frame = frames[-1]
        if found is None:
            continue
        depth, size = found
        frame[3], frame[4] = max(frame[3], depth), frame[4] + size
        if len(frames) + depth > MAX_PICKLE_DEPTH:
            raise FeatureFileError(f"{source}: data nested deeper than {MAX_PICKLE_DEPTH} levels at {frame[1]}")
        if frame[4] > MAX_PICKLE_ITEMS:
            raise FeatureFileError(
                f"{source}: {frame[1]} stands for more than {MAX_PICKLE_ITEMS:,} items once the sub-objects it shares "
                "are counted each time they are used; data pickles hold numpy arrays, not such lists"
            )


def safe_load_pickle(path: str | Path) -> Any:
    """Load a pickle of plain data (numpy arrays, containers, numbers, strings) without running its code.

    Published feature pickles are an attack surface: a plain `pickle.load` executes whatever the file
    asks for. This never resolves a global outside the data allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"no pickle file at {str(path)!r}")
    try:
        with path.open("rb") as f:
            obj = SafeUnpickler(f, source=str(path)).load()
    except FeatureFileError:
        raise
    except Exception as exc:  # truncated, corrupt, or an admitted constructor rejecting its arguments
        raise FeatureFileError(f"{path} is not a readable pickle of plain data: {type(exc).__name__}: {exc}") from exc
    _check_plain_data(obj, str(path), "<top>")
    return obj
