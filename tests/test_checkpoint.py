import json
import struct
import time
from pathlib import Path

import pytest
import torch
from builders import peak_rss_mb
from safetensors.torch import load_file, save_file

from fastdaf import CheckpointError, DAFConfig, DAFHead, FastDAFError
from fastdaf.checkpoint import CONFIG_FILE, MAX_CONFIG_BYTES, WEIGHTS_FILE, read_config
from fastdaf.cli import main as cli_main
from fastdaf.config import MAX_INPUT_DIM, MAX_LAYER_SIZE, MAX_WEIGHTS


@pytest.fixture
def saved(tmp_path, rng):
    cfg = DAFConfig({"text": 12, "audio": 6}, n_outputs=2, fusion="dynamic")
    head = DAFHead(cfg)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(generator=rng)
    head.set_input_stats("audio", torch.randn(6, generator=rng), torch.rand(6, generator=rng) + 0.5)
    head.save_pretrained(tmp_path / "ckpt", extra={"seed": 3})
    return head.eval(), tmp_path / "ckpt"


@pytest.mark.parametrize("fusion", ["dynamic", "static", "mean", "concat"])
def test_round_trip_gives_identical_outputs(fusion, tmp_path, rng):
    cfg = DAFConfig({"text": 12, "audio": 6, "video": 3}, fusion=fusion)
    head = DAFHead(cfg).eval()
    head.set_input_stats("text", torch.randn(12, generator=rng), torch.rand(12, generator=rng) + 0.1)
    head.save_pretrained(tmp_path)
    loaded = DAFHead.from_pretrained(tmp_path)
    assert loaded.config == cfg and not loaded.training
    feats = {m: torch.randn(5, d, generator=rng) for m, d in cfg.modalities.items()}
    present = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1], [1, 1, 0]], dtype=torch.bool)
    a, b = head(feats, present), loaded(feats, present)
    assert torch.equal(a.score, b.score) and torch.equal(a.weights, b.weights)


def test_config_file_is_readable_json(saved):
    _, path = saved
    meta = json.loads((path / CONFIG_FILE).read_text())
    assert meta["format_version"] == 1
    assert meta["config"]["modalities"] == {"text": 12, "audio": 6}
    assert meta["extra"] == {"seed": 3}


def rewrite_config(path, change):
    meta = json.loads((path / CONFIG_FILE).read_text())
    change(meta)
    (path / CONFIG_FILE).write_text(json.dumps(meta))


def rewrite_weights(path, change):
    state = load_file(str(path / WEIGHTS_FILE))
    change(state)
    save_file(state, str(path / WEIGHTS_FILE))


@pytest.mark.parametrize(
    "breakage, words",
    [
        (lambda p: (p / CONFIG_FILE).unlink(), "has no config.json"),
        (lambda p: (p / WEIGHTS_FILE).unlink(), "has no model.safetensors"),
        (lambda p: (p / CONFIG_FILE).write_text("{not json"), "not valid JSON"),
        (
            lambda p: rewrite_config(p, lambda m: m.update(format="other")),
            "expected format 'fastdaf-daf-head', found 'other'",
        ),
        (lambda p: rewrite_config(p, lambda m: m.update(format_version=99)), "unknown format_version 99"),
        (
            lambda p: rewrite_config(p, lambda m: m["config"].update(fusion="late")),
            "invalid head config: fusion 'late'",
        ),
        (lambda p: (p / WEIGHTS_FILE).write_bytes(b"\x00garbage" * 10), "corrupt or not a safetensors file"),
        (
            lambda p: rewrite_weights(p, lambda s: s.pop("projections.audio.weight")),
            r"missing tensor\(s\) \['projections.audio.weight'\]",
        ),
        (
            lambda p: rewrite_weights(p, lambda s: s.update(extra_tensor=torch.zeros(2))),
            r"unexpected tensor\(s\) \['extra_tensor'\]",
        ),
        (
            lambda p: rewrite_weights(p, lambda s: s.update({"projections.audio.weight": torch.zeros(128, 7)})),
            r"'projections.audio.weight' has shape \[128, 7\], expected \[128, 6\]",
        ),
        (
            lambda p: rewrite_weights(p, lambda s: s.update({"mlp_out.bias": torch.zeros(2, dtype=torch.int64)})),
            "'mlp_out.bias' has dtype I64, expected a floating-point dtype",
        ),
        (
            lambda p: rewrite_weights(p, lambda s: s["input_std_audio"].fill_(float("nan"))),
            "'input_std_audio' holds NaN",
        ),
        (
            lambda p: rewrite_config(p, lambda m: m["config"]["modalities"].update(audio=74)),
            r"'input_mean_audio' has shape \[6\], expected \[74\]",
        ),
    ],
)
def test_loading_errors_name_what_is_wrong(saved, breakage, words):
    _, path = saved
    breakage(path)
    with pytest.raises(CheckpointError, match=words) as info:
        DAFHead.from_pretrained(path)
    assert isinstance(info.value, FastDAFError)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint directory at"):
        DAFHead.from_pretrained(tmp_path / "nowhere")


