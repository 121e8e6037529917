"""The results store: one immutable JSON record per run (format: docs/results-format.md).

Records go in and come out as :class:`~freezebench.record.RunRecord`; writes are atomic.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freezebench.errors import FreezebenchError, StorageError
from freezebench.record import RunRecord, parse_record, safe_name

RUNS_FOLDER = "runs"
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}

logger = logging.getLogger(__name__)


def runs_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / RUNS_FOLDER


def ensure_runs_dir(output_dir: str | Path) -> Path:
    """Create ``runs/`` now, so a folder that cannot be written fails before any training."""
    folder = runs_dir(output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(folder, exc) from None
    return folder


def record_path(output_dir: str | Path, record_id: str) -> Path:
    """Where the record of ``record_id`` lives; refuses ids that would leave ``runs/``."""
    if safe_name(record_id, max_length=200) != record_id:
        raise FreezebenchError(f"Run id '{record_id}' is not a safe file name.")
    return runs_dir(output_dir) / f"{record_id}.json"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON with :func:`write_text_atomic`."""
    text = json.dumps(payload, indent=2, sort_keys=False, allow_nan=False, default=str)
    write_text_atomic(path, text + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Results are shared (colleagues, the nodes of a cluster): the mode open() would give a new file.
_FILE_MODE = 0o666 & ~_umask()


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that readers see the old file or the whole new one, never a part
    (temp file in the same folder, fsync, ``os.replace``, fsync of the folder).

    A write that fails (disk full, quota, read-only folder) leaves no temp file behind and
    raises :class:`StorageError` naming the path and the system's reason.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise storage_error(path, exc) from None
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; a plain open() would honour the umask
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise storage_error(path, exc) from None
        raise
    _fsync_dir(path.parent)


def storage_error(path: Path, exc: OSError) -> StorageError:
    """The user's view of a failed write: the path, the system's reason, and what to do."""
    fix = ("Free disk space (or raise the quota or file-size limit), or write elsewhere with "
           "--output-dir" if exc.errno in NO_SPACE else
           "Choose a folder you can write to with --output-dir")
    return StorageError(
        f"Could not write '{path}': [Errno {exc.errno}] {exc.strerror or exc}. {fix}. Files "
        "already written are intact; run the same command again to do what is missing.")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_record(output_dir: str | Path, record: RunRecord) -> Path:
    """Write ``record`` to ``runs/<id>.json`` atomically; return the path."""
    path = record_path(output_dir, record.id)
    write_json_atomic(path, record.to_json())
    return path


@dataclass(frozen=True)
class UnreadableRecord:
    """A file under ``runs/`` that is not a valid record (truncated, not JSON, wrong shape)."""

    path: Path
    reason: str


def load_record(path: Path) -> RunRecord:
    """Read one record (of this schema version or an earlier one); raise ``ValueError`` with the
    reason if it is not a valid record."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    record = parse_record(payload)
    if record.id != path.stem:
        raise ValueError(f"its id '{record.id}' does not match its file name")
    return record


def scan_records(output_dir: str | Path) -> tuple[list[RunRecord], list[UnreadableRecord]]:
    """All records of a results folder, sorted by id, and the files that could not be read."""
    folder = runs_dir(output_dir)
    records: list[RunRecord] = []
    bad: list[UnreadableRecord] = []
    if not folder.is_dir():
        return records, bad
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(load_record(path))
        except (ValueError, OSError) as exc:
            bad.append(UnreadableRecord(path, str(exc)))
    return records, bad


def read_records(output_dir: str | Path) -> list[RunRecord]:
    """All valid records of a results folder; unreadable files are logged and skipped."""
    records, bad = scan_records(output_dir)
    for item in bad:
        logger.warning("Skipping unreadable record %s: %s", item.path, item.reason)
    return records


def completed_ids(output_dir: str | Path) -> set[str]:
    """Ids of runs whose completed record exists (a sweep skips these)."""
    return {r.id for r in read_records(output_dir) if r.completed}
