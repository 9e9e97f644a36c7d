"""The Ray engine, bulk scoring on Ray Data: `fastdaf predict --manifest ... --engine ray` and `predict_manifest`.

The local engine (fastdaf.engines.local) scores a manifest in one process; this one runs the
same `SentimentPredictor` as a stateful callable class in Ray Data's `map_batches`, so the model loads once
per worker and a cluster of GPU machines scores millions of rows without a home-made scheduler. Without
`address` a local Ray instance is started (one machine, every CPU); with one, the job joins that cluster.

Input (`manifest`): one CSV/JSONL manifest, a folder of them or a glob, local or remote: see
fastdaf.engines.ray_inputs, which reads them.

Order and identity: each row carries its position (file order, sorted by path, then row order), and the
results are sorted by it before they are written, so output row k is input row k and keeps its id.
Messages name a row as the single-process path does, `id 'x' (line 3)`, and with several files
`id 'x' (line 3 of part-0001.csv)`.

Bad rows (missing or broken audio, nothing to encode, text that is not valid Unicode, ...) carry their
error in `error` and never stop the job: the per-row errors are `SentimentPredictor.predict_each`'s, and
a batch that raises anyway (an error that is not about one input, e.g. text for a model without a text
encoder, which stops the single-process path, or anything unexpected) is run again row by row, the rows
that raise getting `"<ExceptionType>: <row name>: <message>"`. A worker that cannot start (no CUDA where
asked, a checkpoint it cannot read) fails the job with that error. A worker process that
dies (killed for memory, a lost node, a crash in native code) is restarted by Ray and its unfinished
batches run again on a live worker: Ray Data's actor fault tolerance, whose default (unlimited restarts
and retries) is kept; a batch that kills every worker it runs on shows as restart after restart in the
log (stop the job, lower the batch size). Results are written once, from the sorted, complete dataset,
so a retried batch never appears twice; a job that fails writes nothing.

Output (`out`, a local or shared folder, created if missing): `predictions.parquet`, one file in input
order, and `predictions.jsonl` when asked. JSONL lines are the single-process path's records byte for byte
(`SentimentPredictor.record`). Parquet holds the same record flattened as in the CSV output
(`fastdaf.records.record_columns`: id, score, label, weights.<modality>, outputs.<name> for multi-output
models, notes, error), with `notes` as list<string> (Parquet has lists; CSV writes them as JSON text).
Files are written under a temporary name and renamed when complete. Existing outputs are refused, not
overwritten, and there is no resumption: a rerun goes to a new folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import errors
from ..checkpoint import read_config
from ..choices import DEFAULT_ENCODER_BACKEND, DEFAULT_HEAD, ENCODER_BACKENDS, HEADS
from ..data.manifests import read_manifest
from ..default_model import resolve as resolve_checkpoint
from ..errors import FastDAFError, InputError, Interrupted, OutputError
from ..extras import require
from ..outputs import output_lock, provenance, refuse_symlink, write_provenance
from ..pipeline import SentimentPredictor
from ..records import flatten_record, parquet_schema
from . import isolation
from .isolation import DEFAULT_NETWORK, NETWORKS
from .ray_inputs import URI, from_bytes, manifest_files, parse_remotely, pyarrow_modules, rows_table

FORMATS = ("parquet", "jsonl")
OUTPUT_FILES = {"parquet": "predictions.parquet", "jsonl": "predictions.jsonl"}
# how a fastdaf error raised on a Ray worker appears in the traceback text Ray passes on
_RAISED = re.compile(r"^fastdaf\.errors\.(\w+): (.*)$", re.MULTILINE)


def _import_ray():
    """Ray (with Ray Data), or MissingExtraError naming the extra that installs them (fastdaf[ray])."""
    require("ray.data", "--engine ray (bulk scoring on Ray Data)")
    return require("ray", "--engine ray (bulk scoring on Ray Data)")


# ------------------------------------------------------------------------------------------- the worker
def _valid_text(value: Any) -> Any:
    """A string Arrow can store: lone surrogates (text that is not valid Unicode, quoted back in a message)
    become backslash escapes; anything else unchanged."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


