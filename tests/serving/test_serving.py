"""fastdaf serve / export-triton: the request protocol, the model repository, and a real Triton server
(nvidia-pytriton's bundled one) on loopback under load, bad requests, disconnects and shutdown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from builders import REPO

from fastdaf.errors import InputError
from fastdaf.serving import (
    MODEL_NAME,
    ServeError,
    ServeOptions,
    ServerProcess,
    answer_requests,
    decode_request,
    free_port,
    model_config,
    write_model_repository,
)
from fastdaf.serving.client import (
    BAD_KINDS,
    ServerError,
    TritonClient,
    load_request,
    run_load,
)

BIN = Path(sys.executable).parent
CLIP_RATE = 16_000


@pytest.fixture(scope="module")
def predictor():
    from fastdaf.pipeline import SentimentPredictor

    return SentimentPredictor(device="cpu")


def text_tensor(*texts) -> np.ndarray:
    return np.array([[t.encode() if isinstance(t, str) else t] for t in texts], dtype=object)


def audio_tensors(*clips, rate=CLIP_RATE) -> dict[str, np.ndarray]:
    return {
        "audio": np.stack(clips).astype(np.float32),
        "sampling_rate": np.full((len(clips), 1), rate, dtype=np.int32),
    }


# ------------------------------------------------------------ the protocol, without a server


def test_decode_request_reads_rows_and_keeps_optional_inputs_optional():
    clip = np.sin(np.arange(CLIP_RATE, dtype=np.float32) / 7)
    rows = decode_request({"text": text_tensor("fine", "great"), **audio_tensors(clip, clip * 0.5)})
    assert [r.text for r in rows] == ["fine", "great"]
    assert all(r.sampling_rate == CLIP_RATE for r in rows)
    np.testing.assert_array_equal(rows[1].audio, clip * 0.5)
    text_only = decode_request({"text": text_tensor("only words")})
    assert text_only[0].audio is None and text_only[0].sampling_rate is None
    audio_only = decode_request(audio_tensors(clip))
    assert audio_only[0].text is None
    marked = decode_request(
        {
            "text": text_tensor("words"),
            "audio": np.zeros((1, 0), np.float32),
            "sampling_rate": np.zeros((1, 1), np.int32),
        }
    )
    assert marked[0].audio is None and marked[0].sampling_rate is None and marked[0].text == "words"


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ({}, "neither `text` nor `audio`"),
        ({"txt": text_tensor("x")}, "unknown inputs ['txt']"),
        ({"text": np.array([[1.0]], dtype=np.float32)}, "`text` must be BYTES"),
        ({"text": text_tensor(b"\xff\xfe")}, "not valid UTF-8"),
        ({"text": text_tensor("a" * 20_001)}, "20001 characters; at most 20000"),
        (
            {"text": text_tensor("a", "b"), **audio_tensors(np.zeros(CLIP_RATE, np.float32))},
            "disagree on the batch size",
        ),
        (
            {"audio": np.zeros((1, CLIP_RATE), np.float64), "sampling_rate": np.array([[CLIP_RATE]], np.int32)},
            "must be FP32",
        ),
        ({"audio": np.zeros((1, CLIP_RATE), np.float32)}, "needs `sampling_rate`"),
        (
            {"audio": np.zeros((1, CLIP_RATE), np.float32), "sampling_rate": np.array([[CLIP_RATE]], np.int64)},
            "must be INT32",
        ),
        ({"text": text_tensor("x"), "sampling_rate": np.array([[CLIP_RATE]], np.int32)}, "without `audio`"),
        (
            {"audio": np.zeros(CLIP_RATE, np.float32), "sampling_rate": np.array([CLIP_RATE], np.int32)},
            "expected [batch, samples]",
        ),
        (audio_tensors(np.zeros(CLIP_RATE * 61, np.float32)), "at most 60 s"),
    ],
)
def test_decode_request_refuses_bad_requests_naming_the_problem(inputs, says):
    with pytest.raises(InputError) as err:
        decode_request(inputs)
    assert says in str(err.value)


def test_answer_requests_matches_predict_and_isolates_bad_requests(predictor):
    import soundfile

    from fastdaf.examples import EXAMPLE_CLIP, EXAMPLE_TEXT

    clip, rate = soundfile.read(EXAMPLE_CLIP, dtype="float32")
    requests = [
        {"text": text_tensor(EXAMPLE_TEXT), **audio_tensors(clip, rate=rate)},
        {"text": text_tensor(b"\xff")},  # refused while decoding
        {
            "text": text_tensor("what a wonderful, happy day"),
            **audio_tensors(np.full(rate, np.nan, np.float32), rate=rate),
        },  # refused by predict
        {"text": text_tensor("this was awful", "it is fine I guess")},  # two rows in one request
        {"text": text_tensor("fine", "")},  # its second row has nothing to encode
    ]
    requests.append({"text": text_tensor("it was okay i guess"), **audio_tensors(clip * 32768, rate=rate)})
    answers = answer_requests(predictor, requests, max_audio_seconds=60)
    assert "UTF-8" in answers[1] and "NaN" in answers[2]
    assert answers[5].startswith("AudioRangeError:") and "float samples peak at" in answers[5]  # unscaled int16
    assert answers[4].startswith("InputError: row 1: nothing to encode"), answers[4]  # the row within its request
    want = predictor.predict(
        [EXAMPLE_TEXT, "this was awful", "it is fine I guess"], [clip, None, None], sampling_rate=[rate, None, None]
    )
    got = [(answers[0], 0), (answers[3], 0), (answers[3], 1)]
    for (out, row), p in zip(got, want):
        assert out["score"][row, 0] == pytest.approx(p.score, abs=1e-5)
        assert out["label"][row, 0].decode() == p.label
        np.testing.assert_allclose(out["weights"][row], [p.weights["text"], p.weights["audio"]], atol=1e-5)
    assert answers[3]["score"].shape == (2, 1) and answers[3]["weights"].shape == (2, 2)


def test_answer_requests_keeps_an_unexpected_failure_with_its_own_request(predictor):
    class Flaky:
        """The real predictor, except that a batch holding the text 'boom' crashes as a whole."""

        modalities = predictor.modalities

        def predict_each(self, texts, audios, rates, names=None):
            if "boom" in texts:
                raise RuntimeError("kernel exploded")
            return predictor.predict_each(texts, audios, rates, names=names)

    answers = answer_requests(
        Flaky(),
        [{"text": text_tensor("so good")}, {"text": text_tensor("boom")}, {"text": text_tensor("so bad")}],
        max_audio_seconds=60,
    )
    assert answers[1] == "internal error: RuntimeError: kernel exploded"
    assert answers[0]["score"][0, 0] == pytest.approx(predictor.predict("so good").score, abs=1e-5)
    assert answers[2]["score"][0, 0] == pytest.approx(predictor.predict("so bad").score, abs=1e-5)


def test_answer_requests_carries_each_rows_notes_as_a_json_list(predictor):
    silence = np.zeros(CLIP_RATE, np.float32)
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(CLIP_RATE) / CLIP_RATE)).astype(np.float32)
    [answer] = answer_requests(
        predictor, [{"text": text_tensor("fine", "great"), **audio_tensors(silence, tone)}], max_audio_seconds=60
    )
    want = predictor.predict_each(["fine", "great"], [silence, tone], [CLIP_RATE, CLIP_RATE])
    assert answer["notes"].shape == (2, 1) and answer["notes"].dtype == object
    assert [json.loads(n) for n in answer["notes"][:, 0]] == [w.notes for w in want]


# ------------------------------------------------------------ the model repository


def test_export_triton_writes_a_repository_triton_can_parse(tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    out = subprocess.run(
        [
            BIN / "fastdaf",
            "export-triton",
            str(tmp_path / "repo"),
            "--max-batch-size",
            "16",
            "--preferred-batch-sizes",
            "4",
            "16",
            "--instances",
            "2",
            "--device",
            "cpu",
            "--max-audio-seconds",
            "30",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(out.stdout)
    assert sorted(info["files"]) == [  # the bundled model carries its Whisper encoder: copied with it
        "fastdaf/1/checkpoint/config.json",
        "fastdaf/1/checkpoint/model.safetensors",
        "fastdaf/1/checkpoint/whisper-encoder/LICENSE",
        "fastdaf/1/checkpoint/whisper-encoder/config.json",
        "fastdaf/1/checkpoint/whisper-encoder/model.safetensors",
        "fastdaf/1/model.py",
        "fastdaf/config.pbtxt",
    ]
    model_dir = tmp_path / "repo" / MODEL_NAME
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (config.name, config.backend, config.max_batch_size) == ("fastdaf", "python", 16)
    assert [(i.name, i.optional) for i in config.input] == [("text", True), ("audio", True), ("sampling_rate", True)]
    assert [o.name for o in config.output] == ["score", "label", "weights", "notes"] and list(
        config.output[2].dims
    ) == [2]
    assert config.output[3].data_type == model_config_pb2.TYPE_STRING and list(config.output[3].dims) == [1]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert (
        config.instance_group[0].count == 2
        and config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    )
    assert config.parameters["weights_order"].string_value == "text,audio"
    assert config.parameters["max_audio_seconds"].string_value == "30"
    # the copied checkpoint loads and is the bundled model
    from fastdaf.default_model import path as default_model_path
    from fastdaf.head import DAFHead

    copied, bundled = (
        DAFHead.from_pretrained(model_dir / "1" / "checkpoint"),
        DAFHead.from_pretrained(default_model_path()),
    )
    for (name, a), (_, b) in zip(copied.state_dict().items(), bundled.state_dict().items()):
        assert a.equal(b), name
    assert "from fastdaf.serving import TritonPythonModel" in (model_dir / "1" / "model.py").read_text()
    # nothing is overwritten without --force
    again = subprocess.run(
        [BIN / "fastdaf", "export-triton", str(tmp_path / "repo")], capture_output=True, text=True, check=False
    )
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    forced = subprocess.run(
        [BIN / "fastdaf", "export-triton", str(tmp_path / "repo"), "--force"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert forced.returncode == 0, forced.stderr


def test_export_triton_refuses_links_and_files_in_the_way(tmp_path, capsys):
    """A symlinked repository or model folder (with --force it would delete or fill wherever it points) and a file
    where a folder goes are refused with exit 2 and a message, never a traceback; the link's target is untouched."""
    from fastdaf.cli import main as cli_main

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "fastdaf").symlink_to(elsewhere)
    (tmp_path / "repo-link").symlink_to(elsewhere)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "fastdaf").write_text("a file")
    (tmp_path / "a-file").write_text("x")
    for argv, says in (
        (["export-triton", str(tmp_path / "linked"), "--force"], "is a symbolic link"),
        (["export-triton", str(tmp_path / "repo-link"), "--force"], "is a symbolic link"),
        (["export-triton", str(tmp_path / "plain")], "is a file where the model's folder goes"),
        (["export-triton", str(tmp_path / "a-file")], "is a file; give a folder"),
    ):
        assert cli_main(argv) == 2, argv
        assert says in capsys.readouterr().err
    assert (elsewhere / "keep.txt").read_text() == "mine" and sorted(p.name for p in elsewhere.iterdir()) == [
        "keep.txt"
    ]


