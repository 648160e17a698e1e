#!/usr/bin/env python3
"""Runs schemathesis against a qrusty binary's own /openapi.json.

Starts the binary (memory mode, free 127.0.0.1 port, temporary data directory),
lets schemathesis generate a bounded number of requests per operation, and
fails when any reply is a 5xx or does not match its documented schema, or when
the server is no longer healthy afterwards.
"""

# Verifies: API-0025

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from qrusty_server import Client, Server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, default=Path("target/debug/qrusty"))
    parser.add_argument("--max-examples", type=int, default=25, help="per operation")
    parser.add_argument("--timeout", type=int, default=600, help="seconds before giving up")
    parser.add_argument("--seed", type=int, default=6784)
    parser.add_argument("--allow-missing", action="store_true",
                        help="exit 0 (with a SKIP line) when the server has no /openapi.json")
    args = parser.parse_args(argv)

    tool = shutil.which("schemathesis")
    if tool is None:
        print("schemathesis is not installed: run `make deps`", file=sys.stderr)
        return 2
    if not args.binary.is_file():
        print(f"no binary at {args.binary}: run `cargo build` first", file=sys.stderr)
        return 2

    server = Server(args.binary, "memory")
    try:
        server.start()
        client = Client(server.port)
        status, _ = client.request("GET", "/openapi.json")
        if status == 404 and args.allow_missing:
            print("SKIP schemathesis: the server has no /openapi.json yet")
            return 0
        if status != 200:
            print(f"FAIL GET /openapi.json answered {status}")
            return 1

        # The request timeout must outlast the longest long poll (wait_seconds <= 20).
        command = [
            tool, "run", f"http://127.0.0.1:{server.port}/openapi.json",
            "--checks", "not_a_server_error,response_schema_conformance",
            "--max-examples", str(args.max_examples),
            "--seed", str(args.seed), "--generation-database", "none",
            "--request-timeout", "30", "--workers", "1", "--no-color",
        ]
        print("$ " + " ".join(command), flush=True)
        # Run in the scratch directory: schemathesis leaves a cache folder in its cwd.
        code = subprocess.run(command, stdin=subprocess.DEVNULL, cwd=server.data_dir,
                              timeout=args.timeout).returncode

        status, body = client.request("GET", "/health")
        healthy = status == 200 and body == "OK"
        client.close()
        if not healthy:
            print(f"FAIL server unhealthy after the run: {status} {body!r}")
        if code != 0 or not healthy:
            print(server.log_tail())
            return 1
        return 0
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        print(f"FAIL {err}")
        return 1
    finally:
        server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
