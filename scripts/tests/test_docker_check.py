"""Tests of scripts/docker_check.sh against the fake server.

When run as root the script switches to `nobody`, who may not be able to read this
checkout, so the fake's source is embedded in the stand-in binary itself.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE.parent / "docker_check.sh"
FAKE = HERE / "fake_qrusty.py"
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")

pytestmark = pytest.mark.skipif(SYSTEM_PYTHON is None, reason="no system python3")


def self_contained_fake(tmp_path: Path, bug: str = "") -> Path:
    path = tmp_path / "qrusty"
    path.write_text(f"#!/bin/sh\nFAKE_QRUSTY_BUG='{bug}' exec {SYSTEM_PYTHON} - <<'PY'\n"
                    f"{FAKE.read_text()}\nPY\n")
    path.chmod(0o755)
    return path


def docker_check(binary: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(binary)], capture_output=True, text=True,
                          timeout=120)


def test_a_well_behaved_server_passes(tmp_path):
    proc = docker_check(self_contained_fake(tmp_path))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout
    assert proc.stdout.rstrip().endswith(" passed, 0 failed")


def test_a_server_that_exits_badly_on_sigterm_fails(tmp_path):
    proc = docker_check(self_contained_fake(tmp_path, "badexit"))

    assert proc.returncode == 1
    assert "FAIL SIGTERM exits 0: exit status 3" in proc.stdout


def test_a_missing_binary_is_reported(tmp_path):
    proc = docker_check(tmp_path / "nope")

    assert proc.returncode == 2
    assert "build it first" in proc.stderr
