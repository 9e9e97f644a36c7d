"""fastdaf.cli: a bad option is refused (exit 2, a message naming option and value) before any work, in-process and
from the real command line (issue 13, finding 6)."""

import subprocess
import sys

import pytest
from builders import run_cli

BAD_INVOCATIONS = {
    # name: (argv with {m} manifest, {d} dup-id manifest, {e} empty-id manifest, {f} a file, {t} the folder;
    # option, value)
    "predict device": (["predict", "--text", "fine", "--device", "tpu"], "--device", "'tpu'"),
    "predict manifest device": (["predict", "--manifest", "{m}", "--device", "tpu"], "--device", "'tpu'"),
    "extract device": (["extract", "{m}", "--out", "{t}/f.safetensors", "--device", "tpu"], "--device", "'tpu'"),
    "extract batch 0": (["extract", "{m}", "--out", "{t}/f.safetensors", "--batch-size", "0"], "--batch-size", "'0'"),
    "extract batch -3": (
        ["extract", "{m}", "--out", "{t}/f.safetensors", "--batch-size", "-3"],
        "--batch-size",
        "'-3'",
    ),
    "extract batch word": (
        ["extract", "{m}", "--out", "{t}/f.safetensors", "--batch-size", "many"],
        "--batch-size",
        "'many'",
    ),
    "extract out suffix": (["extract", "{m}", "--out", "{t}/f.csv"], "--out", "'f.csv'"),
    "extract out under a file": (["extract", "{m}", "--out", "{f}/f.safetensors"], "--out", "f.safetensors"),
    "extract out is a folder": (["extract", "{m}", "--out", "{t}/sub.safetensors"], "--out", "sub.safetensors"),
    "predict out missing folder": (["predict", "--manifest", "{m}", "--out", "{t}/missing/o.csv"], "--out", "missing"),
    "predict out suffix": (["predict", "--manifest", "{m}", "--out", "{t}/o.txt"], "--out", "'o.txt'"),
    "predict out is a folder": (["predict", "--manifest", "{m}", "--out", "{t}/sub.csv"], "--out", "sub.csv"),
    "predict out without manifest": (["predict", "--text", "fine", "--out", "{t}/o.csv"], "--out", "--manifest"),
    "predict duplicate ids": (
        ["predict", "--manifest", "{d}", "--out", "{t}/o.csv"],
        "--allow-duplicate-ids",
        "'a' on lines 2, 4",
    ),
    "predict empty id": (["predict", "--manifest", "{e}", "--allow-duplicate-ids"], "id", "line 3"),
    "extract duplicate ids": (
        ["extract", "{d}", "--out", "{t}/f.safetensors"],
        "--allow-duplicate-ids",
        "'a' on lines 2, 4",
    ),
    "extract empty id": (["extract", "{e}", "--out", "{t}/f.safetensors"], "id", "line 3"),
    "train epochs": (["train", "{m}", "--out", "{t}/ckpt", "--epochs", "0"], "--epochs", "'0'"),
    "train dropout": (["train", "{m}", "--out", "{t}/ckpt", "--dropout", "1.5"], "--dropout", "'1.5'"),
    "train lr": (["train", "{m}", "--out", "{t}/ckpt", "--lr", "-1"], "lr", "-1"),
    "train out is a file": (["train", "{m}", "--out", "{f}"], "--out", "file.txt"),
    "ablate seeds": (["ablate", "{m}", "--out", "{t}/abl", "--seeds", "0"], "--seeds", "'0'"),
}


@pytest.mark.parametrize("name", list(BAD_INVOCATIONS))
def test_bad_invocation_is_refused_before_work(name, tmp_path, capsys, no_work):
    argv, option, value = BAD_INVOCATIONS[name]
    (tmp_path / "m.csv").write_text("id,text\na,fine\nb,bad\n")
    (tmp_path / "dup.csv").write_text("id,text\na,fine\nb,bad\na,again\n")
    (tmp_path / "empty.csv").write_text("id,text\na,fine\n,no id\n")
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "sub.safetensors").mkdir()
    (tmp_path / "sub.csv").mkdir()
    before = sorted(tmp_path.rglob("*"))
    places = {
        "m": tmp_path / "m.csv",
        "d": tmp_path / "dup.csv",
        "e": tmp_path / "empty.csv",
        "f": tmp_path / "file.txt",
        "t": tmp_path,
    }
    code, err = run_cli([a.format(**places) for a in argv], capsys)
    assert code == 2, err
    assert option in err and value in err, err
    assert "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_bad_device_from_the_real_command_line(tmp_path):
    """The installed entry point too: exit 2, one message naming option, value and choices, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "fastdaf.cli", "extract", "m.csv", "--out", "f.safetensors", "--device", "tpu"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "argument --device: 'tpu' is not a device; use cpu, cuda or cuda:N" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())
