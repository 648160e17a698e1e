#!/usr/bin/env python3
"""End-to-end smoke test of a qrusty binary under concurrent load.

Builds nothing: it starts the given binary on a free 127.0.0.1 port with a
temporary data directory, creates one queue per ordering, runs publishers and
consumers against them for --duration seconds while it prints a throughput
table from /stats every --interval seconds, and then checks that:

- the server reported non-zero publish and ack rates for every queue during the load;
- every published message was delivered and acked exactly once, and no call failed;
- the queues are empty afterwards;
- SIGTERM stops the server with status 0;
- after a restart on the same data directory, messages left queued are all back in
  their queue's order (wal), or nothing is left (memory).

Exits 1 if any check fails. Standard library only.
"""

# Verifies: SYS-0022

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from qrusty_server import Client, Server

ORDERINGS = ("MaxFirst", "MinFirst", "Fifo")
LEFTOVER_PER_QUEUE = 20
HTTP_OK = 200


class Load:
    """What the workers did, shared between threads under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.published: dict[str, list[str]] = {}
        self.delivered: dict[str, list[str]] = {}
        self.acked: dict[str, list[str]] = {}
        self.errors: list[str] = []

    def record(self, table: dict[str, list[str]], queue: str, msg_id: str) -> None:
        with self.lock:
            table.setdefault(queue, []).append(msg_id)

    def error(self, text: str) -> None:
        with self.lock:
            # A broken server fails every call; a few examples are enough to diagnose it.
            if len(self.errors) < 50:
                self.errors.append(text)

    def count(self, table: dict[str, list[str]], queue: str) -> int:
        with self.lock:
            return len(table.get(queue, []))


def publisher(port: int, queue: str, n: int, stop: threading.Event, load: Load) -> None:
    client = Client(port)
    rng = random.Random(f"{queue}-{n}")
    seq = 0
    try:
        while not stop.is_set():
            body = {"queue": queue, "priority": rng.randrange(1000),
                    "payload": f"{queue}/{n}/{seq}"}
            status, reply = client.request("POST", "/publish", body)
            if status == HTTP_OK and isinstance(reply, dict) and "id" in reply:
                load.record(load.published, queue, reply["id"])
            else:
                load.error(f"publish {queue}: {status} {reply!r}")
            seq += 1
    except OSError as err:
        load.error(f"publish {queue}: {err}")
    finally:
        client.close()


def consumer(port: int, queue: str, n: int, publishing: threading.Event, deadline: float,
             load: Load) -> None:
    """Consumes and acks until the publishers stopped and the queue stays empty, or until
    the drain deadline."""
    client = Client(port)
    consumer_id = f"smoke-{queue}-{n}"
    empty_polls = 0
    try:
        while time.monotonic() < deadline:
            status, msg = client.request("POST", f"/consume/{queue}",
                                         {"consumer_id": consumer_id, "timeout_seconds": 120})
            if status != HTTP_OK:
                load.error(f"consume {queue}: {status} {msg!r}")
                time.sleep(0.05)
                continue
            if msg is None:
                empty_polls = 0 if publishing.is_set() else empty_polls + 1
                if empty_polls >= 3:
                    return
                time.sleep(0.02)
                continue
            load.record(load.delivered, queue, msg["id"])
            ack = {"consumer_id": consumer_id}
            if "lock_token" in msg:
                ack["lock_token"] = msg["lock_token"]
            status, reply = client.request("POST", f"/ack/{queue}/{msg['id']}", ack)
            if status == HTTP_OK:
                load.record(load.acked, queue, msg["id"])
            else:
                load.error(f"ack {queue}/{msg['id']}: {status} {reply!r}")
    except OSError as err:
        load.error(f"consume {queue}: {err}")
    finally:
        client.close()


class StatsPoller(threading.Thread):
    """Polls /stats, prints one table row per poll and keeps the highest rates seen."""

    def __init__(self, port: int, queues: list[str], interval: float, load: Load):
        super().__init__(daemon=True)
        self.client = Client(port)
        self.queues = queues
        self.interval = interval
        self.load = load
        self.stop = threading.Event()
        self.max_rates = {q: {"publish_rate_per_sec": 0.0, "ack_rate_per_sec": 0.0}
                          for q in queues}
        self.started = time.monotonic()

    def header(self) -> None:
        cols = "".join(f" | {q:>28}" for q in self.queues)
        print(f"{'t (s)':>6}{cols}")
        sub = "".join(f" | {'pub/s':>7} {'ack/s':>7} {'avail':>6} {'lock':>5}" for _ in self.queues)
        print(f"{'':>6}{sub}", flush=True)

    def poll(self) -> None:
        status, stats = self.client.request("GET", "/stats")
        if status != HTTP_OK or not isinstance(stats, dict):
            self.load.error(f"stats: {status} {stats!r}")
            return
        by_name = {q["name"]: q for q in stats.get("queues", [])}
        cells = []
        for name in self.queues:
            q = by_name.get(name, {})
            for key in self.max_rates[name]:
                self.max_rates[name][key] = max(self.max_rates[name][key], q.get(key, 0.0))
            cells.append(f" | {q.get('publish_rate_per_sec', 0.0):>7.0f}"
                         f" {q.get('ack_rate_per_sec', 0.0):>7.0f}"
                         f" {q.get('available', 0):>6} {q.get('locked', 0):>5}")
        print(f"{time.monotonic() - self.started:>6.1f}{''.join(cells)}", flush=True)

    def run(self) -> None:
        try:
            while not self.stop.wait(self.interval):
                self.poll()
        except OSError as err:
            self.load.error(f"stats: {err}")
        finally:
            self.client.close()


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"PASS {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}: {detail}")
        return ok


def run_load(server: Server, args, queues: list[str], checks: Checks) -> None:
    load = Load()
    publishing = threading.Event()
    publishing.set()
    stop_publishing = threading.Event()
    drain_deadline = time.monotonic() + args.duration + args.drain_timeout

    publishers = [threading.Thread(target=publisher, daemon=True,
                                   args=(server.port, q, n, stop_publishing, load))
                  for q in queues for n in range(args.publishers)]
    consumers = [threading.Thread(target=consumer, daemon=True,
                                  args=(server.port, q, n, publishing, drain_deadline, load))
                 for q in queues for n in range(args.consumers)]
    poller = StatsPoller(server.port, queues, args.interval, load)

    poller.header()
    poller.start()
    for t in publishers + consumers:
        t.start()
    time.sleep(args.duration)
    stop_publishing.set()
    for t in publishers:
        t.join(15)
    # One last row while the rates still reflect the load.
    poller.stop.set()
    poller.join(15)
    poller.poll()
    publishing.clear()
    for t in consumers:
        t.join(max(1.0, drain_deadline - time.monotonic() + 15))

    checks.check("workers finished", not any(t.is_alive() for t in publishers + consumers),
                 "a publisher or consumer was still running at the drain deadline")
    checks.check("no failed calls", not load.errors, "; ".join(load.errors[:5]))
    for q in queues:
        published = load.published.get(q, [])
        delivered = load.delivered.get(q, [])
        acked = load.acked.get(q, [])
        rates = poller.max_rates[q]
        checks.check(f"{q}: load ran", len(published) > 0, "nothing was published")
        checks.check(f"{q}: non-zero rates in /stats",
                     rates["publish_rate_per_sec"] > 0 and rates["ack_rate_per_sec"] > 0,
                     f"highest rates seen: {rates}")
        repeats = [i for i, n in Counter(delivered).items() if n > 1]
        checks.check(f"{q}: no message delivered twice", not repeats,
                     f"{len(repeats)} ids delivered more than once, e.g. {repeats[:3]}")
        missing = set(published) - set(acked)
        strangers = set(acked) - set(published)
        checks.check(f"{q}: every published message acked exactly once",
                     not missing and not strangers and len(acked) == len(set(acked)),
                     f"{len(published)} published, {len(acked)} acked, {len(missing)} never "
                     f"acked, {len(strangers)} acked but not published by us")
        print(f"     {q}: {len(published)} published, {len(acked)} acked in "
              f"{args.duration:.0f} s of load")

    client = Client(server.port)
    try:
        status, stats = client.request("GET", "/stats")
        left = {q["name"]: q["total"] for q in (stats or {}).get("queues", [])
                if q.get("name") in queues and q.get("total")}
        checks.check("queues empty after the drain", status == HTTP_OK and not left,
                     f"status {status}, messages left: {left}")
    finally:
        client.close()


def publish_leftovers(port: int, queues: list[str]) -> dict[str, list[str]]:
    """Publishes a few messages per queue to survive the restart; returns, per queue, their
    ids in the order the queue must serve them (equal priorities in publish order)."""
    client = Client(port)
    expected = {}
    try:
        for q, ordering in zip(queues, ORDERINGS):
            rng = random.Random(q)
            sent = []
            for seq in range(LEFTOVER_PER_QUEUE):
                priority = rng.randrange(5)
                status, reply = client.request("POST", "/publish", {
                    "queue": q, "priority": priority, "payload": f"{q}/leftover/{seq}"})
                if status != HTTP_OK:
                    raise RuntimeError(f"publish before restart: {status} {reply!r}")
                sent.append((priority, seq, reply["id"]))
            if ordering == "MaxFirst":
                sent.sort(key=lambda m: (-m[0], m[1]))
            elif ordering == "MinFirst":
                sent.sort(key=lambda m: (m[0], m[1]))
            expected[q] = [m[2] for m in sent]
    finally:
        client.close()
    return expected


def drain_in_order(port: int, queue: str, limit: int) -> list[str]:
    client = Client(port)
    got = []
    try:
        for _ in range(limit + 1):
            status, msg = client.request("POST", f"/consume/{queue}",
                                         {"consumer_id": "smoke-restart"})
            if status != HTTP_OK or msg is None:
                break
            got.append(msg["id"])
            ack = {"consumer_id": "smoke-restart"}
            if "lock_token" in msg:
                ack["lock_token"] = msg["lock_token"]
            client.request("POST", f"/ack/{queue}/{msg['id']}", ack)
    finally:
        client.close()
    return got


def restart_check(server: Server, storage: str, queues: list[str], checks: Checks) -> None:
    expected = publish_leftovers(server.port, queues)
    code = server.stop()
    checks.check("SIGTERM exits 0", code == 0, f"exit status {code}\n{server.log_tail()}")

    server.start()
    for q in queues:
        got = drain_in_order(server.port, q, LEFTOVER_PER_QUEUE)
        if storage == "memory":
            checks.check(f"{q}: memory mode starts empty", got == [],
                         f"{len(got)} messages came back")
        else:
            checks.check(f"{q}: queued messages survive a restart in order", got == expected[q],
                         f"expected {len(expected[q])} ids in order, got {len(got)}"
                         f"{' (same set, other order)' if set(got) == set(expected[q]) else ''}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=Path("target/release/qrusty"))
    parser.add_argument("--storage", choices=("wal", "memory"), default="wal")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between polls")
    parser.add_argument("--publishers", type=int, default=1, help="per queue")
    parser.add_argument("--consumers", type=int, default=2, help="per queue")
    parser.add_argument("--drain-timeout", type=float, default=60.0,
                        help="seconds allowed after the load to consume what is left")
    parser.add_argument("--no-restart", action="store_true", help="skip the restart check")
    args = parser.parse_args(argv)

    if not args.binary.is_file():
        print(f"no binary at {args.binary}: build it first (cargo build --release)",
              file=sys.stderr)
        return 2
    if args.duration <= args.interval:
        parser.error("--duration must be longer than --interval so that /stats is polled "
                     "during the load")

    queues = [f"smoke-{o.lower()}" for o in ORDERINGS]
    checks = Checks()
    server = Server(args.binary, args.storage)
    print(f"smoke test: {args.binary}, storage {args.storage}, {args.duration:.0f} s, "
          f"{args.publishers} publishers and {args.consumers} consumers per queue")
    try:
        server.start()
        print(f"server on 127.0.0.1:{server.port}, data in {server.data_dir}")
        client = Client(server.port)
        for q, ordering in zip(queues, ORDERINGS):
            status, reply = client.request("POST", "/create-queue",
                                           {"name": q, "config": {"ordering": ordering}})
            checks.check(f"create {q} ({ordering})", status == HTTP_OK, f"{status} {reply!r}")
        client.close()
        run_load(server, args, queues, checks)
        if not args.no_restart:
            restart_check(server, args.storage, queues, checks)
        code = server.stop()
        checks.check("final SIGTERM exits 0", code == 0, f"exit status {code}")
    except (RuntimeError, OSError) as err:
        checks.check("server kept answering", False, f"{type(err).__name__}: {err}")
    finally:
        if checks.failed:
            print(server.log_tail())
        server.cleanup()

    print(f"smoke: {checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