def test_encoder_weights_inside_a_checkpoint_are_found_from_any_folder(saved, tmp_path, monkeypatch):
    """ "./NAME" names a folder inside the checkpoint, wherever the process runs and wherever the folder moved."""
    from fastdaf.checkpoint import encoder_specs, local_encoder_folders

    _, path = saved
    moved = tmp_path / "elsewhere" / "ckpt"
    (moved / "enc").mkdir(parents=True)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        (moved / name).write_bytes((path / name).read_bytes())
    extra = {"encoders": {"text": "default", "audio": {"kind": "whisper", "model": "./enc", "layer": 2}}}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "enc").mkdir()  # a folder of the same name in the current folder is not the one meant
    specs = encoder_specs(moved, extra)
    assert specs == {
        "text": "default",
        "audio": {"kind": "whisper", "model": str((moved / "enc").resolve()), "layer": 2},
    }
    assert extra["encoders"]["audio"]["model"] == "./enc"  # the record is not changed
    assert local_encoder_folders(extra) == {"audio": "enc"}


@pytest.mark.parametrize(
    ("model", "words"),
    [("./missing", r"weights './missing' are missing .*copy the whole checkpoint"), ("./../ckpt", "outside")],
)
def test_encoder_weights_missing_or_outside_the_checkpoint_are_refused(saved, model, words):
    from fastdaf.checkpoint import encoder_specs

    _, path = saved
    with pytest.raises(CheckpointError, match=words):
        encoder_specs(path, {"encoders": {"audio": {"kind": "whisper", "model": model}}})


def test_other_model_references_never_mean_the_current_folder_or_the_network(saved, tmp_path, monkeypatch):
    """A checkpoint's model path is taken relative to the checkpoint folder; an absolute one that is missing, or a
    hub id not in the local cache, is a CheckpointError, with no network access (a file you were handed does not
    make fastdaf download) unless FASTDAF_ALLOW_DOWNLOADS=1; fastdaf's own names stay as they are."""
    import socket

    from fastdaf.checkpoint import encoder_specs

    _, path = saved
    (path / "my-encoder").mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-encoder").mkdir()  # the same name in the current folder is not the one meant
    (tmp_path / "some-org" / "some-model").mkdir(parents=True)  # nor is a folder shaped like a hub id

    def no_network(*args, **kwargs):
        raise AssertionError("network access while resolving a checkpoint's encoders")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    monkeypatch.delenv("FASTDAF_ALLOW_DOWNLOADS", raising=False)
    specs = encoder_specs(path, {"encoders": {"text": {"kind": "text", "model": "my-encoder"}, "audio": "acoustic"}})
    assert specs == {"text": {"kind": "text", "model": str((path / "my-encoder").resolve())}, "audio": "acoustic"}
    for model, words in (
        (str(tmp_path / "gone"), "is not on this machine .*never tried as a hub id"),
        ("some-org/some-model", "neither a folder beside the checkpoint nor .* in the local cache.*FASTDAF_ALLOW_DOWN"),
    ):
        with pytest.raises(CheckpointError, match=words):
            encoder_specs(path, {"encoders": {"text": {"kind": "text", "model": model}}})
        with pytest.raises(CheckpointError, match=words):
            encoder_specs(path, {"encoders": {"audio": model}})  # a string spec too
    for name in ("default", "whisper-base", "all-mpnet-base-v2"):
        assert encoder_specs(path, {"encoders": {"text": name}}) == {"text": name}


def test_bundled_model_names(tmp_path, monkeypatch):
    from fastdaf import default_model

    assert default_model.resolve(None) == default_model.DIRECTORY
    assert default_model.resolve("fast") == default_model.DIRECTORY / "fast"
    assert DAFHead.from_pretrained(default_model.resolve("fast")).config.modalities == {"text": 384, "audio": 62}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast").mkdir()
    assert default_model.resolve("fast") == default_model.Path("fast")  # a local folder wins, as in from_pretrained
    assert default_model.resolve("other") == default_model.Path("other")
    with pytest.raises(CheckpointError, match=r"no bundled model named 'other'; bundled: \['default', 'fast'\]"):
        default_model.path("other")


