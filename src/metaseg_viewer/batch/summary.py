"""The two tables a batch run leaves: one row per study, and one row per lesion.

``summary.csv`` and ``lesions.csv`` always; ``summary.parquet`` and ``lesions.parquet`` as well
where pyarrow is installed (what pandas, polars or Spark read fastest for 3,000 studies). Each
file is written under a temporary name and renamed, like every output of the run.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from metaseg_viewer.segment import write_atomic

#: One row per study, in this order. ``status``: segmented (this run), kept (outputs of an earlier
#: run still match input, truth, model and settings) or failed (``error`` says why).
SUMMARY_COLUMNS = ("study_id", "status", "error", "input", "input_sha256", "truth", "model", "model_reason",
                   "weights_sha256", "threshold", "tta", "min_lesion_size", "mask_format", "precision", "slices",
                   "lesions", "lesion_voxels", "lesion_volume_ml", "dice", "seconds", "warnings", "folder")
SUMMARY, LESIONS = "summary", "lesions"


def summary_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary columns of each study's record (missing ones blank)."""
    return [{column: record.get(column) for column in SUMMARY_COLUMNS} for record in records]


def lesion_table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every lesion of every study that has outputs, each row led by its ``study_id``."""
    return [{"study_id": record["study_id"], **row} for record in records for row in record.get("lesion_rows") or []]


def write_tables(out: Path, records: list[dict[str, Any]]) -> list[Path]:
    """Write the summary and lesion tables into ``out``; returns the files written."""
    written = []
    for name, rows, columns in ((SUMMARY, summary_rows(records), list(SUMMARY_COLUMNS)),
                                (LESIONS, lesion_table_rows(records), None)):
        fields = columns or _columns(rows)
        path = out / f"{name}.csv"
        write_atomic(path, _csv(rows, fields).encode())
        written.append(path)
        parquet = _parquet(rows, fields)
        if parquet is not None:
            write_atomic(out / f"{name}.parquet", parquet)
            written.append(out / f"{name}.parquet")
    return written


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of ``rows`` in order of first appearance (2-D and 3-D lesion rows differ)."""
    seen: dict[str, None] = {"study_id": None}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _csv(rows: list[dict[str, Any]], fields: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _parquet(rows: list[dict[str, Any]], fields: list[str]) -> bytes | None:
    """The rows as Parquet, or ``None`` without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    table = pa.Table.from_pylist([{f: row.get(f) for f in fields} for row in rows]) if rows else \
        pa.table({f: pa.array([], pa.string()) for f in fields})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()
