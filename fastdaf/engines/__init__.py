"""Scoring a manifest (`fastdaf predict --manifest`): the two engines, side by side.

- `local`: `--engine local` (the default), in this process: `predict_rows` writes each batch as it finishes to
  JSONL on stdout or a .csv/.jsonl file that a rerun resumes.
- `ray`: `--engine ray`, on Ray Data workers, one machine or a cluster: `predict_manifest` writes
  predictions.parquet (and predictions.jsonl) to a folder, in input order; `ray_inputs` reads what the manifest
  names (files, folders, globs; local or remote).

Both write the one record of fastdaf.records and hold the lock and provenance of fastdaf.outputs on their `--out`.
"""
