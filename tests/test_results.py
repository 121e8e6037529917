"""The results store: atomic writes that others on shared storage can read."""

from __future__ import annotations

import os
import stat

from freezebench.results import load_record, save_record


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_record_gets_the_mode_a_plain_new_file_would(tmp_path):
    record = {"id": "full-lr2e-05-s42-0123456789ab", "status": "completed", "config": {}}
    path = save_record(tmp_path, record)
    assert load_record(path) == record
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()  # not mkstemp's 0600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
