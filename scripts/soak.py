#!/usr/bin/env python3
"""Soak test: mixed load against a qrusty binary that is killed with SIGKILL and
restarted every --kill-every seconds, for --duration seconds.

The server runs on 127.0.0.1 with a temporary data directory (wal storage, fsync
always, 1 MiB segments so that compaction runs too; --env changes settings).
Publishers send single publishes and small batches at a bounded rate; consumers
long-poll, and ack what they get. Every reply is booked in a ledger:

- a publish that got 200 is *confirmed*; one whose reply was lost (the kill cut the
  connection) may or may not have landed and counts for nothing;
- an ack that got 200 is *confirmed*; an ack whose reply was lost may have landed.

After the last kill the server is restarted once more, the load stops, and the queue is
drained. Then the checks:

- no confirmed publish was lost: each was acked (confirmed or possibly) or drained;
- no acked message came back: no delivery of an id whose ack had been confirmed before
  the consume that delivered it was sent;
- resident memory (VmRSS) and disk use (the data directory) stayed under the bounds;
- every restart came back healthy.

It prints a summary with the figures and exits 1 if a check fails. Standard library
only. `make soak` runs it for 10 minutes; `make test` runs a one-minute version.
"""

# Verifies: SYS-0028, SYS-0005, PER-0019

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from qrusty_server import Client, Server

QUEUE = "soak"
HTTP_OK = 200
# Errors of a request whose reply a kill cut off.
CUT_OFF = (OSError, http.client.HTTPException, socket.timeout, json.JSONDecodeError)


@dataclass
class Ledger:
    """What the workers saw, under one lock. Times are time.monotonic() values."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    confirmed_published: set[str] = field(default_factory=set)
    uncertain_publishes: int = 0
    # id -> when the 200 of its ack arrived
    confirmed_acks: dict[str, float] = field(default_factory=dict)
    possible_acks: set[str] = field(default_factory=set)
    deliveries: int = 0
    redeliveries: int = 0
    came_back: list[str] = field(default_factory=list)
    drained: set[str] = field(default_factory=set)
    refused: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def published(self, ids: list[str]) -> None:
        with self.lock:
            self.confirmed_published.update(ids)

    def publish_uncertain(self) -> None:
        with self.lock:
            self.uncertain_publishes += 1

    def delivered(self, msg_id: str, retry_count: int, asked_at: float) -> None:
        """A delivery to a consume sent at `asked_at`."""
        with self.lock:
            self.deliveries += 1
            if retry_count > 1:
                self.redeliveries += 1
            acked_at = self.confirmed_acks.get(msg_id)
            if acked_at is not None and acked_at < asked_at:
                self.came_back.append(msg_id)

    def acked(self, msg_id: str, at: float) -> None:
        with self.lock:
            self.confirmed_acks.setdefault(msg_id, at)

    def ack_uncertain(self, msg_id: str) -> None:
        with self.lock:
            self.possible_acks.add(msg_id)

    def drain(self, msg_id: str) -> None:
        with self.lock:
            self.drained.add(msg_id)

    def refusal(self, what: str) -> None:
        with self.lock:
            self.refused[what] = self.refused.get(what, 0) + 1

    def error(self, text: str) -> None:
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(text)

    def lost(self) -> set[str]:
        """Confirmed publishes neither acked (surely or possibly) nor found at the end."""
        with self.lock:
            accounted = set(self.confirmed_acks) | self.possible_acks | self.drained
            return self.confirmed_published - accounted


class Target:
    """The port of the server's current incarnation, read by every worker."""

    def __init__(self):
        self._lock = threading.Lock()
        self._port = 0
        self._up = threading.Event()

    def set(self, port: int) -> None:
        with self._lock:
            self._port = port
        self._up.set()

    def down(self) -> None:
        self._up.clear()

    def port(self, timeout: float = 30.0) -> int:
        self._up.wait(timeout)
        with self._lock:
            return self._port


