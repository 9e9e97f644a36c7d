"""Bulk scoring on Ray Data (fastdaf.engines.ray, `fastdaf predict --engine ray`) against the single-process path,
on a local Ray instance (2 CPUs), with the MOSEI valid transcripts, the shared CMU ARCTIC clips and bad rows."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from fastdaf import DAFConfig, DAFHead
from fastdaf.audio.acoustic import FEATURE_DIM
from fastdaf.cli import main as cli_main
from fastdaf.engines.ray import predict_manifest
from fastdaf.engines.ray_inputs import _read_file
from fastdaf.errors import InputError, ManifestError, MissingExtraError, OutputBusyError
from fastdaf.examples import ARCTIC_PROMPTS
from fastdaf.outputs import checkpoint_digest, output_lock
from fastdaf.records import flatten_record, record_columns

# Ray Data warns about its own deprecated settings when it copies its context
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

MOSEI_ROWS = 280
TOL = 1e-4 + 1e-9  # records are rounded to 4 decimals


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module (predict_manifest uses it as it is, and leaves it running)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, address="local", log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A JSONL manifest of ~300 rows: MOSEI valid transcripts, the ARCTIC clips (with and without their
    transcript, by absolute and by relative path), and bad rows spread among them."""
    from builders import SHARED_DATA

    speech, mosei = SHARED_DATA / "speech", SHARED_DATA / "cmu-mosei-text" / "valid.csv"
    if not speech.is_dir() or not mosei.is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("bulk")
    (root / "clips").mkdir()
    shutil.copy(speech / "cmu_arctic_us_axb_a0005.wav", root / "clips" / "a0005.wav")
    (root / "clips" / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64)))
    with mosei.open(newline="", encoding="utf-8") as f:
        rows = [{"id": r[""], "text": r["sentence"]} for _, r in zip(range(MOSEI_ROWS), csv.DictReader(f))]
    clips = [
        {"id": f"clip-{name}", "text": prompt, "audio": str(speech / f"cmu_arctic_us_{name}.wav")}
        for name, prompt in ARCTIC_PROMPTS.items()
    ]
    clips += [
        {"id": "audio-only-abs", "audio": str(speech / "cmu_arctic_us_aew_a0001.wav")},
        {"id": "audio-only-rel", "audio": "clips/a0005.wav"},
        {"id": "text-and-rel-audio", "text": ARCTIC_PROMPTS["axb_a0005"], "audio": "clips/a0005.wav"},
    ]
    bad = [
        {"id": "bad-missing-audio", "text": "where did it go", "audio": "clips/missing.wav"},
        {"id": "bad-broken-wav", "text": "a broken file", "audio": "clips/broken.wav"},
        {"id": "bad-empty", "text": ""},
        {"id": "bad-pauses-only", "text": "sp sp"},
        {"id": "bad-surrogate", "text": "caf\udce9 au lait"},
        {"id": "bad-broken-wav-only", "audio": "clips/broken.wav"},
    ]
    for k, row in enumerate(clips):
        rows.insert(7 + 31 * k, row)
    for k, row in enumerate(bad):
        rows.insert(3 + 47 * k, row)
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"root": root, "manifest": manifest, "rows": rows}


def single_process(manifest, out, capsys, *extra):
    """The single-process path's records (`fastdaf predict --manifest M --out OUT.jsonl`)."""
    assert cli_main(["predict", "--manifest", str(manifest), "--out", str(out), "--json", *extra]) == 0
    capsys.readouterr()
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def assert_same(got: list[dict], want: list[dict], rename=lambda error: error) -> None:
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for g, w in zip(got, want):
        assert list(g) == list(w), g["id"]
        assert g["error"] == rename(w["error"]), g["id"]
        assert g["label"] == w["label"] and g["notes"] == w["notes"], g["id"]
        for key in ("weights", "outputs"):
            if w.get(key) is None:
                assert g.get(key) is None, g["id"]
            else:
                assert g[key].keys() == w[key].keys() and all(abs(g[key][m] - w[key][m]) <= TOL for m in w[key])
        assert (g["score"] is None) == (w["score"] is None) and abs((g["score"] or 0) - (w["score"] or 0)) <= TOL


