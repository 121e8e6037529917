"""The results store: atomic writes that others on shared storage can read."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from freezebench.config import RunConfig
from freezebench.record import SCHEMA_VERSION, Status, new_record, parse_record
from freezebench.results import load_record, save_record, scan_records

from . import results_format


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_record_gets_the_mode_a_plain_new_file_would(tmp_path):
    record = new_record(RunConfig())
    path = save_record(tmp_path, record)
    assert load_record(path) == record
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()  # not mkstemp's 0600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


V1 = Path(__file__).parent / "fixtures" / "records" / "v1"


def test_records_of_schema_version_1_still_load():
    """Records as the code before the typed record wrote them (a completed quick-study run,
    machine paths replaced, and a run that failed before it measured anything)."""
    records, bad = scan_records(V1)
    assert bad == []
    done, failed = sorted(records, key=lambda r: r.status.value)
    assert done.status is Status.COMPLETED and done.schema_version == SCHEMA_VERSION == 3
    assert done.strategy_label == "bottom(k=4)" and done.metrics.test.samples == 500
    assert done.efficiency.train_flops < done.efficiency.train_flops_naive
    assert done.env.device == "cpu" and done.env.model_extra["torch"].startswith("2.")
    assert failed.status is Status.FAILED and failed.error.type == "ModelError"
    assert failed.data is None and failed.metrics is None and failed.history == []
    # upgraded on read, the same on a second write and read
    assert parse_record(json.loads(json.dumps(done.to_json()))) == done


def test_a_record_of_a_newer_schema_is_refused_with_the_reason(tmp_path):
    record = new_record(RunConfig()).to_json() | {"schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(ValueError, match="newer than this freezebench reads"):
        parse_record(record)
    with pytest.raises(ValueError, match="not a valid record"):
        parse_record(new_record(RunConfig()).to_json() | {"status": "exploded"})


def test_the_results_format_page_is_generated_from_the_record():
    page = (Path(__file__).parents[1] / "docs" / "results-format.md").read_text()
    assert page == results_format.render(), (
        "docs/results-format.md is out of date; regenerate it with "
        "`python -m tests.results_format > docs/results-format.md`")
    for field in ("cache_build_seconds", "per_class_f1", "frozen_prefix", "git_dirty"):
        assert f"`{field}`" in page
