"""Tests of scripts/soak.py's bookkeeping: what counts as lost, what counts as an acked
message that came back, and the memory and disk readings."""

import subprocess
import sys
from pathlib import Path

import pytest

import soak

ROOT = Path(__file__).resolve().parents[2]
DEBUG_BIN = ROOT / "target" / "debug" / "qrusty"


def test_a_confirmed_publish_that_was_never_acked_nor_drained_is_lost():
    ledger = soak.Ledger()
    ledger.published(["a", "b", "c", "d"])
    ledger.acked("a", at=1.0)
    ledger.ack_uncertain("b")
    ledger.drain("c")
    assert ledger.lost() == {"d"}


def test_unconfirmed_publishes_and_extra_ids_are_not_losses():
    ledger = soak.Ledger()
    ledger.publish_uncertain()
    ledger.acked("landed-anyway", at=1.0)
    ledger.drain("also-landed")
    assert ledger.lost() == set()


def test_a_delivery_after_a_confirmed_ack_came_back_but_one_before_it_did_not():
    ledger = soak.Ledger()
    ledger.acked("x", at=10.0)
    # Asked before the ack was confirmed: the lock may have run out meanwhile.
    ledger.delivered("x", retry_count=2, asked_at=9.5)
    assert ledger.came_back == []
    ledger.delivered("x", retry_count=3, asked_at=10.5)
    assert ledger.came_back == ["x"]
    # A possibly-landed ack proves nothing either way.
    ledger.ack_uncertain("y")
    ledger.delivered("y", retry_count=2, asked_at=99.0)
    assert ledger.came_back == ["x"]
    assert (ledger.deliveries, ledger.redeliveries) == (3, 3)


def test_the_first_ack_time_is_kept():
    ledger = soak.Ledger()
    ledger.acked("x", at=5.0)
    ledger.acked("x", at=50.0)
    ledger.delivered("x", retry_count=2, asked_at=6.0)
    assert ledger.came_back == ["x"]


def test_vmrss_is_read_from_proc_status_text():
    text = "Name:\tqrusty\nVmPeak:\t  999 kB\nVmRSS:\t   20480 kB\nThreads:\t8\n"
    assert soak.parse_vmrss_kib(text) == 20480
    assert soak.parse_vmrss_kib("Name:\tzombie\n") == 0


def test_dir_bytes_counts_every_file_below(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 23)
    assert soak.dir_bytes(tmp_path) == 123


def test_refusals_of_limits_are_counted_and_other_replies_are_errors():
    ledger = soak.Ledger()
    soak.book_refusal(ledger, "publish", 503, {"code": "memory_limit", "error": "full"})
    soak.book_refusal(ledger, "publish", 500, {"code": "internal", "error": "bug"})
    assert ledger.refused == {"publish 503 memory_limit": 1}
    assert len(ledger.errors) == 1


def test_server_settings_are_name_value_pairs():
    args = soak.parse_args(["--binary", "x", "--env", "QRUSTY_MAX_MEMORY_BYTES=1000",
                            "--env", "A=b=c"])
    assert dict(args.env) == {"QRUSTY_MAX_MEMORY_BYTES": "1000", "A": "b=c"}


@pytest.mark.parametrize("bad", [["--duration", "0"], ["--kill-every", "-1"],
                                 ["--consumers", "0"], ["--env", "NOEQUALS"]])
def test_nonsense_arguments_are_refused(bad):
    with pytest.raises(SystemExit):
        soak.parse_args(["--binary", "x", *bad])


@pytest.mark.skipif(not DEBUG_BIN.exists(), reason="needs the debug build (make debug-build)")
def test_the_soak_notices_a_server_that_forgets_what_it_acknowledged():
    # Memory mode loses every queued message at a kill, and a slow consumer makes sure
    # there are some: the soak must say so and fail.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak.py"), "--binary", str(DEBUG_BIN),
         "--storage", "memory", "--duration", "6", "--kill-every", "3", "--rate", "200",
         "--publishers", "2", "--consumers", "1", "--consumer-pause", "0.05"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "confirmed publishes lost" in proc.stdout, proc.stdout
