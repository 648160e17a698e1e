"""A tiny stand-in for the qrusty server, so the smoke test can be tested without it.

It answers the few routes the smoke test uses, keeps its state in one JSON file under
DATA_PATH when STORAGE_MODE=wal (written at SIGTERM), and misbehaves on purpose when
FAKE_QRUSTY_BUG names a fault: `double` (consume does not lock), `norate` (rates stay 0),
`forget` (the state file is not written), `badexit` (SIGTERM exits 3), `noapi` (no
/openapi.json) or `crash` (GET /queues answers 500).
"""

import json
import os
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BUG = os.environ.get("FAKE_QRUSTY_BUG", "")
STATE = Path(os.environ["DATA_PATH"]) / "state.json"
PERSIST = os.environ.get("STORAGE_MODE") == "wal"

lock = threading.Lock()
queues = {}  # name -> {"ordering": str, "messages": [dict], "counts": {...}, "rates": {...}}
seq = [0]

OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "fake qrusty", "version": "0"},
    "paths": {
        "/health": {"get": {"responses": {"200": {
            "description": "alive", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/queues": {"get": {"responses": {"200": {
            "description": "names", "content": {"application/json": {"schema": {
                "type": "array", "items": {"type": "string"}}}}}}}},
    },
}


def new_queue(ordering="MaxFirst"):
    return {"ordering": ordering, "messages": [],
            "counts": {"publish": 0, "ack": 0}, "rates": {"publish": 0.0, "ack": 0.0}}


def order_key(queue, m):
    if queue["ordering"] == "MaxFirst":
        return (-m["priority"], m["seq"])
    if queue["ordering"] == "MinFirst":
        return (m["priority"], m["seq"])
    return (m["seq"],)


def sampler():
    while True:
        time.sleep(1)
        with lock:
            for q in queues.values():
                for kind in ("publish", "ack"):
                    inst, q["counts"][kind] = q["counts"][kind], 0
                    q["rates"][kind] = inst / 15 + q["rates"][kind] * 14 / 15
                    if BUG == "norate":
                        q["rates"][kind] = 0.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per reply: headers and body in separate segments would meet delayed ACKs.
    wbufsize = 65536

    def log_message(self, *args):
        pass

    def reply(self, status, body=None, text=None):
        if text is not None:
            data, kind = text.encode(), "text/plain; charset=utf-8"
        else:
            data, kind = (b"" if body is None and status != 200 else json.dumps(body).encode(),
                          "application/json")
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, text="OK")
        if self.path == "/openapi.json" and BUG != "noapi":
            return self.reply(200, OPENAPI)
        if self.path == "/queues":
            with lock:
                return self.reply(500 if BUG == "crash" else 200, sorted(queues))
        if self.path == "/stats":
            with lock:
                rows = []
                for name in sorted(queues):
                    q = queues[name]
                    locked = sum(1 for m in q["messages"] if m["locked_until"] > time.time())
                    rows.append({"name": name, "available": len(q["messages"]) - locked,
                                 "locked": locked, "total": len(q["messages"]),
                                 "publish_rate_per_sec": q["rates"]["publish"],
                                 "ack_rate_per_sec": q["rates"]["ack"],
                                 "nack_rate_per_sec": 0.0})
            return self.reply(200, {"queues": rows, "summary": {}})
        return self.reply(404)

    def refuse_method(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(405)

    def __getattr__(self, name):
        # Any method without its own do_X (PUT, TRACE, QUERY, ...) is refused like warp does.
        if name.startswith("do_"):
            return self.refuse_method
        raise AttributeError(name)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        parts = self.path.strip("/").split("/")
        with lock:
            if parts == ["create-queue"]:
                if body["name"] in queues:
                    return self.reply(409)
                queues[body["name"]] = new_queue(body["config"]["ordering"])
                return self.reply(200)
            if parts == ["publish"]:
                q = queues.setdefault(body["queue"], new_queue())
                seq[0] += 1
                msg = {"id": str(uuid.uuid4()), "priority": body["priority"], "seq": seq[0],
                       "payload": body["payload"], "locked_by": None, "locked_until": 0}
                q["messages"].append(msg)
                q["counts"]["publish"] += 1
                return self.reply(200, {"id": msg["id"]})
            if parts[0] == "consume":
                q = queues.get(parts[1])
                now = time.time()
                ready = [m for m in (q or {}).get("messages", []) if m["locked_until"] <= now]
                if not ready:
                    return self.reply(200, None)
                msg = min(ready, key=lambda m: order_key(q, m))
                if BUG != "double":
                    msg["locked_by"] = body["consumer_id"]
                    msg["locked_until"] = now + body.get("timeout_seconds", 30)
                return self.reply(200, {"id": msg["id"], "payload": msg["payload"],
                                        "retry_count": 1})
            if parts[0] == "ack":
                q = queues.get(parts[1], new_queue())
                for m in q["messages"]:
                    if m["id"] == parts[2] and (BUG == "double"
                                                or m["locked_by"] == body["consumer_id"]):
                        q["messages"].remove(m)
                        q["counts"]["ack"] += 1
                        return self.reply(200)
                return self.reply(404)
        return self.reply(404)


def shutdown(*_):
    with lock:
        if PERSIST and BUG != "forget":
            saved = {name: {"ordering": q["ordering"], "messages": q["messages"]}
                     for name, q in queues.items()}
            STATE.write_text(json.dumps({"seq": seq[0], "queues": saved}))
    os._exit(3 if BUG == "badexit" else 0)


def main():
    STATE.parent.mkdir(parents=True, exist_ok=True)
    if PERSIST and STATE.exists():
        saved = json.loads(STATE.read_text())
        seq[0] = saved["seq"]
        for name, q in saved["queues"].items():
            queues[name] = new_queue(q["ordering"])
            queues[name]["messages"] = q["messages"]
    host, port = os.environ["BIND_ADDR"].rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    signal.signal(signal.SIGTERM, shutdown)
    threading.Thread(target=sampler, daemon=True).start()
    print(f"fake qrusty on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
