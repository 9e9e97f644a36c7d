"""fastdaf.outputs through `fastdaf predict --manifest --out`: an output resumes after kill -9 or a row cut mid-write,
only when this very command wrote it (another checkpoint, manifest or options, no provenance, an id written twice:
refused, left as it was); one run writes it at a time; a symbolic link is refused; a row that kills the process is
recorded as failed instead of retried (issue 13, finding 7)."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from builders import run_cli

from fastdaf.cli import main as cli_main


def mosei_manifest(shared_data, path, n):
    """The first n CMU-MOSEI valid transcripts as an id,text manifest (text only: predicts fast on CPU)."""
    with (shared_data / "cmu-mosei-text" / "valid.csv").open(newline="") as f:
        rows = [(r[0], r[1]) for r in list(csv.reader(f))[1 : n + 1]]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows(rows)
    return [r[0] for r in rows]


def read_results(path):
    if path.suffix == ".csv":
        return list(csv.DictReader(path.open(newline="")))
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_results(got, clean):
    assert [r["id"] for r in got] == [r["id"] for r in clean]
    for a, b in zip(got, clean):
        assert a["error"] == b["error"] and a["label"] == b["label"]
        if b["score"] not in (None, ""):
            assert abs(float(a["score"]) - float(b["score"])) <= 1e-5, (a, b)


def test_predict_manifest_survives_kill_9_and_resumes(shared_data, tmp_path, capsys):
    """kill -9 mid-run, then the same command again: every id exactly once, the clean run's scores."""
    manifest = tmp_path / "m.csv"
    ids = mosei_manifest(shared_data, manifest, 256)
    out = tmp_path / "out.csv"
    argv = ["predict", "--manifest", str(manifest), "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastdaf.cli", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    try:
        while not (out.exists() and out.read_bytes().count(b"\n") > 40):  # the header and at least one batch
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no rows were written within 180 s"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    written = read_results(out)
    assert 32 <= len(written) < len(ids), "the kill should land mid-run"
    with out.open("ab") as f:
        f.write(b"999999[9],0.12")  # as if killed in the middle of writing a row: cut off and redone
    assert cli_main(argv) == 0
    assert f"of {len(ids)} rows; {len(written)} were already in the output" in capsys.readouterr().err
    got = read_results(out)
    assert [r["id"] for r in got] == ids  # every id once, in order
    clean = tmp_path / "clean.csv"
    assert cli_main(["predict", "--manifest", str(manifest), "--out", str(clean)]) == 0
    assert_same_results(got, read_results(clean))


def test_predict_jsonl_output_resumes_after_a_partial_line(shared_data, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    ids = mosei_manifest(shared_data, manifest, 70)
    clean, out = tmp_path / "clean.jsonl", tmp_path / "out.jsonl"
    assert cli_main(["predict", "--manifest", str(manifest), "--out", str(clean)]) == 0
    lines = clean.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:32]) + lines[32][:25])  # one whole batch, then a row cut mid-write
    # what made it: this very command (fastdaf.outputs), as if its first run had been killed there
    (tmp_path / "out.jsonl.provenance.json").write_bytes((tmp_path / "clean.jsonl.provenance.json").read_bytes())
    assert cli_main(["predict", "--manifest", str(manifest), "--out", str(out)]) == 0
    assert "38 predicted, 0 failed, of 70 rows; 32 were already in the output" in capsys.readouterr().err
    got = read_results(out)
    assert [r["id"] for r in got] == ids
    assert_same_results(got, read_results(clean))