def test_same_results_as_single_process(ray_local, data, tmp_path, capsys):
    want = single_process(data["manifest"], tmp_path / "single.jsonl", capsys)
    out = tmp_path / "ray"
    summary = predict_manifest(data["manifest"], out, formats=("parquet", "jsonl"), workers=2, progress=False)
    n = len(data["rows"])
    failed = sum(r["error"] is not None for r in want)
    assert {r["id"] for r in want if r["error"]} >= {r["id"] for r in data["rows"] if r["id"].startswith("bad-")}
    assert n > 290 and failed >= 6
    assert summary["rows"] == n and summary["failed"] == failed and summary["predicted"] == n - failed
    assert summary["workers"] == 2 and summary["outputs"]["parquet"] == str(out / "predictions.parquet")
    made_by = json.loads((out / "provenance.json").read_text())  # what made the outputs (fastdaf.outputs)
    assert made_by["manifest"] == str(data["manifest"]) and made_by["options"]["batch_size"] == 32
    assert made_by["checkpoint_sha256"] == checkpoint_digest(made_by["checkpoint"])
    assert not (out / ".predictions.lock").exists()

    got = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert_same(got, want)
    # the errors name the row as the single-process path does; bad rows never stopped the job
    errors = {r["id"]: r["error"] for r in got if r["error"]}
    assert errors["bad-missing-audio"].startswith("AudioNotFoundError: id 'bad-missing-audio' (line 4) audio ")
    assert str(data["root"] / "clips" / "missing.wav") in errors["bad-missing-audio"]
    assert errors["bad-surrogate"].startswith("InputError: id 'bad-surrogate' (line ")
    assert "\\udce9" in errors["bad-surrogate"]
    by_id = {r["id"]: r for r in got}
    assert by_id["audio-only-rel"]["weights"] == {"text": 0.0, "audio": 1.0}
    assert by_id["text-and-rel-audio"]["score"] is not None

    table = pq.read_table(out / "predictions.parquet")
    assert table.column_names == record_columns(["text", "audio"])
    notes_type = table.schema.field("notes").type
    assert pa.types.is_list(notes_type) and notes_type.value_type == pa.string()
    flat = [flatten_record(r, ["text", "audio"]) for r in want]
    for g, w in zip(table.to_pylist(), flat):
        w["notes"] = json.loads(w["notes"])
        for key, value in w.items():
            if isinstance(value, float):
                assert abs(g[key] - value) <= TOL, (w["id"], key)
            else:
                assert g[key] == value, (w["id"], key)


