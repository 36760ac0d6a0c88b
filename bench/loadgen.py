"""An open-loop HTTP load generator: `python bench/loadgen.py PORT PATH RATE SECONDS`, with
the Bearer token (if any) in the environment as BENCH_TOKEN.

Request n is due at start + n / RATE whatever happened to the ones before it, and its latency
is counted from when it was due, not from when it was sent: a server that falls behind shows
its queue in the figures instead of slowing the generator down (a closed loop, one request
after another, would hide exactly that). Each request is a new connection to 127.0.0.1:PORT
(gunicorn's sync workers close the connection after each response anyway) asking
`GET PATH` with `Connection: close`.

It runs in its own process, on plain asyncio sockets (no HTTP library: parsing a status line
and a Content-Length is all it needs, and every microsecond it spends is taken from the server
on a 2-core machine). Prints one JSON object: the latencies (s) of the answers that came back
whole with status 200, the failures by kind, how late the latest send was, and the CPU
seconds this process used.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter

TIMEOUT = 10.0  # seconds a request may take before it counts as failed


async def _request(port: int, raw: bytes) -> str:
    """Send one request; return "ok" or the kind of failure."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.read() if length is None else await reader.readexactly(length)
        if status != b"200":
            return f"status {status.decode()}"
        if not body:
            return "empty body"
        return "ok"
    finally:
        writer.close()


async def _run(port: int, path: str, rate: float, seconds: float, token: str) -> dict[str, object]:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    raw = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}Connection: close\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    late = 0.0

    async def one(due: float) -> None:
        try:
            outcome = await asyncio.wait_for(_request(port, raw), TIMEOUT)
        except TimeoutError:
            outcome = "timeout"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            outcome = type(error).__name__
        if outcome == "ok":
            latencies.append(loop.time() - due)
        else:
            failures[outcome] += 1

    count = round(rate * seconds)
    start = loop.time() + 0.05
    tasks = []
    for n in range(count):
        due = start + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        late = max(late, loop.time() - due)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return {
        "sent": count,
        "latencies": latencies,
        "failures": dict(failures),
        "latest_send_s": late,
        "cpu_s": time.process_time(),
        "wall_s": loop.time() - start,
    }


def main() -> None:
    port, path, rate, seconds = (
        int(sys.argv[1]),
        sys.argv[2],
        float(sys.argv[3]),
        float(sys.argv[4]),
    )
    token = os.environ.get("BENCH_TOKEN", "")
    print(json.dumps(asyncio.run(_run(port, path, rate, seconds, token))))


if __name__ == "__main__":
    main()