class Worker:
    """A client that follows the server across restarts."""

    def __init__(self, target: Target, ledger: Ledger):
        self.target = target
        self.ledger = ledger
        self.client: Client | None = None

    def request(self, method: str, path: str, body=None) -> tuple[int, object]:
        port = self.target.port()
        if self.client is None or self.client.port != port:
            if self.client is not None:
                self.client.close()
            self.client = Client(port, timeout=10.0)
        try:
            return self.client.request(method, path, body)
        except CUT_OFF:
            self.client.close()
            raise

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def book_refusal(ledger: Ledger, what: str, status: int, reply: object) -> None:
    """A non-200 reply: a limit's refusal is counted, anything else is an error."""
    code = reply.get("code") if isinstance(reply, dict) else None
    if status in (429, 503, 507) and code:
        ledger.refusal(f"{what} {status} {code}")
    else:
        ledger.error(f"{what}: {status} {reply!r}"[:300])


def publisher(n: int, target: Target, ledger: Ledger, stop: threading.Event,
              rate: float) -> None:
    """About `rate` messages a second: four single publishes, then a batch of five."""
    worker = Worker(target, ledger)
    rng = random.Random(n)
    seq = 0
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            if seq % 5 == 4:
                batch = [{"priority": rng.randrange(100), "payload": f"p{n}-{seq}-{i}"}
                         for i in range(5)]
                path, body = "/publish-batch", {"queue": QUEUE, "messages": batch}
            else:
                path = "/publish"
                body = {"queue": QUEUE, "priority": rng.randrange(100),
                        "payload": f"p{n}-{seq}"}
            seq += 1
            try:
                status, reply = worker.request("POST", path, body)
            except CUT_OFF:
                ledger.publish_uncertain()
                continue
            if status == HTTP_OK and isinstance(reply, dict):
                ledger.published(reply.get("ids") or [reply["id"]])
            else:
                book_refusal(ledger, "publish", status, reply)
            sent = len(body.get("messages", [None]))
            next_at = max(next_at + sent / rate, time.monotonic() - 1.0)
            stop.wait(max(0.0, next_at - time.monotonic()))
    finally:
        worker.close()


def consume_one(worker: Worker, ledger: Ledger, consumer_id: str, lock_secs: int,
                on_delivery) -> bool:
    """One long poll, and the ack of what it got. False when the queue was empty."""
    asked_at = time.monotonic()
    body = {"consumer_id": consumer_id, "timeout_seconds": lock_secs, "wait_seconds": 1}
    status, msg = worker.request("POST", f"/consume/{QUEUE}", body)
    if status != HTTP_OK:
        book_refusal(ledger, "consume", status, msg)
        time.sleep(0.1)
        return True
    if msg is None:
        return False
    ledger.delivered(msg["id"], msg.get("retry_count", 0), asked_at)
    on_delivery(msg["id"])
    ack = {"consumer_id": consumer_id, "lock_token": msg["lock_token"]}
    try:
        status, reply = worker.request("POST", f"/ack/{QUEUE}/{msg['id']}", ack)
    except CUT_OFF:
        ledger.ack_uncertain(msg["id"])
        return True
    if status == HTTP_OK:
        ledger.acked(msg["id"], time.monotonic())
    elif isinstance(reply, dict) and reply.get("code") in ("not_locked", "stale_lock"):
        # Either the lock ran out (the message is queued again, and will be drained), or
        # this is the client's retry of an ack that landed but whose reply a kill cut off.
        ledger.refusal(f"ack {status} {reply['code']}")
        ledger.ack_uncertain(msg["id"])
    else:
        book_refusal(ledger, "ack", status, reply)
    return True


def consumer(n: int, target: Target, ledger: Ledger, stop: threading.Event,
             lock_secs: int, pause: float) -> None:
    """Consumes and acks; `pause` seconds after each message make a slow consumer."""
    worker = Worker(target, ledger)
    try:
        while not stop.is_set():
            try:
                if consume_one(worker, ledger, f"soak-{n}", lock_secs, lambda _id: None):
                    stop.wait(pause)
            except CUT_OFF:
                time.sleep(0.05)
    finally:
        worker.close()


def parse_vmrss_kib(status_text: str) -> int:
    """The VmRSS line of /proc/<pid>/status, in KiB (0 when missing)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def dir_bytes(path: Path) -> int:
    """Bytes of every file under `path`, as du would count them (apparent size)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass  # a segment removed by compaction while we walked
    return total


@dataclass
class Peaks:
    rss_kib: int = 0
    disk_bytes: int = 0
    samples: int = 0