def test_predict_refuses_an_output_it_did_not_write_and_leaves_it_alone(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("id,text\na,fine\n")
    foreign = tmp_path / "notes.csv"
    foreign.write_text("name,value\nx,1\ny,2")  # no final newline: must not be 'repaired'
    code, err = run_cli(["predict", "--manifest", tmp_path / "m.csv", "--out", foreign], capsys)
    assert code == 2 and "--out" in err and "has no notes.csv.provenance.json saying what made it" in err
    assert foreign.read_text() == "name,value\nx,1\ny,2"


def test_one_writer_per_output_file(shared_data, tmp_path, capsys):
    """Two runs on one --out: the second is refused at once (exit 2), naming the holder; nothing was written twice."""
    from fastdaf.outputs import output_lock

    manifest, out = tmp_path / "m.csv", tmp_path / "out.csv"
    mosei_manifest(shared_data, manifest, 3)
    with output_lock(out):  # another run, in the middle of its work
        code, err = run_cli(["predict", "--manifest", manifest, "--out", out], capsys)
    assert code == 2 and f"--out {str(out)!r} is being written by another fastdaf run (pid {os.getpid()} on " in err
    assert not out.exists()
    assert run_cli(["predict", "--manifest", manifest, "--out", out], capsys)[0] == 0  # released: runs
    assert not (tmp_path / ".out.csv.lock").exists()


def test_resume_refuses_an_output_made_otherwise(shared_data, tmp_path, capsys):
    """An output resumes only if this checkpoint, this manifest, this fastdaf and these options made it; an output
    holding an id more often than the manifest (two runs appended to it) is refused too."""
    import fastdaf.outputs
    from fastdaf import DAFHead

    manifest, out = tmp_path / "m.csv", tmp_path / "out.jsonl"
    ids = mosei_manifest(shared_data, manifest, 40)
    assert run_cli(["predict", "--manifest", manifest, "--out", out], capsys)[0] == 0
    made_by = json.loads((tmp_path / "out.jsonl.provenance.json").read_text())
    assert made_by["checkpoint_sha256"] == fastdaf.outputs.checkpoint_digest(made_by["checkpoint"])
    assert set(made_by["options"]) == {"head", "encoder_backend", "device", "batch_size"}
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:32]))
    before = out.read_text()

    # another checkpoint: the bundled one's head with other weights
    other = tmp_path / "other"
    shutil.copytree(made_by["checkpoint"], other)  # with the encoder weights it carries
    head = DAFHead.from_pretrained(made_by["checkpoint"])
    with torch.no_grad():
        head.mlp_out.bias.add_(1.0)
    head.save_pretrained(
        other,
        extra=json.loads((Path(made_by["checkpoint"]) / "config.json").read_text())["extra"],
    )
    code, err = run_cli(["predict", "--manifest", manifest, "--out", out, "--checkpoint", other], capsys)
    assert code == 2 and "was written by another run (checkpoint (its weights): " in err
    # another manifest: one row more
    longer = tmp_path / "longer.csv"
    longer.write_text(manifest.read_text() + "extra,one more\n")
    code, err = run_cli(["predict", "--manifest", longer, "--out", out], capsys)
    assert code == 2 and "manifest: " in err
    # options that change scores
    code, err = run_cli(["predict", "--manifest", manifest, "--out", out, "--batch-size", "8"], capsys)
    assert code == 2 and "options that change scores" in err and "'batch_size': 8" in err
    assert out.read_text() == before  # refused untouched
    # a row written twice
    out.write_text(before + lines[0])
    code, err = run_cli(["predict", "--manifest", manifest, "--out", out], capsys)
    assert code == 2 and f"holds ids more often than the manifest ({ids[0]!r} 2 times (the manifest has 1))" in err
    # and the same command resumes its own output
    out.write_text(before)
    assert run_cli(["predict", "--manifest", manifest, "--out", out], capsys)[0] == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ids


def test_out_symlinks_are_refused(tmp_path, capsys, no_work):
    (tmp_path / "m.csv").write_text("id,text\na,fine\n")
    for name, points_to in (("dangling.csv", tmp_path / "elsewhere" / "x.csv"), ("link.csv", tmp_path / "real.csv")):
        (tmp_path / "real.csv").touch()
        (tmp_path / name).symlink_to(points_to)
        code, err = run_cli(["predict", "--manifest", tmp_path / "m.csv", "--out", tmp_path / name], capsys)
        assert code == 2 and "is a symbolic link" in err
    assert not (tmp_path / "elsewhere").exists()


CRASHING_RUN = r"""
import os, sys
import fastdaf.pipeline

real = fastdaf.pipeline.SentimentPredictor.predict_each

def predict_each(self, texts, audios, *args, **kwargs):
    if "CRASH" in texts:  # what the OOM killer does to a process in the middle of a batch
        os._exit(137)
    return real(self, texts, audios, *args, **kwargs)

fastdaf.pipeline.SentimentPredictor.predict_each = predict_each
from fastdaf.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_row_that_kills_the_process_is_recorded_as_failed_and_not_retried(shared_data, tmp_path):
    """A process that dies mid-batch leaves that batch in flight; the next run predicts those rows one at a time,
    and a row that was alone in flight when the process died is recorded as failed: reruns get past it."""
    manifest, out = tmp_path / "m.csv", tmp_path / "out.csv"
    ids = mosei_manifest(shared_data, manifest, 40)
    text = manifest.read_text().splitlines()
    text[11] = f"{ids[10]},CRASH"  # the 11th row
    manifest.write_text("\n".join(text) + "\n")
    argv = [sys.executable, "-c", CRASHING_RUN, "predict", "--manifest", str(manifest), "--out", str(out)]
    root = Path(__file__).resolve().parents[1]

    def run():
        return subprocess.run(argv, capture_output=True, text=True, cwd=root, timeout=300)

    first = run()  # dies in its first batch (rows 1-32)
    assert first.returncode == 137 and read_results(out) == []
    assert json.loads((tmp_path / ".out.csv.inflight").read_text()) == list(range(2, 34))  # manifest lines
    second = run()  # predicts those one at a time, dies on the 11th row alone
    assert second.returncode == 137 and [r["id"] for r in read_results(out)] == ids[:10]
    assert json.loads((tmp_path / ".out.csv.inflight").read_text()) == [12]
    third = run()
    assert third.returncode == 0, third.stderr[-2000:]
    assert "1 left in flight by a process that died" in third.stderr
    got = read_results(out)
    assert [r["id"] for r in got] == ids
    assert got[10]["error"].startswith(f"ProcessDiedError: id {ids[10]!r} (line 12): the process died while")
    assert all(r["error"] == "" for k, r in enumerate(got) if k != 10)
    assert not (tmp_path / ".out.csv.inflight").exists()
