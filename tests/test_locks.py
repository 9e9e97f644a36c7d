"""The lock files (requirements/*.lock, made by scripts/lock.py) agree with pyproject.toml's ranges and pin what
each lane is for: a dependency changed without remaking the locks fails here, not on a new machine."""

from __future__ import annotations

import re

import pytest
import tomllib
from builders import REPO
from packaging.requirements import Requirement
from packaging.version import Version

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def pins(lane: str) -> dict[str, Version]:
    lines = (REPO / "requirements" / f"{lane}.lock").read_text().splitlines()
    assert lines[1].startswith("# Made by `python scripts/lock.py` on "), lines[:3]
    found = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    return {name: Version(version) for name, version in found.items()}


def requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """The core's requirements plus those of the extras, nested extras (fastdaf[plot]) expanded."""
    reqs, todo = [Requirement(r) for r in PROJECT["dependencies"]], list(extras)
    while todo:
        for text in PROJECT["optional-dependencies"][todo.pop()]:
            req = Requirement(text)
            if req.name == "fastdaf":
                todo += sorted(req.extras)
            else:
                reqs.append(req)
    reqs += [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]]
    return reqs


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("lane, extras", [("core", ()), ("test", ("test",)), ("latest", ())])
def test_every_requirement_is_pinned_within_its_range(lane, extras):
    pinned = {normal(k): v for k, v in pins(lane).items()}
    for req in requirements(extras):
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = normal(req.name)
        assert name in pinned, f"{lane}.lock has no {req.name}: run python scripts/lock.py"
        assert req.specifier.contains(pinned[name], prereleases=True), (lane, str(req), str(pinned[name]))


def test_lanes_pin_what_they_are_for():
    test, latest = pins("test"), pins("latest")
    assert test["torch"].release[:2] == (2, 11) and test["triton"].release[:2] == (3, 6)  # the GPU machine's
    assert pins("core")["torch"] == test["torch"]
    assert latest["torch"] > test["torch"] and "torchaudio" not in latest and "pytest" in latest
    assert test["torchaudio"] != Version("2.11.1")  # does not load with torch 2.11.0
    assert test["torchaudio"].release[:2] == test["torch"].release[:2]