def monitor(server_pid, data_dir: Path, peaks: Peaks, stop: threading.Event) -> None:
    """Samples the current process's VmRSS and the data directory every 0.5 s."""
    while not stop.wait(0.5):
        pid = server_pid()
        rss = 0
        if pid:
            try:
                rss = parse_vmrss_kib(Path(f"/proc/{pid}/status").read_text())
            except OSError:
                pass
        peaks.rss_kib = max(peaks.rss_kib, rss)
        peaks.disk_bytes = max(peaks.disk_bytes, dir_bytes(data_dir))
        peaks.samples += 1


def queue_counts(client: Client) -> tuple[int, int]:
    status, stats = client.request("GET", f"/queue-stats/{QUEUE}")
    if status != HTTP_OK or not isinstance(stats, dict):
        return (-1, -1)
    return stats.get("available", 0), stats.get("locked", 0)


def drain(target: Target, ledger: Ledger, lock_secs: int, deadline: float) -> tuple[int, int]:
    """Consumes and acks until nothing is available or locked (locks a killed server left
    behind run out within `lock_secs`). Returns the last (available, locked)."""
    worker = Worker(target, ledger)
    stats = Client(target.port())
    counts = (-1, -1)
    try:
        while time.monotonic() < deadline:
            if consume_one(worker, ledger, "soak-drain", lock_secs, ledger.drain):
                continue
            counts = queue_counts(stats)
            if counts == (0, 0):
                break
    finally:
        worker.close()
        stats.close()
    return counts


def run(args) -> int:
    ledger = Ledger()
    target = Target()
    peaks = Peaks()
    tmp = tempfile.TemporaryDirectory(prefix="qrusty-soak-")
    data_dir = Path(tmp.name)
    # 1 MiB segments: the log rolls every half minute or so at the default rate, so
    # compactions run, and get killed, during the soak as well.
    env = {"QRUSTY_FSYNC": "always", "RUST_LOG": "warn", "QRUSTY_SEGMENT_BYTES": "1048576"}
    env.update(args.env)
    server = Server(Path(args.binary), args.storage, data_dir=data_dir, extra_env=env)
    restarts: list[float] = []
    failures: list[str] = []
    stop_load = threading.Event()
    stop_monitor = threading.Event()

    def restart() -> None:
        target.down()
        server.kill()
        began = time.monotonic()
        server.start(ready_timeout=60)
        restarts.append(time.monotonic() - began)
        target.set(server.port)

    started = time.monotonic()
    try:
        server.start(ready_timeout=60)
        target.set(server.port)
        watcher = threading.Thread(target=monitor, daemon=True,
                                   args=(lambda: server.proc and server.proc.pid, data_dir,
                                         peaks, stop_monitor))
        watcher.start()
        workers = [threading.Thread(target=publisher, daemon=True,
                                    args=(n, target, ledger, stop_load,
                                          args.rate / args.publishers))
                   for n in range(args.publishers)]
        workers += [threading.Thread(target=consumer, daemon=True,
                                     args=(n, target, ledger, stop_load, args.lock_seconds,
                                           args.consumer_pause))
                    for n in range(args.consumers)]
        for w in workers:
            w.start()

        end = started + args.duration
        next_kill = started + args.kill_every
        while True:
            now = time.monotonic()
            if next_kill >= end:
                time.sleep(max(0.0, end - now))
                break
            time.sleep(max(0.0, next_kill - now))
            restart()
            print(f"t={time.monotonic() - started:6.1f}s kill #{len(restarts)}: back in "
                  f"{restarts[-1]:.2f}s; {len(ledger.confirmed_published)} published, "
                  f"{len(ledger.confirmed_acks)} acked, rss peak {peaks.rss_kib // 1024} MiB",
                  flush=True)
            next_kill += args.kill_every
        # The last kill, with the load still running, then the drain.
        restart()
        stop_load.set()
        for w in workers:
            w.join(30)
        counts = drain(target, ledger, args.lock_seconds,
                       time.monotonic() + args.lock_seconds + 60)
        stop_monitor.set()
        watcher.join(5)
        if counts != (0, 0):
            failures.append(f"queue not empty after the drain: (available, locked) {counts}")
    except RuntimeError as err:
        failures.append(f"server did not come back: {err}")
    finally:
        stop_load.set()
        stop_monitor.set()
        server.stop()
        tail = server.log_tail()
        tmp.cleanup()

    lost = ledger.lost()
    if lost:
        failures.append(f"{len(lost)} confirmed publishes lost, e.g. {sorted(lost)[:5]}")
    if ledger.came_back:
        failures.append(f"{len(ledger.came_back)} acked messages delivered again, "
                        f"e.g. {ledger.came_back[:5]}")
    if peaks.rss_kib > args.max_rss_mb * 1024:
        failures.append(f"VmRSS peaked at {peaks.rss_kib // 1024} MiB, over {args.max_rss_mb}")
    if peaks.disk_bytes > args.max_disk_mb * 1024 * 1024:
        failures.append(f"data dir peaked at {peaks.disk_bytes >> 20} MiB, "
                        f"over {args.max_disk_mb}")
    if not ledger.confirmed_published or not ledger.confirmed_acks:
        failures.append("no load went through")
    if ledger.errors:
        failures.append(f"{len(ledger.errors)}+ unexpected replies, e.g. {ledger.errors[:3]}")

    print_summary(args, ledger, peaks, restarts, time.monotonic() - started)
    for f in failures:
        print(f"FAIL {f}")
    if failures:
        print(tail)
        return 1
    print("PASS soak: nothing acknowledged lost, nothing acked came back, memory and disk "
          "bounded")
    return 0