@pytest.mark.parametrize("damage", ["random bytes as weights", "config naming other tensors"])
def test_serve_and_export_refuse_a_corrupt_checkpoint_in_seconds_naming_the_file(tmp_path, damage):
    from fastdaf.default_model import path as default_model_path

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(default_model_path(), checkpoint, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    if damage == "random bytes as weights":
        (checkpoint / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        meta = json.loads((checkpoint / "config.json").read_text())
        meta["config"]["modalities"]["text"] = 300  # the weights hold 384-d text tensors
        (checkpoint / "config.json").write_text(json.dumps(meta))
    for command in (
        ["export-triton", str(tmp_path / "repo")],
        ["serve", "--http-port", str(free_port()), "--grpc-port", str(free_port())],
    ):
        started = time.monotonic()
        out = subprocess.run(
            [BIN / "fastdaf", *command, "--checkpoint", str(checkpoint)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        seconds = time.monotonic() - started
        assert out.returncode == 2, (command[0], out.returncode, out.stderr[-500:])
        assert str(checkpoint / "model.safetensors") in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert seconds < 30, f"{command[0]} took {seconds:.0f} s to refuse the checkpoint"
    assert not (tmp_path / "repo").exists(), "export-triton wrote a repository for a corrupt checkpoint"


def test_serve_options_refuse_what_triton_would_reject(tmp_path):
    with pytest.raises(InputError, match="outside 1..max_batch_size"):
        ServeOptions(max_batch_size=8, preferred_batch_sizes=(16,))
    with pytest.raises(InputError, match="device"):
        ServeOptions(device="tpu")
    assert "max_batch_size: 8" in model_config(
        ["text"], ServeOptions(max_batch_size=8, preferred_batch_sizes=(8,), device="cpu")
    )
    assert ServeOptions().preferred_batch_sizes == (8, 16, 32)
    assert ServeOptions(max_batch_size=1).preferred_batch_sizes == (1,)
    assert ServeOptions(max_batch_size=64).preferred_batch_sizes == (8, 16, 32, 64)
    write_model_repository(tmp_path)
    with pytest.raises(ServeError, match="already exists"):
        write_model_repository(tmp_path)


# ------------------------------------------------------------ a real server


def start_server() -> ServerProcess:
    return ServerProcess("--device", "cpu", "--exit-timeout", "20")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with start_server() as srv:
        yield srv


def expected_predictions(predictor, ids: list[int], bad_every: int) -> dict[int, object]:
    requests = [load_request(i, bad_every=bad_every) for i in ids]
    results = predictor.predict_each(
        [r.text for r in requests], [r.audio for r in requests], [r.sampling_rate for r in requests]
    )
    return dict(zip(ids, results))


def assert_same_prediction(record: dict, want) -> None:
    assert record["ok"], record
    assert record["score"] == pytest.approx(want.score, abs=1e-4), record["id"]
    if abs(abs(want.score) - 0.5) > 1e-4:  # at a label threshold the batch's last bit may decide
        assert record["label"] == want.label, record["id"]
    assert record["weights"] == pytest.approx(want.weights, abs=1e-4), record["id"]


BAD_MESSAGES = {
    "missing": "0 inputs",
    "empty_text": "empty",
    "wrong_type": "FP64",
    "nan_audio": "NaN",
    "oversized_audio": "at most 60 s",
    "bad_utf8": "UTF-8",
    "no_rate": "sampling_rate",
}


def check_load_records(records: list[dict], predictor, *, bad_every: int, bad_status: str = "400") -> None:
    """Every good request answered as in process, every bad one refused with its own message."""
    expected = expected_predictions(predictor, [r["id"] for r in records if r["kind"] == "good"], bad_every=bad_every)
    for record in records:
        if record["kind"] == "good":
            assert_same_prediction(record, expected[record["id"]])
        else:
            assert not record["ok"] and record["status"] == bad_status, record
            assert BAD_MESSAGES[record["kind"]] in record["error"], record


def test_load_from_32_clients_matches_in_process_predictions_and_bad_requests_fail_alone(server, predictor, tmp_path):
    assert set(BAD_MESSAGES) == set(BAD_KINDS)
    records_file = tmp_path / "records.jsonl"
    out = subprocess.run(
        [
            BIN / "fastdaf-bench",
            "serve",
            "--url",
            server.http,
            "--requests",
            "1000",
            "--concurrency",
            "32",
            "--bad-every",
            "10",
            "--records",
            str(records_file),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)["results"]
    records = [json.loads(line) for line in records_file.read_text().splitlines()]
    assert [r["id"] for r in records] == list(range(1000))
    assert summary["bad_requests_sent"] == 100 and summary["succeeded"] == 900 and summary["failed"] == 100
    check_load_records(records, predictor, bad_every=10)
    print(
        f"serve load: {summary['requests_per_s']} requests/s, p50 {summary['latency_ms_good']['p50']} ms, p99 "
        f"{summary['latency_ms_good']['p99']} ms"
    )


def test_a_bad_request_inside_a_dynamic_batch_does_not_fail_the_good_ones(server, predictor):
    """32 text-only requests at once (same inputs, so Triton batches them), every other one bad."""
    texts = [
        f"this is honestly the best thing that happened to me, number {i}"
        if i % 2 == 0
        else (b"\xff\xfe" if i % 4 == 1 else "")
        for i in range(32)
    ]
    probe = TritonClient(server.http)
    before = probe.statistics()
    start = threading.Barrier(len(texts))
    answers: dict[int, object] = {}

    def send(i: int) -> None:
        with TritonClient(server.http) as client:
            client.weights_order()
            start.wait()
            try:
                answers[i] = client.predict(texts[i])
            except ServerError as exc:
                answers[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Triton's Python backend records a batch's statistics after its responses are sent: on a busy machine the
    # last batch's counts can arrive after the clients have their answers (seen: 30 of 32), so they are awaited
    deadline = time.monotonic() + 10
    while (after := probe.statistics())["requests"] - before["requests"] < len(texts) and time.monotonic() < deadline:
        time.sleep(0.05)
    requests, batches = after["requests"] - before["requests"], after["executions"] - before["executions"]
    print(f"{requests} requests in {batches} batches")
    assert requests == 32 and batches < 32, "Triton formed no batch: nothing was tested"
    want = predictor.predict([t for t in texts[::2]], [None] * 16)
    for i, answer in answers.items():
        if i % 2 == 0:
            assert answer["score"] == pytest.approx(want[i // 2].score, abs=1e-4), i
        else:
            assert isinstance(answer, ServerError) and answer.status == "400", (i, answer)
            assert ("UTF-8" if i % 4 == 1 else "empty") in str(answer)


def test_mixed_traffic_marked_absent_is_batched_and_answers_the_same(server, predictor):
    summary, records = run_load(server.http, 300, concurrency=32, bad_every=10, mark_absent=True)
    print(f"mixed traffic, missing inputs marked absent: mean batch {summary['server_mean_batch']}")
    assert summary["server_mean_batch"] > 1.5, summary
    check_load_records(records, predictor, bad_every=10)


def test_grpc_answers_like_http(server, predictor):
    summary, records = run_load(server.grpc, 70, concurrency=8, protocol="grpc", bad_every=7)
    assert summary["failed"] == 10 == summary["bad_requests_sent"]
    check_load_records(records, predictor, bad_every=7, bad_status="StatusCode.INVALID_ARGUMENT")


def test_notes_are_served_as_in_process(server, predictor):
    """Audio without speech (here: silence) may be treated as absent with a note; the server carries the notes."""
    silence = np.zeros(CLIP_RATE, np.float32)
    speech = load_request(2, mix="text+audio")
    cases = [
        ("a calm and pleasant afternoon", silence, CLIP_RATE),
        ("a calm and pleasant afternoon", speech.audio, speech.sampling_rate),
    ]
    want = predictor.predict_each([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases])
    for url, protocol in ((server.http, "http"), (server.grpc, "grpc")):
        with TritonClient(url, protocol=protocol) as client:
            for (text, audio, sr), expected in zip(cases, want):
                got = client.predict(text, audio, sr)
                assert got["notes"] == expected.notes, (protocol, got)
                assert got["score"] == pytest.approx(expected.score, abs=1e-4)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "failed to parse the request JSON"),
        (b'{"inputs": [', "failed to parse the request JSON"),
        (b"\xff\xfe", "failed to parse the request JSON"),
        (b'{"no_inputs": 1}', "Unable to parse 'inputs'"),
    ],
)
def test_a_body_that_is_not_json_gets_tritons_500(server, body, says):
    """Triton's HTTP frontend (C++) parses the body before any fastdaf code runs, and answers a parse
    error with 500, which the README documents: such a request is the client's bug, never worth a retry."""
    request = urllib.request.Request(
        f"http://{server.http}/v2/models/{MODEL_NAME}/infer",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 500 and says in json.loads(err.value.read())["error"]
    with TritonClient(server.http) as client:  # and the server goes on serving
        assert client.predict("still here")["label"] in ("negative", "neutral", "positive")


def test_client_example_script_against_the_server(server, predictor):
    from fastdaf.examples import EXAMPLE_CLIP, EXAMPLE_TEXT

    want = predictor.predict(EXAMPLE_TEXT, str(EXAMPLE_CLIP))
    for args in (["--url", server.http], ["--url", server.grpc, "--grpc"]):
        out = subprocess.run(
            [
                sys.executable,
                REPO / "examples" / "triton_client.py",
                *args,
                "--text",
                EXAMPLE_TEXT,
                "--audio",
                str(EXAMPLE_CLIP),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert got["score"] == pytest.approx(want.score, abs=1e-4) and got["label"] == want.label
        assert got["weights"] == pytest.approx(want.weights, abs=1e-4) and got["notes"] == want.notes
    refused = subprocess.run(
        [sys.executable, REPO / "examples" / "triton_client.py", "--url", server.http, "--text", ""],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 1 and "empty" in refused.stderr


def test_server_survives_clients_that_disconnect_mid_request(server, predictor):
    from tritonclient import http

    body = json.dumps(
        {"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": ["a request nobody waits for"]}]}
    ).encode()
    head = (
        f"POST /v2/models/{MODEL_NAME}/infer HTTP/1.1\r\nHost: {server.http}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {{}}\r\n\r\n"
    )
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.http_port)) as s:  # body cut off half way
            s.sendall(head.format(len(body)).encode() + body[: len(body) // 2])
        with socket.create_connection(("127.0.0.1", server.http_port)) as s:  # whole request, gone before the answer
            s.sendall(head.format(len(body)).encode() + body)
    clip = load_request(2).audio  # long enough that the server is still working when the client gives up
    impatient = http.InferenceServerClient(server.http, network_timeout=0.001)
    inputs = http.InferInput("audio", [1, len(clip)], "FP32")
    inputs.set_data_from_numpy(clip[None])
    rate = http.InferInput("sampling_rate", [1, 1], "INT32")
    rate.set_data_from_numpy(np.array([[CLIP_RATE]], np.int32))
    for _ in range(3):
        with pytest.raises(Exception):  # a client-side timeout; its type is the transport's
            impatient.infer(MODEL_NAME, [inputs, rate])
    time.sleep(0.5)
    assert server.proc.poll() is None
    with TritonClient(server.http) as client:
        assert client.client.is_server_live() and client.client.is_model_ready(MODEL_NAME)
        got = client.predict("what a lovely surprise")
    assert got["score"] == pytest.approx(predictor.predict("what a lovely surprise").score, abs=1e-4)


def test_shutdown_during_load_finishes_the_accepted_requests(tmp_path, predictor):
    srv = start_server()
    try:
        box: dict = {}
        load = threading.Thread(target=lambda: box.update(result=run_load(srv.http, 400, concurrency=16)))
        load.start()
        time.sleep(1.5)
        sigterm_at = time.time()
        srv.terminate()
        time.sleep(0.5)
        with pytest.raises(ServerError):  # a new HTTP connection is refused while the open ones drain
            TritonClient(srv.http, timeout_s=10).predict("too late")
        load.join(timeout=120)
        code = srv.stop()
    finally:
        srv.kill()
    assert code == 0 and srv.events()[-1] == {"event": "stopped", "exit_code": 0}
    _, records = box["result"]
    assert len(records) == 400
    accepted = [r for r in records if r["sent_at"] < sigterm_at]
    assert accepted and all(r["ok"] for r in accepted), [r for r in accepted if not r["ok"]][:3]
    after = [r for r in records if r["done_at"] > sigterm_at]
    print(
        f"shutdown: {len(accepted)} requests sent before SIGTERM, {len(after)} answered after it, "
        f"{sum(not r['ok'] for r in records)} refused"
    )
    assert after, "the load ended before the shutdown began"
    expected = expected_predictions(predictor, [r["id"] for r in records if r["ok"]], bad_every=0)
    for record in records:
        if record["ok"]:
            assert_same_prediction(record, expected[record["id"]])
        else:  # refused after the shutdown began: never a wrong answer, never a model error
            assert record["sent_at"] >= sigterm_at and record["status"] != "400", record


# Installed as sitecustomize in the server's process: its SIGTERM handler, once installed, is re-entered at every line
# it runs (its callees' lines included), as a burst of SIGTERMs from a supervisor and a `timeout` wrapper can do.
REENTERED_HANDLER = """
import signal, sys

_install = signal.signal


def _reentering(handler):
    def reentered(signum, frame):
        nested = []

        def trace(frame_, event, arg):
            if event == "line" and not nested:
                nested.append(1)
                try:
                    handler(signum, frame_)  # a second signal, landing on this line
                finally:
                    nested.pop()
            return trace

        previous = sys.gettrace()
        sys.settrace(trace)
        try:
            handler(signum, frame)
        finally:
            sys.settrace(previous)

    return reentered


def _signal(sig, handler):
    if sig == signal.SIGTERM and callable(handler):
        handler = _reentering(handler)
    return _install(sig, handler)


signal.signal = _signal
"""


def test_a_sigterm_inside_the_sigterm_handler_does_not_hang_the_server(tmp_path):
    """The handler used to set a threading.Event; a second SIGTERM landing inside that Event.set, which holds the
    Event's lock, ran the handler again, which waited for that lock forever (seen twice with `timeout` beside a
    pkill). Here the second signal lands on the handler's every line, deterministically: the server must stop as
    for one SIGTERM."""
    (tmp_path / "sitecustomize.py").write_text(REENTERED_HANDLER)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    srv = ServerProcess("--device", "cpu", "--exit-timeout", "20", env={"PYTHONPATH": path})
    try:
        srv.terminate()
        try:
            code = srv.proc.wait(60)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        srv.kill()
    assert code == 0, f"exit code {code} (None: still running 60 s after SIGTERM)"
    time.sleep(0.2)  # let the reader take the last lines
    assert srv.events()[-1] == {"event": "stopped", "exit_code": 0}


def test_a_server_whose_model_backend_dies_stops_for_its_supervisor_and_leaves_no_shared_memory():
    """kill -9 of the Python-backend stub (what the OOM killer does): Triton would answer every request with 500
    while saying ready; fastdaf serve stops it and exits 3 within seconds, so a supervisor restarts it. Its
    /dev/shm regions (request data inside) are private while it runs and removed when it exits."""
    from fastdaf.serving.server import BACKEND_DIED_EXIT, _stub_pids, model_ready

    srv = start_server()
    try:
        regions = list(Path("/dev/shm").glob(f"fastdaf{srv.proc.pid}_*"))
        deadline = time.monotonic() + 5  # made private within half a second of being seen
        while not all(r.stat().st_mode & 0o777 == 0o600 for r in regions) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert regions and all(r.stat().st_mode & 0o777 == 0o600 for r in regions)
        ps = subprocess.run(["ps", "-ww", "-eo", "pid,ppid,args"], capture_output=True, text=True, check=True).stdout
        (triton,) = [int(p) for p, pp, args in (line.split(None, 2) for line in ps.splitlines()[1:])
                     if int(pp) == srv.proc.pid and "tritonserver" in args]  # fmt: skip
        (stub,) = _stub_pids(triton)  # this server's, not another test's
        os.kill(stub, signal.SIGKILL)
        code = srv.proc.wait(30)
    finally:
        srv.kill()
    assert code == BACKEND_DIED_EXIT and srv.events()[-1] == {"event": "stopped", "exit_code": BACKEND_DIED_EXIT}
    assert "the model's backend process died" in "".join(srv.lines)
    assert not model_ready(f"http://{srv.http}")  # nothing answers "ready" for a model that cannot answer
    assert not list(Path("/dev/shm").glob(f"fastdaf{srv.proc.pid}_*"))


def test_regions_a_killed_server_left_are_removed_by_the_next_one():
    """SIGKILL leaves a server no time to remove its /dev/shm regions; the next fastdaf serve removes those of
    servers that no longer run, and leaves the ones of running servers alone."""
    from fastdaf.serving.server import _remove_orphaned_shared_memory

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = Path("/dev/shm") / f"fastdaf{int(dead.stdout)}_test-region"
    alive = Path("/dev/shm") / f"fastdaf{os.getpid()}_test-region"
    for region in (orphan, alive):
        region.write_bytes(b"request text")
    try:
        _remove_orphaned_shared_memory()
        assert not orphan.exists() and alive.exists()
    finally:
        orphan.unlink(missing_ok=True)
        alive.unlink(missing_ok=True)


def test_serve_says_what_is_missing_before_starting_anything(monkeypatch, tmp_path):
    from fastdaf.serving import serve

    monkeypatch.setitem(sys.modules, "pytriton.utils.distribution", None)  # as if nvidia-pytriton were not installed
    with pytest.raises(ServeError, match=r"pip install 'fastdaf\[serve\]'"):
        serve()
    monkeypatch.delitem(sys.modules, "pytriton.utils.distribution")
    out = subprocess.run(
        [BIN / "fastdaf", "serve", "--checkpoint", str(tmp_path / "nowhere"), "--http-port", "1", "--grpc-port", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2 and "CheckpointError" not in out.stdout and "no checkpoint directory" in out.stderr
    out = subprocess.run(
        [BIN / "fastdaf", "serve", "--exit-timeout", "60"], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 2 and "1..25" in out.stderr


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be >= 1, got 0"),
        ({"max_queue_delay_us": -1}, "max_queue_delay_us must be >= 0, got -1"),
        ({"instances": 0}, "instances must be >= 1, got 0"),
        ({"max_audio_seconds": 0}, "max_audio_seconds must be in (0, 600], got 0"),
        ({"max_audio_seconds": 601}, "max_audio_seconds must be in (0, 600], got 601"),
    ],
)
def test_serve_options_name_the_bad_value(options, says):
    with pytest.raises(InputError) as err:
        ServeOptions(**options)
    assert says in str(err.value)


def test_client_and_load_generator_refuse_bad_arguments_naming_them(tmp_path):
    with pytest.raises(InputError, match="protocol 'udp' is not accepted"):
        TritonClient("127.0.0.1:1", protocol="udp")
    with pytest.raises(InputError, match="mix 'video' is not accepted"):
        load_request(0, mix="video")
    with pytest.raises(InputError, match="n_requests and concurrency must be >= 1, got 0 and 32"):
        run_load("127.0.0.1:1", 0)
    port = free_port()  # nothing listens there
    with pytest.raises(ServerError, match=rf"no fastdaf model 'fastdaf' answers at 127.0.0.1:{port}"):
        TritonClient(f"127.0.0.1:{port}", timeout_s=5).predict("hello")
    out = subprocess.run(
        [BIN / "fastdaf-bench", "serve", "--url", f"127.0.0.1:{port}", "--requests", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2 and f"no fastdaf model 'fastdaf' answers at 127.0.0.1:{port}" in out.stderr
    out = subprocess.run(
        [BIN / "fastdaf-bench", "serve", "--bad-every", "-1"], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 2 and "--bad-every must be >= 0" in out.stderr
    with pytest.raises(ServeError, match="did not become ready") as err:
        ServerProcess("--checkpoint", str(tmp_path / "nowhere"), startup_timeout_s=120)
    assert "no checkpoint directory" in str(err.value)


def test_instance_kind_is_named_for_what_it_chooses_and_the_old_name_still_works(tmp_path, capsys):
    """serve/export-triton's choice of Triton instance kind is --instance-kind; --device, its 0.1 name that the
    README told users to pass, is the same option. (--device of predict and fastdaf-bench is a torch device.)"""
    from fastdaf.bench import main as bench_main
    from fastdaf.cli import main as cli_main
    from fastdaf.cli_parser import build_parser

    for flag, kind in (("--instance-kind", "gpu"), ("--device", "gpu"), ("--instance-kind", "cpu")):
        repo = tmp_path / f"{flag}-{kind}"
        assert cli_main(["export-triton", str(repo), flag, kind]) == 0
        assert f"kind: KIND_{kind.upper()}" in (repo / "fastdaf" / "config.pbtxt").read_text()
    capsys.readouterr()
    assert "--instance-kind" in build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    for argv in (["head", "--device", "tpu"], ["e2e", "--device", "tpu"]):  # one device type for both commands
        with pytest.raises(SystemExit) as exit_:
            bench_main(argv)
        assert exit_.value.code == 2 and "'tpu' is not a device; use cpu, cuda or cuda:N" in capsys.readouterr().err
