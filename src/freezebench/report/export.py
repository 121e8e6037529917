"""Records as a table: a pandas DataFrame one row per run, and CSV or Parquet files of it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from freezebench.errors import FreezebenchError
from freezebench.report.frame import records_to_frame
from freezebench.results import read_records


def load_records(results_dir: str | Path) -> pd.DataFrame:
    """Every readable record of ``results_dir``, one row per run, with flat columns
    (``test_f1``, ``train_seconds``, ...; see :data:`freezebench.report.analysis.MEASURES`)."""
    return records_to_frame([record.to_json() for record in read_records(results_dir)])


def export_records(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` (from :func:`load_records`) as CSV or Parquet, chosen by the file suffix."""
    path = Path(path)
    nested = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, (list, dict))).any()]
    frame = frame.assign(**{  # nested values (the prefix builds) as JSON text, one cell each
        c: frame[c].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
        for c in nested})
    if path.suffix.lower() == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix.lower() in {".parquet", ".pq"}:
        frame.to_parquet(path, index=False)
    else:
        raise FreezebenchError(
            f"Cannot export to '{path}': use a file name ending in .csv or .parquet."
        )
    return path
