"""What the tests share: the checkout's paths and every builder more than one test file uses (guards on time and
memory, the CLI in-process, text and sounds, MMSA pickles, .csd files).

Imported as `builders` from any folder of tests/: pytest's default (prepend) import mode puts tests/, the folder of
the root conftest.py, on sys.path. A builder one test file uses stays in that file; fixtures are in conftest.py.
At the top only the standard library and numpy are imported (conftest.py imports this module, and lane 2 of .ci/run
installs no extras): what needs more imports it inside the function.
"""

from __future__ import annotations

import contextlib
import pickle
import resource
import signal
from pathlib import Path

import numpy as np

# ============================================================================ paths
REPO = Path(__file__).resolve().parents[1]  # the checkout
SHARED_DATA = REPO.parent / "shared" / "data"  # the project's shared test data, beside the checkout


# ============================================================================ guards
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
    """This process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ============================================================================ the CLI
def run_cli(argv, capsys):
    """Exit code and stderr of the CLI, in-process (argparse's own refusals raise SystemExit)."""
    from fastdaf.cli import main as cli_main

    try:
        code = cli_main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


# ============================================================================ text and sounds
BAD_TEXT = "caf\udce9 au lait"  # the byte 0xE9 of Latin-1 "café" decoded with surrogateescape, as argv does
RATE = 16_000


def non_speech() -> dict[str, np.ndarray]:
    """Five seconds at RATE of what is not speech: silence, a DC offset, white noise, a low-level mains hum."""
    t = np.arange(5 * RATE) / RATE
    rng = np.random.default_rng(0)
    return {
        "silence": np.zeros(5 * RATE),
        "dc offset": np.full(5 * RATE, 0.3),
        "white noise": 0.1 * rng.standard_normal(5 * RATE),
        "low-level hum": 0.001 * (np.sin(2 * np.pi * 50 * t) + 0.3 * np.sin(2 * np.pi * 150 * t)),
    }


def speech_clips(shared_data) -> list[Path]:
    """The seven CMU ARCTIC clips: the six of the shared data and the one fastdaf ships."""
    from fastdaf.examples import EXAMPLE_CLIP

    clips = sorted((shared_data / "speech").glob("*.wav")) + sorted(EXAMPLE_CLIP.parent.glob("*.wav"))
    assert len(clips) == 7
    return clips


# ============================================================================ MMSA pickles
HUGE = 1e30


def mmsa_split(n: int, L: int, *, aligned: bool, rng: np.random.Generator, la: int = 7, lv: int = 6) -> dict:
    """An MMSA split with prefix attention masks/lengths; every padded position holds HUGE (or NaN)."""
    tlen = rng.integers(1, L + 1, size=n)
    tlen[0] = L  # one full row
    text = rng.normal(size=(n, L, 8)).astype(np.float32)
    bert = np.zeros((n, 3, L), dtype=np.float32)
    for i, t in enumerate(tlen):
        text[i, t:] = HUGE
        bert[i, 0, :t] = rng.integers(100, 2000, size=t)
        bert[i, 1, :t] = 1
    part = {
        "text": text,
        "text_bert": bert,
        "regression_labels": rng.uniform(-3, 3, size=n).astype(np.float32),
        "id": np.array([f"vid{i}$_${i}" for i in range(n)], dtype=object),
        "raw_text": np.array([f"words {i}" for i in range(n)], dtype=object),
    }
    if aligned:
        audio = rng.normal(size=(n, L, 5)).astype(np.float32)
        vision = rng.normal(size=(n, L, 3)).astype(np.float32)
        for i, t in enumerate(tlen):
            audio[i, t:] = HUGE
            vision[i, t:] = np.nan
    else:
        alen = rng.integers(1, la + 1, size=n)
        vlen = rng.integers(1, lv + 1, size=n)
        audio = rng.normal(size=(n, la, 5)).astype(np.float32)
        vision = rng.normal(size=(n, lv, 3)).astype(np.float32)
        for i in range(n):
            audio[i, alen[i] :] = HUGE
            vision[i, vlen[i] :] = np.nan
        part["audio_lengths"] = [int(v) for v in alen]
        part["vision_lengths"] = vlen.astype(np.int64)
    part["audio"], part["vision"] = audio, vision
    return part


def dump(obj, path: Path, protocol: int = 4) -> Path:
    """`obj` pickled into `path`; returns the path."""
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


class Reduce:
    """Pickles as the call `fn(*args)`: a gadget for the safe unpickler to refuse or bound."""

    def __init__(self, fn, args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


# ============================================================================ .csd files
def write_csd(
    path: Path, root: str, videos: dict[str, tuple[np.ndarray, np.ndarray]], metadata: dict[str, str] | None = None
) -> Path:
    """A CMU-MultimodalSDK computational sequence: `root`/data/VIDEO/{features, intervals} per video, and
    `root`/metadata (entries alternately datasets and attributes) when given; returns the path."""
    import h5py  # the `data` extra

    with h5py.File(path, "w") as f:
        g = f.create_group(root)
        data = g.create_group("data")
        for vid, (feats, intervals) in videos.items():
            v = data.create_group(vid)
            v.create_dataset("features", data=feats)
            v.create_dataset("intervals", data=intervals)
        if metadata is not None:
            meta = g.create_group("metadata")
            for i, (k, val) in enumerate(metadata.items()):
                if i % 2:
                    meta.attrs[k] = val
                else:
                    d = meta.create_dataset(k, (1,), dtype=h5py.special_dtype(vlen=str))
                    d[0] = val
    return path


def exchange(port: int, request: bytes, timeout_s: float = 5.0) -> bytes:
    """Send raw bytes to 127.0.0.1:port and read what comes back until the server closes or goes quiet."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(request)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except OSError:
            pass
        return data

