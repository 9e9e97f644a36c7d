"""The one output record of `fastdaf predict` (one utterance or a manifest, JSON or CSV) and of bulk scoring
(fastdaf.engines), in each form it is written: JSON (`result_record`; its keys `record_keys`), CSV
(`flatten_record`; the header `record_columns`) and Parquet (`parquet_schema`).

JSON: {"id", "score", "label", "weights": {modality: weight}, "notes": [str], "error"}, plus
"outputs": {name: value} for a model with outputs beyond the sentiment score (none for the bundled model).
`id` is the manifest row's id (null for one utterance given on the command line); a row that failed has
score/label/weights null and its message in `error`; numbers are rounded to 4 decimals.
CSV flattens the same keys: nested keys joined with a dot (`weights.text`, `outputs.happiness`) and `notes`
as a JSON list (`[]` when there are none), so a CSV row turns back into the JSON record.
Parquet has the CSV's columns, with `notes` as list<string> (Parquet has lists), id, label and error as strings
and every other column as float64.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .extras import require

if TYPE_CHECKING:
    from .pipeline import Prediction

RECORD_DECIMALS = 4


def record_keys(output_names: Sequence[str] = ()) -> list[str]:
    return ["id", "score", "label", "weights", *(["outputs"] if output_names else []), "notes", "error"]


def _nested_names(key: str, modalities: Sequence[str], output_names: Sequence[str]) -> Sequence[str] | None:
    """The names under a nested record key (weights: modalities, outputs: output names); None for a plain key."""
    return modalities if key == "weights" else output_names if key == "outputs" else None


def record_columns(modalities: Sequence[str], output_names: Sequence[str] = ()) -> list[str]:
    """The CSV header for these modalities and extra outputs (fixed up front: rows are written as they finish)."""
    columns = []
    for key in record_keys(output_names):
        names = _nested_names(key, modalities, output_names)
        columns += [f"{key}.{n}" for n in names] if names is not None else [key]
    return columns


def result_record(
    result: Prediction | str, *, modalities: Sequence[str], output_names: Sequence[str] = (), row_id: str | None = None
) -> dict[str, Any]:
    """One output record: a Prediction, or an error message (a row that failed) in its place."""
    record: dict[str, Any] = dict.fromkeys(record_keys(output_names))
    record.update(id=row_id, notes=[])
    if isinstance(result, str):
        record["error"] = result
        return record
    record.update(
        score=round(result.score, RECORD_DECIMALS),
        label=result.label,
        weights={m: round(result.weights[m], RECORD_DECIMALS) for m in modalities},
        notes=list(result.notes),
    )
    if output_names:
        record["outputs"] = {k: round(result.outputs[k], RECORD_DECIMALS) for k in output_names}
    return record


def flatten_record(record: dict[str, Any], modalities: Sequence[str], output_names: Sequence[str] = ()) -> dict:
    """The CSV row of a record (see record_columns)."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        names = _nested_names(key, modalities, output_names)
        if names is not None:
            row.update({f"{key}.{n}": None if value is None else value[n] for n in names})
        else:
            row[key] = json.dumps(value) if key == "notes" else value
    return row


def parquet_schema(modalities: Sequence[str], output_names: Sequence[str] = ()):
    """The Parquet schema of the flattened record (see the module docstring)."""
    pa = require("pyarrow", "--engine ray (bulk scoring on Ray Data)")
    types = {"id": pa.string(), "label": pa.string(), "notes": pa.list_(pa.string()), "error": pa.string()}
    return pa.schema([(c, types.get(c, pa.float64())) for c in record_columns(modalities, output_names)])
