"""A results folder's records as the report reads them: every readable one, of the current
schema, with a clear error when there is nothing to report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from freezebench.errors import FreezebenchError
from freezebench.report.tables import error_text
from freezebench.results import UnreadableRecord, runs_dir, scan_records

logger = logging.getLogger(__name__)


def load_records(results_dir: str | Path) -> tuple[list[dict[str, Any]], list[UnreadableRecord]]:
    """The records of ``results_dir`` as stored (validated, of the current schema version); a
    clear error when it holds none or none completed."""
    typed, unreadable = scan_records(results_dir)
    records = [record.to_json() for record in typed]
    for item in unreadable:
        logger.warning("Skipping unreadable record %s: %s", item.path, item.reason)
    if not records:
        raise FreezebenchError(
            f"No run records in '{runs_dir(results_dir)}'. Run a sweep with this output folder "
            "first, or point to the folder that holds the 'runs/' folder."
        )
    if not any(r.get("status") == "completed" for r in records):
        first = next((r for r in records if r.get("error")), None)
        detail = f" First error ({first['id']}): {error_text(first)}." if first else ""
        raise FreezebenchError(
            f"None of the {len(records)} runs in '{results_dir}' completed, so there is nothing "
            f"to report.{detail}"
        )
    return records, unreadable