def print_summary(args, ledger: Ledger, peaks: Peaks, restarts: list[float],
                  elapsed: float) -> None:
    print("--- soak summary ---")
    print(f"duration              {elapsed:.0f} s (kill every {args.kill_every:g} s)")
    print(f"SIGKILL + restarts    {len(restarts)}; restart to healthy max "
          f"{max(restarts, default=0):.2f} s, mean "
          f"{sum(restarts) / max(len(restarts), 1):.2f} s")
    print(f"confirmed publishes   {len(ledger.confirmed_published)} "
          f"({ledger.uncertain_publishes} cut off by a kill)")
    print(f"deliveries            {ledger.deliveries} ({ledger.redeliveries} redeliveries)")
    print(f"confirmed acks        {len(ledger.confirmed_acks)} "
          f"({len(ledger.possible_acks)} cut off by a kill)")
    print(f"drained at the end    {len(ledger.drained)}")
    print(f"lost                  {len(ledger.lost())}")
    print(f"acked came back       {len(ledger.came_back)}")
    print(f"limit refusals        {dict(sorted(ledger.refused.items())) or 'none'}")
    print(f"VmRSS peak            {peaks.rss_kib / 1024:.1f} MiB (bound {args.max_rss_mb})")
    print(f"data dir peak         {peaks.disk_bytes / 2**20:.1f} MiB "
          f"(bound {args.max_disk_mb}; {peaks.samples} samples)")


def env_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=VALUE")
    return name, value


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", required=True, help="the qrusty binary to run")
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    p.add_argument("--kill-every", type=float, default=30.0, help="seconds between kills")
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--consumers", type=int, default=4)
    p.add_argument("--rate", type=float, default=400.0, help="messages/s, all publishers")
    p.add_argument("--lock-seconds", type=int, default=5,
                   help="lock timeout of each consume; held locks of a killed run expire")
    p.add_argument("--consumer-pause", type=float, default=0.0,
                   help="seconds each consumer waits after a message: a backlog builds up")
    p.add_argument("--storage", choices=("wal", "memory"), default="wal",
                   help="memory loses everything at each kill: a check that the soak notices")
    p.add_argument("--env", action="append", default=[], type=env_setting,
                   metavar="NAME=VALUE", help="a setting for the server, e.g. a limit")
    p.add_argument("--max-rss-mb", type=int, default=512)
    p.add_argument("--max-disk-mb", type=int, default=1024)
    args = p.parse_args(argv)
    if args.duration <= 0 or args.kill_every <= 0 or args.rate <= 0:
        p.error("--duration, --kill-every and --rate must be positive")
    if args.publishers < 1 or args.consumers < 1:
        p.error("at least one publisher and one consumer")
    return args


if __name__ == "__main__":
    sys.exit(run(parse_args(sys.argv[1:])))
