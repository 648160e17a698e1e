"""Tests of scripts/smoke_test.py against a fake server (tests/fake_qrusty.py).

Each run lasts a few seconds of load; the faulty fakes prove that the smoke test
notices what it claims to check.
"""

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SMOKE = HERE.parent / "smoke_test.py"
FAKE = HERE / "fake_qrusty.py"


def fake_binary(tmp_path: Path, bug: str = "") -> Path:
    path = tmp_path / "qrusty"
    path.write_text(f"#!/bin/sh\nFAKE_QRUSTY_BUG='{bug}' exec '{sys.executable}' '{FAKE}'\n")
    path.chmod(0o755)
    return path


def smoke(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SMOKE), "--binary", str(binary), "--duration", "3.5",
         "--interval", "1", "--publishers", "1", "--consumers", "2", "--drain-timeout", "20",
         *args],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("storage", ["wal", "memory"])
def test_a_correct_server_passes(tmp_path, storage):
    proc = smoke(fake_binary(tmp_path), "--storage", storage)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].endswith(" passed, 0 failed")
    assert "pub/s" in proc.stdout  # the live table was printed


@pytest.mark.parametrize("bug, failed_check", [
    ("double", "no message delivered twice"),
    ("norate", "non-zero rates in /stats"),
    ("forget", "queued messages survive a restart in order"),
    ("badexit", "SIGTERM exits 0"),
])
def test_a_faulty_server_fails(tmp_path, bug, failed_check):
    proc = smoke(fake_binary(tmp_path, bug), "--storage", "wal")

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"FAIL smoke-maxfirst: {failed_check}" in proc.stdout or \
        f"FAIL {failed_check}" in proc.stdout, proc.stdout


def test_a_server_that_does_not_start_fails(tmp_path):
    binary = tmp_path / "qrusty"
    binary.write_text("#!/bin/sh\necho 'cannot open data dir' >&2\nexit 4\n")
    binary.chmod(0o755)

    proc = smoke(binary)

    assert proc.returncode == 1
    assert "server exited with 4 at startup" in proc.stdout
    assert "cannot open data dir" in proc.stdout


def test_a_missing_binary_is_reported(tmp_path):
    proc = smoke(tmp_path / "nope")

    assert proc.returncode == 2
    assert "build it first" in proc.stderr
