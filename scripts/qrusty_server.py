"""Starts a qrusty binary on a free 127.0.0.1 port with its own data directory.

Shared by the smoke test and the API schema check; standard library only.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    # Limitation: the port is released before the server binds it, so another process could
    # take it in between; the start then fails loudly and a rerun picks another port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Client:
    """One keep-alive HTTP connection to the server; one per thread."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body=None) -> tuple[int, object]:
        """Returns (status, decoded JSON or text or None); reconnects once on a dropped
        keep-alive connection."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                reply = self.conn.getresponse()
                raw = reply.read()
                break
            except (http.client.HTTPException, ConnectionError, socket.timeout):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        if not raw:
            return reply.status, None
        if "json" in (reply.getheader("Content-Type") or ""):
            return reply.status, json.loads(raw)
        return reply.status, raw.decode(errors="replace")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Server:
    """A server process: `start()`, talk to `port`, `stop()`; `log_tail()` on failure."""

    def __init__(self, binary: Path, storage: str, data_dir: Path | None = None,
                 extra_env: dict[str, str] | None = None):
        self.binary = Path(binary)
        self.storage = storage
        self._own_dir = None
        if data_dir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="qrusty-")
            data_dir = Path(self._own_dir.name)
        self.data_dir = Path(data_dir)
        self.log_path = self.data_dir / "server.log"
        self.extra_env = extra_env or {}
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 30.0) -> None:
        self.port = free_port()
        env = dict(os.environ)
        # A token in the caller's environment would make every request of ours a 401.
        env.pop("QRUSTY_API_TOKEN", None)
        env.update({
            "BIND_ADDR": f"127.0.0.1:{self.port}",
            "DATA_PATH": str(self.data_dir / "data"),
            "STORAGE_MODE": self.storage,
            "RUST_LOG": env.get("RUST_LOG", "info"),
        })
        env.update(self.extra_env)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(self.binary)], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = Client(self.port, timeout=2.0)
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode} at startup\n"
                                       + self.log_tail())
                try:
                    status, body = client.request("GET", "/health")
                    if status == 200 and body == "OK":
                        return
                except OSError:
                    pass
                time.sleep(0.1)
        finally:
            client.close()
        self.kill()
        raise RuntimeError(f"server not healthy after {timeout:.0f} s\n" + self.log_tail())

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status (negative: signal)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "--- server log (last lines) ---\n" + "\n".join(text[-lines:])

    def cleanup(self) -> None:
        self.kill()
        if self._own_dir is not None:
            self._own_dir.cleanup()