# ============================================================================ hostile checkpoints (issue 13)
# refused quickly, before the memory they ask for, with a typed error
def checkpoint(tmp_path: Path, name: str = "ckpt", **extra) -> Path:
    DAFHead(DAFConfig({"text": 8, "audio": 4})).save_pretrained(tmp_path / name, extra=extra)
    return tmp_path / name


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"projection_size": 30_000}, f"projection_size must be in 1..{MAX_LAYER_SIZE}, got 30000"),
        ({"hidden_size": 10**9}, f"hidden_size must be in 1..{MAX_LAYER_SIZE}, got 1000000000"),
        ({"attention_size": 30_000}, "attention_size must be in 1..8192"),
        ({"n_outputs": 10**9}, "n_outputs must be in 1..64"),
        (
            {"modalities": {"text": 10**9}},
            f"input dimension of modality 'text' must be in 1..{MAX_INPUT_DIM}, got 1000000000",
        ),
        # each size within its limit, together too many weights
        (
            {"modalities": {"text": 30_000, "audio": 30_000, "video": 30_000}, "projection_size": 8192},
            f"this head would hold [0-9,]+ weights, more than the {MAX_WEIGHTS:,} accepted",
        ),
    ],
)
def test_checkpoint_sizes_are_refused_before_allocation(tmp_path, changes, words):
    path = checkpoint(tmp_path)
    rewrite_config(path, lambda m: m["config"].update(changes))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=rf"ckpt/config\.json: invalid head config: {words}"):
        read_config(path)
    before = peak_rss_mb()
    with pytest.raises(CheckpointError, match=words):
        DAFHead.from_pretrained(path)
    assert time.perf_counter() - start < 1.0 and peak_rss_mb() - before < 100


def test_weights_header_is_checked_before_tensors_are_read(tmp_path):
    """A model.safetensors whose header claims a 512 MiB tensor (a sparse file) is refused from the header."""
    path = checkpoint(tmp_path)
    header = json.dumps(
        {"projections.text.weight": {"dtype": "F32", "shape": [128, 1 << 20], "data_offsets": [0, 512 << 20]}}
    ).encode()
    with (path / WEIGHTS_FILE).open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + (512 << 20))
    before, start = peak_rss_mb(), time.perf_counter()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing tensor\(s\) \[.*'mlp_out.bias'"):
        DAFHead.from_pretrained(path)
    assert time.perf_counter() - start < 1.0 and peak_rss_mb() - before < 100


def test_config_json_nesting_size_and_encoders_are_typed_errors(tmp_path, capsys):
    deep = checkpoint(tmp_path, "deep")
    (deep / CONFIG_FILE).write_text('{"format": "fastdaf-daf-head", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CheckpointError, match=r"deep/config\.json nests JSON too deeply to read"):
        read_config(deep)
    big = checkpoint(tmp_path, "big")
    with (big / CONFIG_FILE).open("a") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)
    with pytest.raises(
        CheckpointError, match=r"big/config\.json is 16,777,217 bytes; a checkpoint config\.json is at most 16,777,216"
    ):
        read_config(big)
    for name, encoders, words in (
        ("list", ["text"], "'extra.encoders' is a list"),
        ("number", {"text": 5}, "'extra.encoders.text' is a int"),
    ):
        bad = checkpoint(tmp_path, name, encoders=encoders)
        with pytest.raises(
            CheckpointError,
            match=rf"{name}/config\.json: {words}; expected an object mapping a modality name to an encoder spec",
        ):
            read_config(bad)
    assert (
        read_config(checkpoint(tmp_path, "fine", encoders={"text": "default", "audio": {"kind": "acoustic"}}))[1][
            "encoders"
        ]["text"]
        == "default"
    )
    # the CLI turns them into exit code 2 with the message, before any model or data is loaded
    for ckpt, words in ((deep, "nests JSON too deeply"), (tmp_path / "list", "'extra.encoders' is a list")):
        for argv in (
            ["predict", "--checkpoint", str(ckpt), "--text", "hi"],
            ["eval", str(tmp_path / "absent.pkl"), "--checkpoint", str(ckpt)],
        ):
            assert cli_main(argv) == 2
            err = capsys.readouterr().err
            assert f"fastdaf {argv[0]}: error: " in err and words in err and "Traceback" not in err
