"""The install (README's two commands, scripts/lib.sh): the supported Pythons are the same in
pyproject.toml, uv.lock and the scripts; the lock covers them all, pins the uv that reads it and
pulls in no torch; the scripts' messages for an unsupported or missing Python and a malformed
lock. Fast, no network: the install itself is what scripts/test and CI run (docs/development.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK: dict[str, Any] = tomllib.loads((ROOT / "uv.lock").read_text())
LIB = (ROOT / "scripts" / "lib.sh").read_text()


def supported_pythons() -> list[str]:
    match = re.search(r"^SUPPORTED_PYTHONS=\(([^)]*)\)$", LIB, re.M)
    assert match, "scripts/lib.sh sets no SUPPORTED_PYTHONS"
    return match.group(1).split()


def locked(name: str) -> list[dict[str, Any]]:
    return [p for p in LOCK["package"] if p["name"] == name]


def test_the_scripts_support_311_to_313_preferring_311() -> None:
    assert supported_pythons() == ["3.11", "3.12", "3.13"]


def test_requires_python_admits_exactly_the_supported_pythons() -> None:
    versions = supported_pythons()
    newest_minor = int(versions[-1].split(".")[1])
    expected = f">={versions[0]},<3.{newest_minor + 1}"
    assert PYPROJECT["project"]["requires-python"] == expected
    # The lock is universal: resolved once for every supported Python (and platform).
    assert LOCK["requires-python"].replace(" ", "") == expected


def test_the_ruff_and_mypy_targets_are_the_oldest_supported_python() -> None:
    oldest = supported_pythons()[0]
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + oldest.replace(".", "")
    assert PYPROJECT["tool"]["mypy"]["python_version"] == oldest


def test_every_dependency_is_in_the_lock() -> None:
    wanted = [*PYPROJECT["project"]["dependencies"]]
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        wanted += extra
    for group in PYPROJECT["dependency-groups"].values():
        wanted += group
    for requirement in wanted:
        name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert locked(name), f"{name} is not in uv.lock: run uv lock"


def test_the_lock_pins_one_uv_and_no_torch() -> None:
    # uv installs from the lock, so it is locked too (scripts/locked-uv reads its version).
    assert len(locked("uv")) == 1
    # uv does not read pip's settings (this machine caps torch in /etc/xdg/pip): nothing we
    # use may pull torch in, or a first install would download gigabytes.
    names = {p["name"] for p in LOCK["package"]}
    assert not names & {"torch", "torchvision", "nvidia-cudnn-cu12", "triton"}


def run_locked_uv(tmp_path: Path, lock: str | None) -> subprocess.CompletedProcess[str]:
    """scripts/locked-uv in a copy of the repository's layout, with this uv.lock text."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "locked-uv", tmp_path / "scripts" / "locked-uv")
    if lock is not None:
        (tmp_path / "uv.lock").write_text(lock)
    return subprocess.run(
        [sys.executable, str(tmp_path / "scripts" / "locked-uv")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_locked_uv_prints_the_locked_release(tmp_path: Path) -> None:
    result = run_locked_uv(tmp_path, (ROOT / "uv.lock").read_text())
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"uv=={locked('uv')[0]['version']}\n"


@pytest.mark.parametrize(
    ("lock", "says"),
    [
        (None, "uv.lock is missing"),
        ('version = 1\n[[package]]\nname = "uv"\nversion = = "1"\n', "uv.lock is malformed"),
        ("version = 1\n", "uv.lock pins no single uv release"),
        ("\xff\xfe not text", "uv.lock is malformed"),
    ],
)
def test_a_missing_or_malformed_lock_is_one_clear_line(
    tmp_path: Path, lock: str | None, says: str
) -> None:
    result = run_locked_uv(tmp_path, lock)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(says)
    assert "git checkout uv.lock" in lines[0]
    assert "Traceback" not in result.stderr


def find_python(tmp_path: Path, *, path_programs: dict[str, str], env: dict[str, str]) -> Any:
    """scripts/lib.sh's find_python in a shell whose PATH holds only these programs (and the
    few tools lib.sh uses): no Python of this machine can be found by accident."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "ls", "sort", "tail"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    for name, script in path_programs.items():
        program = bin_dir / name
        program.write_text(script)
        program.chmod(0o755)
    return subprocess.run(
        ["bash", "-c", f"source {ROOT / 'scripts' / 'lib.sh'} && find_python"],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# A stand-in for an old Python at the edge: it answers the version question as Python 3.10 does.
PYTHON_310 = '#!/bin/bash\nprintf "3.10\\n"\n'


def test_an_unsupported_python_is_named_with_what_to_do(tmp_path: Path) -> None:
    result = find_python(tmp_path, path_programs={"python3": PYTHON_310}, env={})
    assert result.returncode == 1
    assert "no supported Python found: Roomchat runs on Python 3.11, 3.12, 3.13" in result.stderr
    assert f"found {tmp_path}/bin/python3 is Python 3.10" in result.stderr
    assert "ROOMCHAT_PYTHON" in result.stderr


def test_no_python_at_all_is_named_with_what_to_do(tmp_path: Path) -> None:
    result = find_python(tmp_path, path_programs={}, env={})
    assert result.returncode == 1
    assert "no supported Python found" in result.stderr
    assert "found none" in result.stderr


def test_roomchat_python_chooses_and_must_be_supported(tmp_path: Path) -> None:
    chosen = find_python(tmp_path, path_programs={}, env={"ROOMCHAT_PYTHON": sys.executable})
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout == f"{sys.executable}\n"

    old = tmp_path / "python3.10"
    old.write_text(PYTHON_310)
    old.chmod(0o755)
    refused = subprocess.run(
        ["bash", "-c", f"source {ROOT / 'scripts' / 'lib.sh'} && find_python"],
        env={**os.environ, "ROOMCHAT_PYTHON": str(old)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 1
    assert f"ROOMCHAT_PYTHON={old} is Python 3.10; Roomchat supports Python 3.11" in refused.stderr
