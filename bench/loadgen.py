"""A small HTTP/1.1 keep-alive load generator (asyncio), for hosts without `wrk`.

It runs in its own process (so it does not share the server's interpreter or GIL), loopback only,
bounded by a request count and a duration, with a fixed number of connections each sending its next
request as soon as the previous answer arrived (closed loop, like wrk).

    python bench/loadgen.py URL PATH BODIES_JSON --connections 8 --seconds 10 --max-requests 50000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


async def _worker(
    host: str, port: int, path: str, bodies: list[bytes], state: dict[str, Any], deadline: float, limit: int
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < deadline and state["sent"] < limit:
            body = bodies[state["sent"] % len(bodies)]
            state["sent"] += 1
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            state["latencies"].append((time.perf_counter() - started) * 1000)
            if status != 200:
                state["errors"] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        state["errors"] += 1
    finally:
        writer.close()


async def _drive(url: str, path: str, bodies: list[bytes], connections: int, seconds: float, limit: int) -> dict:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit(f"loopback only, not {parts.hostname}")
    state: dict[str, Any] = {"sent": 0, "errors": 0, "latencies": []}
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(_worker(parts.hostname, parts.port or 80, path, bodies, state, deadline, limit) for _ in range(connections))
    )
    elapsed = time.monotonic() - started
    latencies = sorted(state["latencies"])

    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, round(q * (len(latencies) - 1)))] if latencies else float("nan")

    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": pick(0.5),
        "p99_ms": pick(0.99),
        "errors": state["errors"],
        "requests": len(latencies),
        "tool": f"bench/loadgen.py (asyncio) -c{connections} -d{seconds:g}s",
    }


def run(url: str, path: str, bodies: list[str], connections: int, seconds: float, max_requests: int) -> dict:
    """Run the generator in a separate process and return its figures."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(bodies, handle)
    try:
        command = [sys.executable, __file__, url, path, handle.name, "--connections", str(connections),
                   "--seconds", str(seconds), "--max-requests", str(max_requests)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, check=True)
    finally:
        Path(handle.name).unlink()
    figures: dict = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("path")
    parser.add_argument("bodies", type=Path, help="JSON list of request bodies, used in turn")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=50_000)
    args = parser.parse_args()
    bodies = [b.encode("utf-8") for b in json.loads(args.bodies.read_text(encoding="utf-8"))]
    figures = asyncio.run(_drive(args.url, args.path, bodies, args.connections, args.seconds, args.max_requests))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
