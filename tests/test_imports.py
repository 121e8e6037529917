"""Every module of freezebench imports: a name the installed libraries lack fails here, which is
how .ci/lowest catches a dependency floor that the code has outgrown."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import subprocess
import sys

import pytest

import freezebench

# modules that need an optional extra, and the package that extra installs
OPTIONAL = {"freezebench.study.ray_trials": "ray"}
# importing ray fixes the address a local Ray instance binds to (see ray_trials): imported in a
# process of its own, so the Ray tests after this one still start theirs on the loopback
IN_A_PROCESS_OF_ITS_OWN = {"freezebench.study.ray_trials"}


def _modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(freezebench.__path__, "freezebench."))


@pytest.mark.parametrize("name", _modules())
def test_every_module_imports(name):
    package = OPTIONAL.get(name)
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"{name} needs the optional '{package}' package")
    if name in IN_A_PROCESS_OF_ITS_OWN:
        done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return
    importlib.import_module(name)


def test_the_walk_found_the_packages():
    names = _modules()
    assert {"freezebench.cli", "freezebench.model.staged", "freezebench.report.plots"} <= set(names)