class _Scorer:
    """The stateful callable class of `map_batches`: one SentimentPredictor per worker, loaded once."""

    def __init__(self, predictor_kwargs: dict[str, Any], with_json: bool) -> None:
        self.predictor = SentimentPredictor(**predictor_kwargs)
        self.with_json = with_json
        self.schema = parquet_schema(self.predictor.modalities, self.predictor.output_names)

    def __call__(self, batch):
        pa = pyarrow_modules()[0]
        ids = batch.column("id").to_pylist()
        names = batch.column("name").to_pylist()
        texts = [from_bytes(t) for t in batch.column("text").to_pylist()]
        audios = [from_bytes(a) for a in batch.column("audio").to_pylist()]
        results = self._predict(texts, audios, names)
        p = self.predictor
        records = [p.record(res, i) for res, i in zip(results, ids)]
        columns: dict[str, list] = {c: [] for c in self.schema.names}
        for record in records:
            flat = flatten_record(record, p.modalities, p.output_names)
            flat["notes"] = record["notes"]  # a list in Parquet (flatten_record writes JSON text, for CSV)
            for c in self.schema.names:
                value = flat[c]
                columns[c].append([_valid_text(v) for v in value] if c == "notes" else _valid_text(value))
        table = pa.table(columns, schema=self.schema).append_column("_pos", batch.column("_pos"))
        if self.with_json:
            table = table.append_column("_record", pa.array([json.dumps(r) for r in records], pa.string()))
        return table

    def _predict(self, texts: list, audios: list, names: list) -> list:
        """predict_each's results. A batch that raises (an error that is not about one input, e.g. text for a
        model without a text encoder, or anything unexpected) is run again row by row, each row that raises
        getting `"<ExceptionType>: <row name>: <message>"`: one row never stops the job."""
        try:
            return self.predictor.predict_each(texts, audios, names=names)
        except Exception:  # noqa: BLE001 - isolate the rows that raise; the others are scored
            results = []
            for text, audio, name in zip(texts, audios, names):
                try:
                    results += self.predictor.predict_each([text], [audio], names=[name])
                except Exception as exc:  # noqa: BLE001 - this row's error; the job goes on
                    results.append(f"{type(exc).__name__}: {name}: {exc}")
            return results


def _fastdaf_error(exc: BaseException) -> FastDAFError | None:
    """The fastdaf error behind an exception from a Ray job, re-created plainly so that callers (and the CLI's
    exit code 2) see its own type and message. Ray wraps what a worker raised and keeps the original only
    as traceback text (`fastdaf.errors.ManifestError: message`), so that text is read when no fastdaf
    exception is in the chain."""
    seen: set[int] = set()
    todo, texts = [exc], []
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, FastDAFError) and type(e).__module__.startswith("fastdaf"):
            return e
        texts.append(str(e))
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "cause", None)) if isinstance(x, BaseException)]
    for text in texts:
        found = _RAISED.findall(text)
        if found:
            name, message = found[-1]
            kind = getattr(errors, name, None)
            if isinstance(kind, type) and issubclass(kind, FastDAFError):
                return kind(message.strip())
    return None


