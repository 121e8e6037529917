"""Print pip constraints that pin each requirement of pyproject.toml at its floor (>=X to ==X).

    python .ci/floors.py [--extra NAME ...] [--skip NAME ...] > floors.txt
    python .ci/floors.py --build > build-floors.txt

Covers the project's dependencies and the extras named, or with ``--build`` the build system's
requirements (apart: torch itself needs a newer setuptools at run time). A requirement without a
``>=`` floor is an error: every dependency must say the lowest version the code works with, so
that .ci/lowest can install exactly that and run the tests on it. Needs Python 3.11 (tomllib).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def floor(requirement: str) -> str:
    """``name==X`` for ``name>=X`` (extras and markers dropped: constraints name distributions)."""
    parsed = Requirement(requirement)
    floors = [spec.version for spec in parsed.specifier if spec.operator == ">="]
    if len(floors) != 1:
        raise SystemExit(f"pyproject.toml: '{requirement}' needs exactly one '>=' floor")
    return f"{canonicalize_name(parsed.name)}=={floors[0]}"


def requirements(pyproject: dict, extras: list[str], build: bool) -> list[str]:
    """The build system's requirements, or the dependencies and those of the extras named."""
    if build:
        return pyproject["build-system"]["requires"]
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise SystemExit(f"pyproject.toml has no extra {unknown}; it has {sorted(optional)}")
    return project["dependencies"] + [req for extra in extras for req in optional[extra]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--extra", action="append", default=[], help="an extra to include")
    parser.add_argument("--build", action="store_true", help="the build system's requirements")
    parser.add_argument("--skip", action="append", default=[], help="a distribution left out")
    args = parser.parse_args()
    skipped = {canonicalize_name(name) for name in args.skip}
    pyproject = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))
    pins = {floor(req) for req in requirements(pyproject, args.extra, args.build)
            if canonicalize_name(Requirement(req).name) not in skipped}
    sys.stdout.write("".join(f"{pin}\n" for pin in sorted(pins)))


if __name__ == "__main__":
    main()
