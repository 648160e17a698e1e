"""Drives a real qrusty binary only through the PyPI client `qrusty-pyclient`, the way a
Python user would. The binary comes from $QRUSTY_BIN (default target/debug/qrusty) and
runs with STORAGE_MODE=memory on a free loopback port."""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from qrusty_pyclient import QrustyClient

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("QRUSTY_BIN", REPO / "target" / "debug" / "qrusty"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    if not BINARY.exists():
        pytest.fail(f"no qrusty binary at {BINARY}; run `cargo build` or set QRUSTY_BIN")
    port = free_port()
    env = dict(os.environ, STORAGE_MODE="memory", BIND_ADDR=f"127.0.0.1:{port}",
               RUST_LOG="warn")
    proc = subprocess.Popen([str(BINARY)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    client = QrustyClient(base_url=f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while True:
        try:
            if client.health() == "OK":
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    yield client
    proc.terminate()
    try:
        assert proc.wait(timeout=20) == 0, "graceful shutdown exits 0"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def client(server):
    server.delete_all()
    return server


def drain(client, queue):
    out = []
    while (msg := client.consume(queue, consumer_id="drainer")) is not None:
        assert client.ack(queue, msg["id"], consumer_id="drainer")
        out.append(msg["payload"])
    return out


@pytest.mark.parametrize("ordering, expected", [
    ("MaxFirst", ["high", "mid-1", "mid-2", "low"]),
    ("MinFirst", ["low", "mid-1", "mid-2", "high"]),
    ("Fifo", ["mid-1", "high", "low", "mid-2"]),
])
# Verifies: SYS-0003, SCH-0002, SCH-0003, SCH-0004, SCH-0006
def test_each_ordering_serves_in_its_order(client, ordering, expected):
    client.create_queue(name=f"q-{ordering}", ordering=ordering)
    for priority, payload in [(5, "mid-1"), (18446744073709551615, "high"), (0, "low"),
                              (5, "mid-2")]:
        client.publish(f"q-{ordering}", priority=priority, payload=payload)
    assert drain(client, f"q-{ordering}") == expected


# Verifies: SYS-0003, SCH-0007
def test_text_priorities(client):
    client.create_queue(name="words", ordering="MinFirst", priority_kind="Text")
    for word in ["pear", "apple", "fig"]:
        client.publish("words", priority=word, payload=word)
    assert drain(client, "words") == ["apple", "fig", "pear"]


# Verifies: SYS-0003, API-0016
def test_dict_payloads_come_back_as_json_text(client):
    client.publish("orders", priority=1, payload={"order_id": 456})
    msg = client.consume("orders", consumer_id="w")
    assert json.loads(msg["payload"]) == {"order_id": 456}
    assert msg["retry_count"] == 1


# Verifies: SYS-0003, DLV-0006, DLV-0009
def test_ack_and_nack_report_whether_the_caller_held_the_message(client):
    client.create_queue(name="work", ordering="Fifo")
    client.publish("work", priority=1, payload="job", max_retries=2)
    msg = client.consume("work", consumer_id="w1")
    assert client.ack("work", msg["id"], consumer_id="intruder") is False
    assert client.nack("work", msg["id"], consumer_id="w1") is True

    again = client.consume("work", consumer_id="w2")
    assert (again["id"], again["retry_count"]) == (msg["id"], 2)
    # Second nack at max_retries dead-letters it: the queue is empty afterwards.
    assert client.nack("work", again["id"], consumer_id="w2") is True
    assert client.consume("work", consumer_id="w2") is None
    stats = client.queue_stats("work")
    assert (stats["total"], stats["dead_lettered"]) == (0, 1)


# Verifies: SYS-0003, DLV-0023, DLV-0024
def test_batch_ack_and_nack(client):
    client.create_queue(name="batch", ordering="Fifo")
    ids = [client.publish("batch", priority=1, payload=f"m{i}")["id"] for i in range(4)]
    for _ in ids:
        client.consume("batch", consumer_id="w")

    acked = client.ack_batch("batch", consumer_id="w", message_ids=ids[:2] + ["nope"])
    assert acked == {"acked": ids[:2], "not_found": ["nope"]}
    nacked = client.nack_batch("batch", consumer_id="w", message_ids=ids[2:])
    assert nacked["unlocked"] == ids[2:]
    assert nacked["dead_lettered"] == [] and nacked["dropped"] == []
    assert drain(client, "batch") == ["m2", "m3"]


# Verifies: SYS-0003, API-0018, API-0019, API-0020
def test_stats_queue_stats_and_listing(client):
    client.create_queue(name="empty", ordering="MinFirst", allow_duplicates=False)
    client.publish("busy", priority=3, payload="a")
    client.publish("busy", priority=3, payload="b")
    client.consume("busy", consumer_id="w")

    stats = client.stats()
    assert [q["name"] for q in stats["queues"]] == ["busy", "empty"]
    assert stats["summary"] == {"total_queues": 2, "total_messages": 2,
                                "total_available": 1, "total_locked": 1}
    busy = client.queue_stats("busy")
    assert (busy["available"], busy["locked"], busy["total"]) == (1, 1, 2)
    assert client.queue_stats("empty")["config"] == {
        "ordering": "MinFirst", "allow_duplicates": False, "priority_kind": "Numeric"}
    assert client.list_queues() == ["busy", "empty"]
    assert client.queue_metrics("busy")["resolution_seconds"] == 1


# Verifies: SYS-0003, DLV-0019
def test_duplicates_are_refused_on_a_no_duplicates_queue(client):
    client.create_queue(name="unique", ordering="Fifo", allow_duplicates=False)
    client.publish("unique", priority=1, payload="same")
    with pytest.raises(requests.HTTPError) as err:
        client.publish("unique", priority=1, payload="same")
    assert err.value.response.status_code == 409
    assert err.value.response.json()["code"] == "duplicate_payload"


# Verifies: SYS-0003, API-0009, API-0011, API-0012
def test_update_purge_and_delete(client):
    client.create_queue(name="old", ordering="Fifo")
    client.publish("old", priority=1, payload="x")
    client.update_queue("old", new_name="new")
    assert client.list_queues() == ["new"]

    client.publish("new", priority=1, payload="y")
    assert client.purge("new") == {"queue": "new", "purged_messages": 2}
    assert client.queue_stats("new")["config"]["ordering"] == "Fifo"

    client.publish("new", priority=1, payload="z")
    assert client.delete_queue("new") == {"queue": "new", "deleted_messages": 1}
    assert client.list_queues() == []


# Verifies: SYS-0003, API-0013
def test_purge_all_and_delete_all(client):
    for q in ["a", "b"]:
        client.publish(q, priority=1, payload=q)
    assert client.purge_all() == {"purged_queues": 2, "purged_messages": 2}
    assert client.delete_all() == {"deleted_queues": 2, "deleted_messages": 0}
    assert client.stats()["queues"] == []


# Verifies: SYS-0003, API-0008
def test_creating_an_existing_queue_fails(client):
    client.create_queue(name="once", ordering="Fifo")
    with pytest.raises(requests.HTTPError) as err:
        client.create_queue(name="once", ordering="Fifo")
    assert err.value.response.status_code == 409
