"""Tests of scripts/api_schema_check.py against the fake server."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_smoke_test import fake_binary

SCRIPT = Path(__file__).resolve().parent.parent / "api_schema_check.py"

pytestmark = pytest.mark.skipif(shutil.which("schemathesis") is None,
                                reason="schemathesis not installed (make deps)")


def check(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--binary", str(binary), "--max-examples", "5",
         "--timeout", "120", *args],
        capture_output=True, text=True, timeout=300,
    )


def test_a_server_matching_its_schema_passes(tmp_path):
    proc = check(fake_binary(tmp_path))

    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_5xx_fails(tmp_path):
    proc = check(fake_binary(tmp_path, "crash"))

    assert proc.returncode == 1, proc.stdout + proc.stderr


def test_a_missing_document_fails_unless_allowed(tmp_path):
    binary = fake_binary(tmp_path, "noapi")

    strict = check(binary)
    lenient = check(binary, "--allow-missing")

    assert strict.returncode == 1 and "answered 404" in strict.stdout
    assert lenient.returncode == 0 and "SKIP" in lenient.stdout