# --------------------------------------------------------------------------------------------- the job
def predict_manifest(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    address: str | None = None,
    workers: int | None = None,
    num_gpus_per_worker: float = 0,
    batch_size: int = 32,
    formats: Sequence[str] = ("parquet",),
    device: str | None = None,
    head_backend: str = DEFAULT_HEAD,
    backend: str = DEFAULT_ENCODER_BACKEND,
    allow_duplicate_ids: bool = False,
    progress: bool = True,
    ray_network: str = DEFAULT_NETWORK,
    _ray_temp_dir: str | None = None,
) -> dict[str, Any]:
    """Score every row of a manifest (file, folder, glob; local or remote) on Ray Data; write the results
    to `out` (a folder) in input order. Returns a summary: rows, predicted, failed, seconds, rows_per_s,
    workers, outputs (format -> path). See the module docstring for inputs, outputs and failures.

    manifest: a path or a URI string (a pathlib.Path turns 's3://b/k' into 's3:/b/k').
    address: None starts a local Ray instance (or uses the one this process already runs); "HOST:6379" or
    "auto" joins that cluster.
    workers: model replicas (default: one per num_gpus_per_worker GPUs of the cluster when
    num_gpus_per_worker > 0, else one per CPU; never more than there are blocks of rows).
    num_gpus_per_worker: GPUs reserved per worker (0: CPU workers; fractions share a GPU); with GPUs the
    model runs on CUDA unless `device` says otherwise.
    ray_network: for a Ray instance this call starts (no `address`, none running in this process): "private"
    runs the job, driver included, in private Linux namespaces (fastdaf.engines.isolation): Ray listens on a
    loopback interface no other process or machine can reach, and every Ray process ends with the run; the job
    then has no network (a remote manifest is refused). "host": Ray listens on every interface, guarded by its
    token (RAY_AUTH_MODE=disabled is refused).
    """
    formats = tuple(dict.fromkeys(formats))
    if not formats or any(f not in FORMATS for f in formats):
        raise InputError(f"formats must be one or more of {list(FORMATS)}, got {list(formats)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers must be an integer >= 1 (or None: one per GPU/CPU), got {workers!r}")
    if (
        not isinstance(num_gpus_per_worker, (int, float))
        or not 0 <= num_gpus_per_worker
        or math.isnan(num_gpus_per_worker)
    ):
        raise InputError(f"num_gpus_per_worker must be a number >= 0, got {num_gpus_per_worker!r}")
    if head_backend not in HEADS:
        raise InputError(f"head_backend {head_backend!r} is not accepted; choose one of {list(HEADS)}")
    if backend not in ENCODER_BACKENDS:
        raise InputError(f"backend {backend!r} is not accepted; choose one of {list(ENCODER_BACKENDS)}")
    if num_gpus_per_worker > 0 and device == "cpu":
        raise InputError("device 'cpu' with num_gpus_per_worker > 0 reserves GPUs that are not used; drop one")
    if ray_network not in NETWORKS:
        raise InputError(f"ray_network {ray_network!r} is not accepted; choose one of {list(NETWORKS)}")
    ray = _import_ray()
    starts_ray = address is None and not ray.is_initialized() and not isolation.INSIDE
    isolate = starts_ray and ray_network == "private"
    if starts_ray and not isolate and os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        # Ray 2.60 binds every interface and has no loopback-only option; its token is then the only guard
        raise InputError(
            "RAY_AUTH_MODE=disabled with --ray-network host: the local Ray instance would listen on every network "
            "interface (Ray 2.60 cannot bind to loopback only), and without its token anyone who reaches this "
            "machine could run code in it; unset RAY_AUTH_MODE, drop --ray-network host, or pass --address to use "
            "a Ray cluster you secured"
        )
    pc, pq = pyarrow_modules()[1], pyarrow_modules()[3]
    refuse_symlink(Path(out))
    targets = _output_paths(Path(out), formats)
    manifest = os.fspath(manifest)
    checkpoint_path = resolve_checkpoint(checkpoint)
    cfg, _ = read_config(checkpoint_path)  # a bad checkpoint is refused before Ray starts
    modalities, output_names = list(cfg.modality_names), list(cfg.output_names[1:])
    if isolate and URI.match(manifest) and not manifest.startswith("file:"):
        raise InputError(
            f"manifest {manifest!r} is remote, and the local Ray instance runs in a private network without access "
            "to it; pass --ray-network host (API: ray_network='host'), or --address to use a Ray cluster"
        )
    fs, files, remote, base = manifest_files(manifest)
    local_rows = None
    if len(files) == 1 and not remote:
        # before Ray starts; named as given, so manifest errors read as the single-process path's
        source = files[0] if URI.match(manifest) else manifest
        local_rows = read_manifest(source, allow_duplicate_ids=allow_duplicate_ids)
    _make_folder(Path(out))
    options = {"head": head_backend, "encoder_backend": backend, "device": device, "batch_size": batch_size}
    made_by = provenance(checkpoint_path, files[0] if local_rows is not None else None, options)
    made_by["manifest"] = manifest
    # one writer per output folder, from here to the renaming of the last file (fastdaf.outputs); a job in private
    # namespaces runs under the lock of the process that started it
    with output_lock(Path(out) / "predictions") if not isolation.INSIDE else contextlib.nullcontext():
        _output_paths(Path(out), formats)  # again, now that no other run can be writing them
        if isolate:
            return isolation.run_isolated(
                {
                    "manifest": manifest,
                    "out": os.fspath(out),
                    "checkpoint": os.fspath(checkpoint_path),
                    "workers": workers,
                    "num_gpus_per_worker": num_gpus_per_worker,
                    "batch_size": batch_size,
                    "formats": list(formats),
                    "device": device,
                    "head_backend": head_backend,
                    "backend": backend,
                    "allow_duplicate_ids": allow_duplicate_ids,
                    "progress": progress,
                }
            )
        for stale in Path(out).glob(".predictions.*.partial"):
            stale.unlink()  # left by a run that was killed: the lock says nobody is writing them
        started = time.perf_counter()
        own_ray = not ray.is_initialized()
        # a Ray instance this call starts keeps its session files in a folder of its own, removed at the end
        # (under /tmp, as Ray's own default: a long $TMPDIR would push its socket paths past the 107-byte limit)
        cleanup = contextlib.ExitStack()
        temp_dir = _ray_temp_dir
        if temp_dir is None and own_ray and address is None:
            temp_dir = cleanup.enter_context(isolation.ray_temp_dir())
        if own_ray:
            try:
                ray.init(
                    address=address or "local",
                    include_dashboard=False if address is None else None,
                    log_to_driver=progress,
                    logging_level=logging.INFO if progress else logging.WARNING,
                    **({"_temp_dir": temp_dir} if temp_dir else {}),
                    # its private network's only interface (Ray would otherwise look for this machine's address)
                    **({"_node_ip_address": "127.0.0.1"} if isolation.INSIDE else {}),
                )
            except BaseException:
                cleanup.close()
                raise
        context = ray.data.DataContext.get_current()
        saved = context.enable_progress_bars
        context.enable_progress_bars = progress
        signals = contextlib.ExitStack()
        try:
            signals.enter_context(_stop_on_signals())
            if local_rows is not None:
                n_rows = len(local_rows)
                rows_ds = None
            else:
                rows_ds = parse_remotely(ray, fs, files, remote, base, manifest, allow_duplicate_ids)
                n_rows = rows_ds.count()
            n_workers = _workers(ray, workers, num_gpus_per_worker, address)
            block_rows = batch_size * max(1, min(64, math.ceil(n_rows / (batch_size * 4 * n_workers))))
            n_workers = max(1, min(n_workers, math.ceil(n_rows / block_rows)))
            if local_rows is not None:
                # blocks of whole batches from row 0: each worker sees the batches the single-process path forms
                starts = range(0, max(n_rows, 1), block_rows)
                rows_ds = ray.data.from_arrow([rows_table(local_rows[s : s + block_rows], s, None) for s in starts])
            else:
                # materialised before the workers start: on a small machine they hold every CPU, and a repartition
                # task still waiting for one would wait for ever
                rows_ds = rows_ds.repartition(target_num_rows_per_block=block_rows).materialize()
            predictor_kwargs = {
                "checkpoint": checkpoint_path,
                "device": device if device is not None else "cuda" if num_gpus_per_worker > 0 else None,
                "head_backend": head_backend,
                "batch_size": batch_size,
                "backend": backend,
            }
            scored = rows_ds.map_batches(
                _Scorer,
                fn_constructor_kwargs={"predictor_kwargs": predictor_kwargs, "with_json": "jsonl" in formats},
                batch_size=batch_size,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=n_workers),
                num_gpus=num_gpus_per_worker or None,
            )
            # an empty manifest writes empty outputs (Ray Data cannot sort an empty dataset)
            batches = scored.sort("_pos").iter_batches(batch_format="pyarrow", batch_size=None) if n_rows else []
            counts = _write(batches, targets, parquet_schema(modalities, output_names), n_rows, pc, pq)
            write_provenance(next(iter(targets.values())).with_name("provenance.json"), made_by)
        except _Stop as stop:
            raise Interrupted(stop.signum) from None
        except Exception as exc:
            found = _fastdaf_error(exc)
            if found is None or found is exc:
                raise
            raise type(found)(str(found)) from exc
        finally:
            signals.close()
            context.enable_progress_bars = saved
            if own_ray:
                ray.shutdown()
            cleanup.close()
        seconds = time.perf_counter() - started
        return {
            "engine": "ray",
            "manifest": manifest,
            "files": len(files),
            "rows": n_rows,
            "predicted": counts["predicted"],
            "failed": counts["failed"],
            "workers": n_workers,
            "num_gpus_per_worker": num_gpus_per_worker,
            "address": address,
            "seconds": round(seconds, 3),
            "rows_per_s": round(n_rows / seconds, 2) if seconds > 0 else None,
            "outputs": {f: str(p) for f, p in targets.items()},
        }



