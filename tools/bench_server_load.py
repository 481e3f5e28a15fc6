"""Load benchmark of the job server: N clients each keep an event stream open and poll `GET /api/jobs/{id}`
while a job runs; reports errors and latency percentiles of the polls.

    python tools/bench_server_load.py                       # 50 clients, 60 s, tiny models on the CPU
    python tools/bench_server_load.py --quick               # 10 clients, 5 s (smoke test)
    python tools/bench_server_load.py --models-dir models --device cuda   # the real engine on a GPU
    python tools/bench_server_load.py --fake-engine         # a scripted engine (no models needed)

Loopback only: the server is started on 127.0.0.1 with its own temporary data folder.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
START = [time.perf_counter()]
SLOW_S = 0.25
READY = re.compile(r"Genesis is running at (http://\S+)")


def start_server(
    data_dir: Path, models_dir: Path | None, device: str | None, fake: bool
) -> tuple[subprocess.Popen, str]:
    if fake:
        cmd = [
            sys.executable,
            str(REPO_ROOT / "tests" / "server" / "serve_fake.py"),
            "--steps",
            "100000",
            "--step-s",
            "0.05",
        ]
    else:
        cmd = [sys.executable, "-m", "gui.backend.cli", "serve", "--models-dir", str(models_dir)]
    cmd += ["--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir)]
    if device:
        cmd += ["--device", device]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found: list[str] = []
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            m = READY.search(line)
            if m and not found:
                found.append(m.group(1))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 120
    while not found and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not found:
        proc.kill()
        raise SystemExit("the server did not start:\n" + "".join(lines[-30:]))
    return proc, found[0]


def object_png() -> bytes:
    """An object on a transparent background (no background removal needed)."""
    from tools.make_tiny_models import calibration_image

    buf = io.BytesIO()
    calibration_image(opaque=False).save(buf, format="PNG")
    return buf.getvalue()


PARAMS = {"pipeline_type": "512", "texture_size": 512, "decimation_target": 10000, "remesh": False}


async def keep_a_job_running(
    client: httpx.AsyncClient, image: bytes, stop: asyncio.Event, current: list[str], errors: list[str]
) -> None:
    """Keep two jobs queued so one is always running; `current[0]` is the one to watch."""
    while not stop.is_set():
        jobs = (await client.get("/api/jobs", params={"limit": 20})).json()
        active = [j for j in jobs if j["state"] in ("queued", "running")]
        running = [j["id"] for j in active if j["state"] == "running"]
        if running:
            current[0] = running[0]
        for bad in (j for j in jobs if j["state"] == "failed"):
            msg = f"job failed: {bad['error']['message'][:200]}"
            if msg not in errors:
                errors.append(msg)
        if len(active) < 2:
            r = await client.post(
                "/api/generate/image",
                files={"image": ("o.png", image, "image/png")},
                data={"params": json.dumps(PARAMS)},
            )
            if not current[0]:
                current[0] = r.json()["job_id"]
        await asyncio.sleep(0.5)


class RawConnection:
    """One keep-alive HTTP/1.1 connection with just enough parsing for JSON polls and event streams.

    The load generator shares the machine with the server it measures, so it must cost far less CPU than
    the server: a full-featured client (httpx) spends more time per request than uvicorn does, and its
    own event-loop delays would then be reported as server latency.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, path: str) -> int:
        """Send `GET path` and read the status line and headers; returns the status."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        self.head = (await self.reader.readuntil(b"\r\n\r\n")).lower()  # type: ignore[union-attr]
        return int(self.head[9:12])

    async def get(self, path: str) -> tuple[int, bytes]:
        status = await self.request(path)
        match = re.search(rb"content-length: *(\d+)", self.head)
        if match is None:
            raise ConnectionError("response without content-length")
        body = await self.reader.readexactly(int(match.group(1)))  # type: ignore[union-attr]
        if b"connection: close" in self.head:
            self.close()
        return status, body

    async def chunks(self):
        """The chunks of a chunked (streamed) body until its end."""
        assert self.reader is not None
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await self.reader.readexactly(size + 2)
            if size == 0:
                return
            yield data[:-2]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


CONNECTION_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


async def client_loop(
    url: str,
    stop: asyncio.Event,
    current: list[str],
    latencies: list[float],
    errors: list[str],
    poll_s: float,
    slow: list[tuple[float, int]],
    delay_s: float,
) -> None:
    """One simulated UI: an open event stream plus a poll every `poll_s` (each on its own connection).

    It opens its connections after `delay_s`: the clients come up spread over one poll interval, as
    windows do, rather than all in the same millisecond.
    """
    await asyncio.sleep(delay_s)
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or 80
    poller, events = RawConnection(host, port), RawConnection(host, port)

    async def stream() -> None:
        while not stop.is_set():
            try:
                status = await events.request(f"/api/jobs/{current[0]}/events")
                if status != 200:
                    errors.append(f"events {status}")
                async for _ in events.chunks():
                    if stop.is_set():
                        return
            except CONNECTION_ERRORS as exc:
                errors.append(f"events: {exc!r}")
                events.close()
            await asyncio.sleep(0.05)

    streamer = asyncio.create_task(stream())
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                status, _ = await poller.get(f"/api/jobs/{current[0]}")
                latencies.append(time.perf_counter() - t0)
                if latencies[-1] > SLOW_S:
                    slow.append((round(t0 - START[0], 2), round(latencies[-1] * 1000)))
                if status != 200:
                    errors.append(f"poll {status}")
            except CONNECTION_ERRORS as exc:
                errors.append(f"poll: {exc!r}")
                poller.close()
            await asyncio.sleep(poll_s)
    finally:
        streamer.cancel()
        poller.close()
        events.close()


async def run_load(url: str, clients: int, duration: float, poll_s: float, image: bytes) -> dict:
    stop = asyncio.Event()
    current = [""]
    latencies: list[float] = []
    errors: list[str] = []
    slow: list[tuple[float, int]] = []  # (seconds into the run, milliseconds) of polls over 250 ms
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as control:
        feeder = asyncio.create_task(keep_a_job_running(control, image, stop, current, errors))
        while not current[0]:
            await asyncio.sleep(0.05)
        START[0] = time.perf_counter()
        tasks = [
            asyncio.create_task(
                client_loop(url, stop, current, latencies, errors, poll_s, slow, delay_s=poll_s * i / clients)
            )
            for i in range(clients)
        ]
        await asyncio.sleep(duration)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        feeder.cancel()
        jobs = (await control.get("/api/jobs", params={"limit": 1000})).json()
    ms = sorted(x * 1000 for x in latencies)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))] if ms else float("nan")

    return {
        "clients": clients,
        "duration_s": duration,
        "requests": len(ms),
        "errors": len(errors),
        "error_samples": errors[:5],
        "p50_ms": round(pct(50), 2),
        "p95_ms": round(pct(95), 2),
        "p99_ms": round(pct(99), 2),
        "max_ms": round(ms[-1], 2) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
        "jobs_succeeded": sum(j["state"] == "succeeded" for j in jobs),
        "jobs_failed": sum(j["state"] == "failed" for j in jobs),
        "slow_polls_at_s_ms": slow[:20],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", help="torch device for the engine (default: the best available)")
    parser.add_argument("--quick", action="store_true", help="10 clients for 5 s")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--poll-s", type=float, default=0.1, help="pause between one client's polls")
    parser.add_argument(
        "--models-dir", type=Path, help="models folder (default: tiny models in a temp folder)"
    )
    parser.add_argument("--fake-engine", action="store_true", help="scripted engine instead of TRELLIS.2")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.duration = min(args.clients, 10), min(args.duration, 5.0)
    with tempfile.TemporaryDirectory(prefix="genesis-bench-") as tmp:
        models = args.models_dir
        if models is None and not args.fake_engine:
            from tools.make_tiny_models import make_tiny_models

            models = Path(tmp) / "models"
            make_tiny_models(models)
        proc, url = start_server(Path(tmp) / "data", models, args.device, args.fake_engine)
        try:
            result = asyncio.run(run_load(url, args.clients, args.duration, args.poll_s, object_png()))
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    result["engine"] = "fake" if args.fake_engine else f"trellis2 ({models})"
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    main()