def test_a_worker_that_dies_is_restarted_and_no_row_is_lost(ray_local, data, tmp_path):
    """Ray restarts a killed worker and runs its batches again: every row once, in order, same as without."""
    # four times the text rows: long enough that both workers are scoring before it ends (with twice, a quiet
    # machine once finished the job before a worker was 8 s old)
    rows = [r for r in data["rows"] if "audio" not in r] * 4
    rows = [{**r, "id": f"{r['id']}#{k}"} for k, r in enumerate(rows)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    killed = []

    def kill_a_worker():  # one of this test's Ray workers (children of the raylet this process started)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            ps = subprocess.run(["ps", "-eo", "pid,ppid,etimes,args"], capture_output=True, text=True).stdout
            table = [line.split(None, 3) for line in ps.splitlines()[1:]]
            parent = {int(p): int(pp) for p, pp, *_ in table}
            workers = [
                int(p)
                for p, _, age, args in table
                if "MapWorker(MapBatches(_Scorer))" in args and parent.get(parent.get(int(p), 0)) == os.getpid()
            ]
            ages = {int(p): int(age) for p, _, age, _ in table}
            if len(workers) == 2 and min(ages[w] for w in workers) >= 8:  # loaded (or loading) and scoring
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            time.sleep(0.2)

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    summary = predict_manifest(manifest, tmp_path / "out", formats=("jsonl",), workers=2, progress=False)
    killer.join(timeout=1)
    assert killed, "no worker was killed: the job ended first"
    got = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert summary["rows"] == len(rows) and [r["id"] for r in got] == [r["id"] for r in rows]
    first = {r["id"].split("#")[0]: r for r in got[: len(rows) // 4]}  # each row four times: the same result
    for r in got[len(rows) // 4 :]:
        twin = first[r["id"].split("#")[0]]
        assert (r["error"] or "").split(":")[0] == (twin["error"] or "").split(":")[0]
        assert abs((r["score"] or 0) - (twin["score"] or 0)) <= TOL


def test_folder_and_glob_of_manifests(ray_local, data, tmp_path, capsys):
    """A folder (CSV and JSONL parts, other files ignored) is read in path order; messages name the part."""
    rows = [r for r in data["rows"] if r["id"] != "bad-surrogate"][:70]
    folder = tmp_path / "parts"
    (folder / "b").mkdir(parents=True)
    first = folder / "a-first.csv"
    with first.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "text", "audio"])
        writer.writeheader()
        writer.writerows({**r, "audio": r.get("audio") and str(data["root"] / r["audio"])} for r in rows[:40])
    second = folder / "b" / "second.jsonl"
    second.write_text("".join(json.dumps(r) + "\n" for r in rows[40:]), encoding="utf-8")
    shutil.copytree(data["root"] / "clips", folder / "b" / "clips")  # relative audio: next to its manifest
    (folder / "README.md").write_text("not a manifest\n")
    (folder / "_SUCCESS").write_text("")

    want = []
    for k, (part, display) in enumerate(((first, "a-first.csv"), (second, "b/second.jsonl"))):
        records = single_process(part, tmp_path / f"single-{k}.jsonl", capsys)
        named = [
            {**r, "error": r["error"] and re.sub(r"\(line (\d+)\)", rf"(line \1 of {display})", r["error"], 1)}
            for r in records
        ]
        want += named
    summary = predict_manifest(folder, tmp_path / "out", formats=("jsonl",), progress=False)
    assert summary["files"] == 2 and summary["rows"] == 70
    assert not (tmp_path / "out" / "predictions.parquet").exists()
    got = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert_same(got, want)
    assert any("of a-first.csv)" in (r["error"] or "") for r in got)
    assert any("of b/second.jsonl)" in (r["error"] or "") for r in got)


def test_ids_repeated_across_files_are_refused(ray_local, tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "one.csv").write_text("id,text\nx,good\ny,bad\n")
    (tmp_path / "p" / "two.jsonl").write_text('{"id": "y", "text": "again"}\n')
    with pytest.raises(ManifestError, match=r"1 id\(s\) appear more than once \('y' on line 3 of one.csv, line 1 of"):
        predict_manifest(str(tmp_path / "p" / "*"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "predictions.parquet").exists()
    # a bad file among good ones is refused with read_manifest's message, raised on a Ray worker
    (tmp_path / "p" / "two.jsonl").write_text('{"name": "z", "text": "no id"}\n')
    with pytest.raises(ManifestError, match=r"two.jsonl: needs an 'id' column"):
        predict_manifest(tmp_path / "p", tmp_path / "out", progress=False)


def test_one_manifest_is_checked_by_read_manifest_before_any_work(ray_local, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\nx,one\nx,two\n")
    with pytest.raises(ManifestError, match=r"1 id\(s\) appear more than once \('x' on lines 2, 3\)"):
        predict_manifest(bad, tmp_path / "out", progress=False)
    with pytest.raises(ManifestError, match="no manifest at"):
        predict_manifest(tmp_path / "nothing.csv", tmp_path / "out", progress=False)
    with pytest.raises(ManifestError, match="no file matches"):
        predict_manifest(str(tmp_path / "*.jsonl"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # refused before the --out folder is made
    empty = tmp_path / "empty.csv"
    empty.write_text("id,text\n")
    summary = predict_manifest(empty, tmp_path / "out", formats=("parquet", "jsonl"), progress=False)
    assert summary["rows"] == 0 and pq.read_table(tmp_path / "out" / "predictions.parquet").num_rows == 0
    assert (tmp_path / "out" / "predictions.jsonl").read_text() == ""


def test_options_and_out_folder_refused_up_front(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text\na,fine\n")
    for kwargs, words in (
        ({"formats": ("csv",)}, "formats must be one or more of"),
        ({"workers": 0}, "workers must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"num_gpus_per_worker": -1}, "num_gpus_per_worker must be a number >= 0"),
        ({"num_gpus_per_worker": 1, "device": "cpu"}, "reserves GPUs that are not used"),
    ):
        with pytest.raises(InputError, match=words):
            predict_manifest(manifest, tmp_path / "out", progress=False, **kwargs)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file; with --engine ray give a folder"):
        predict_manifest(manifest, tmp_path / "file", progress=False)
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "predictions.parquet").write_text("")
    with pytest.raises(InputError, match="does not resume or overwrite"):
        predict_manifest(manifest, tmp_path / "done", progress=False)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="is a symbolic link"):
        predict_manifest(manifest, tmp_path / "link", progress=False)
    # a second run on a folder another run is writing: refused at once, before Ray starts
    (tmp_path / "busy").mkdir()
    with output_lock(tmp_path / "busy" / "predictions"):
        with pytest.raises(OutputBusyError, match=f"is being written by another fastdaf run \\(pid {os.getpid()} on "):
            predict_manifest(manifest, tmp_path / "busy", progress=False)


def test_a_local_ray_on_the_host_network_without_its_token_is_refused(tmp_path, monkeypatch, capsys):
    """With --ray-network host Ray 2.60 listens on every interface; with token authentication disabled fastdaf does
    not start it (the default, a private network, needs no token: tests/test_ray_isolation.py)."""
    import ray

    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text\na,fine\n")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a new process: fastdaf would start Ray
    with pytest.raises(InputError, match=r"^RAY_AUTH_MODE=disabled with --ray-network host: .* every network"):
        predict_manifest(manifest, tmp_path / "out", progress=False, ray_network="host")
    argv = ["predict", "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--engine", "ray"]
    assert cli_main([*argv, "--ray-network", "host"]) == 2
    assert "unset RAY_AUTH_MODE, drop --ray-network host, or pass --address" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match=r"^ray_network 'public' is not accepted; choose one of \['private', 'host'\]"):
        predict_manifest(manifest, tmp_path / "out", progress=False, ray_network="public")


def test_remote_manifest_audio_paths_resolve_against_its_uri(tmp_path):
    """A remote manifest is parsed from a local copy; its relative audio paths become URIs of its folder (which the
    audio loader then reports as missing), absolute ones stay, and messages name the URI."""
    import pyarrow.fs as pafs

    part = tmp_path / "m.jsonl"
    rows = [
        {"id": "rel", "text": "hi", "audio": "clips/a.wav"},
        {"id": "up", "audio": "../../other/b.wav"},
        {"id": "abs", "audio": "/mnt/shared/c.wav"},
        {"id": "none", "text": "no audio"},
    ]
    part.write_text("".join(json.dumps(r) + "\n" for r in rows))
    uri = "s3://bucket/data/manifests/m.jsonl"
    got = _read_file(pafs.LocalFileSystem(), str(part), True, False, uri)
    assert [r.audio for r in got] == [
        "s3://bucket/data/manifests/clips/a.wav",
        "s3://bucket/other/b.wav",
        "/mnt/shared/c.wav",
        None,
    ]
    part.write_text('{"id": "a"}\n{"id": "a", "text": "x"}\n')
    with pytest.raises(ManifestError) as info:
        _read_file(pafs.LocalFileSystem(), str(part), True, False, uri)
    assert str(info.value).startswith(f"{uri}: needs an 'id' column") or str(info.value).startswith(f"{uri}: 1 id(s)")


def test_missing_ray_extra_is_named(tmp_path, monkeypatch, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,text\na,fine\n")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(MissingExtraError, match=r"^--engine ray .* fastdaf\[ray\]: pip install 'fastdaf\[ray\]'$"):
        predict_manifest(manifest, tmp_path / "out")
    argv = ["predict", "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--engine", "ray"]
    assert cli_main(argv) == 2
    assert "pip install 'fastdaf[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_engine_ray_multi_output_model(ray_local, data, tmp_path, capsys):
    """`fastdaf predict --engine ray` with a two-output checkpoint: outputs.<name> columns, same as single-process."""
    torch.manual_seed(0)
    checkpoint = tmp_path / "ckpt"
    encoders = {"text": {"kind": "text", "model": "default"}, "audio": {"kind": "acoustic"}}
    head = DAFHead(DAFConfig({"text": 384, "audio": FEATURE_DIM}, n_outputs=2, output_names=["sentiment", "happiness"]))
    head.save_pretrained(checkpoint, extra={"encoders": encoders})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in data["rows"][:12]), encoding="utf-8")
    (tmp_path / "clips").symlink_to(data["root"] / "clips")
    ckpt = ["--checkpoint", str(checkpoint)]
    want = single_process(manifest, tmp_path / "single.jsonl", capsys, *ckpt)
    out = tmp_path / "out"
    argv = ["predict", "--manifest", str(manifest), "--out", str(out), "--engine", "ray", "--workers", "1"]
    assert cli_main([*argv, *ckpt, "--batch-size", "4", "--format", "parquet", "jsonl", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 12 and summary["workers"] == 1
    got = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert_same(got, want)
    assert pq.read_table(out / "predictions.parquet").column_names == record_columns(["text", "audio"], ["happiness"])
    # --out DIR with --engine ray; ray-only options are refused with the local engine
    assert cli_main(argv[:7]) == 2 and "already holds" in capsys.readouterr().err
    assert cli_main(["predict", "--manifest", str(manifest), "--workers", "2"]) == 2
    assert "--engine ray" in capsys.readouterr().err


def test_sigterm_stops_a_ray_run_cleanly(data, tmp_path):
    """`fastdaf predict --engine ray --ray-network host` (Ray in this process, as before the private namespaces,
    which tests/test_ray_isolation.py stops the same way) killed with SIGTERM mid-run: exit 143 with a message, no
    traceback or native stack dump, no partial file left in --out, its Ray processes and session folder gone, the
    lock released."""
    out = tmp_path / "out"
    before = {p.name for p in Path("/tmp").glob("fastdaf-ray-*")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastdaf.cli", "predict", "--manifest", str(data["manifest"]), "--engine", "ray",
         "--out", str(out), "--workers", "1", "--json", "--ray-network", "host"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not list(out.glob(".predictions.*.partial")):  # Ray is up and results are being written
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no partial output within 180 s"
        time.sleep(0.1)
    session = [p for p in Path("/tmp").glob("fastdaf-ray-*") if p.name not in before]
    assert len(session) == 1  # this run's own Ray session folder
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "fastdaf predict: stopped by SIGTERM; partial outputs removed" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == []  # no partial file, no lock file
    assert not session[0].exists()
    time.sleep(2)
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(session[0]) not in ps  # no Ray process of that session is left