class _Stop(BaseException):
    """A stop signal on its way out of Ray's code: not an Exception, which Ray Data would log as an internal error
    with its stack trace (predict_manifest turns it into Interrupted once outside)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> contextlib.AbstractContextManager:
    """SIGTERM and SIGINT stop the run in the main thread, so that the partial files are removed and the Ray
    instance is shut down on the way out (Ray's own SIGTERM handling aborts the driver: exit 134, a stack dump)."""

    def stop(signum, frame):
        # once: a second signal (Ctrl-C reaches the whole process group) must not cut the cleanup short
        for s in isolation.STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise _Stop(signum)

    return isolation.on_stop_signals(stop)


def _output_paths(out: Path, formats: Sequence[str]) -> dict[str, Path]:
    """DIR/predictions.<format>, refused up front if DIR is a file or already holds them."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; with --engine ray give a folder (created if missing)")
    targets = {f: out / OUTPUT_FILES[f] for f in formats}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing:
        raise InputError(
            f"--out {str(out)!r} already holds {', '.join(existing)}; --engine ray does not resume or overwrite: "
            "delete them or give another folder"
        )
    return targets


def _make_folder(out: Path) -> None:
    """The --out folder, made (once the inputs are known to be good) and checked writable, before any work."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {str(out)!r}: cannot create the folder ({exc.strerror})") from exc
    if not os.access(out, os.W_OK):
        raise InputError(f"--out {str(out)!r} is not writable")


def _workers(ray, workers: int | None, gpus: float, address: str | None) -> int:
    """The worker count asked for, else one per `gpus` GPUs (or per CPU) of the cluster."""
    resources = ray.cluster_resources()
    if workers is not None:
        cpus = resources.get("CPU", 0)
        if address is None and gpus == 0 and workers > cpus:
            # each CPU worker holds a CPU: the rest would wait for ever on a machine no autoscaler grows
            raise InputError(f"workers={workers} but the local Ray instance has {cpus:g} CPUs, one per worker")
        return workers
    if gpus > 0:
        available = resources.get("GPU", 0)
        if available < gpus:
            raise InputError(
                f"num_gpus_per_worker={gpus} but the Ray cluster{f' at {address}' if address else ''} has "
                f"{available:g} GPU(s); start workers with `ray start --address HEAD:6379 --num-gpus N`, or "
                "give workers=N to wait for GPUs an autoscaler adds"
            )
        return max(1, int(available // gpus))
    return max(1, int(resources.get("CPU", 1)))


def _write(batches, targets: dict[str, Path], schema, n_rows: int, pc, pq) -> dict[str, int]:
    """Stream the sorted result batches into the output files (temporary names, renamed when complete)."""
    partial = {f: p.with_name(f".{p.name}.partial") for f, p in targets.items()}
    counts = {"predicted": 0, "failed": 0}
    writer = pq.ParquetWriter(partial["parquet"], schema) if "parquet" in targets else None
    jsonl = partial["jsonl"].open("w", encoding="utf-8") if "jsonl" in targets else None
    last, written = -1, 0
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            positions = batch.column("_pos").to_numpy()
            if positions[0] <= last or (positions[1:] <= positions[:-1]).any():
                raise RuntimeError("internal error: scored rows arrived out of order")  # the sort guarantees it
            last = int(positions[-1])
            written += batch.num_rows
            failed = int(pc.sum(pc.is_valid(batch.column("error"))).as_py() or 0)
            counts["failed"] += failed
            counts["predicted"] += batch.num_rows - failed
            if writer is not None:
                writer.write_table(batch.select(schema.names).cast(schema))
            if jsonl is not None:
                jsonl.writelines(r + "\n" for r in batch.column("_record").to_pylist())
        if written != n_rows:
            raise RuntimeError(f"internal error: {n_rows} rows in, {written} scored rows out")
        if writer is not None and written == 0:
            writer.write_table(schema.empty_table())
    except BaseException:
        for f in (writer, jsonl):
            if f is not None:
                f.close()
        for p in partial.values():
            p.unlink(missing_ok=True)
        raise
    for f in (writer, jsonl):
        if f is not None:
            f.close()
    for f, p in partial.items():
        try:
            os.replace(p, targets[f])
        except OSError as exc:
            raise OutputError(f"cannot publish {p} as {targets[f]} ({exc.strerror or exc})") from exc
    return counts
