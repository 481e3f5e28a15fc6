"""Load: 50 clients each hold an event stream open and poll `GET /api/jobs/{id}` (5 times a second) for 60 s
while a job runs; no errors and p99 latency within 50 ms. The job is the scripted engine's (it sleeps between
steps, as a GPU job leaves the CPU free), so the figure measures the server, not CPU sharing with a CPU job.
`GENESIS_LOAD_SECONDS` / `GENESIS_LOAD_P99_MS` override duration and bound; `tools/bench_server_load.py`
measures the same with the real engine."""

from __future__ import annotations

import asyncio
import os

import pytest

from tools.bench_server_load import run_load

from .conftest import LiveServer, fake_server_cmd, png_bytes

DURATION_S = float(os.environ.get("GENESIS_LOAD_SECONDS", "60"))
P99_LIMIT_MS = float(os.environ.get("GENESIS_LOAD_P99_MS", "50"))


@pytest.mark.slow
def test_fifty_clients_polling_and_streaming_during_a_job(tmp_path, capsys):
    data = tmp_path / "data"
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    server = LiveServer(fake_server_cmd(data, "--steps", "100000", "--step-s", "0.05"), data)
    try:
        result = asyncio.run(
            run_load(server.url, clients=50, duration=DURATION_S, poll_s=0.2, image=png_bytes())
        )
        health = server.client.get("/api/health")
    finally:
        server.stop()
    with capsys.disabled():
        print(
            f"\nload: {result['requests']} polls by 50 clients in {DURATION_S:.0f} s, p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms, errors {result['errors']}"
        )
    assert result["errors"] == 0, result["error_samples"]
    assert result["requests"] >= 50 * DURATION_S, "every client kept polling"
    assert health.status_code == 200
    if result["p99_ms"] > P99_LIMIT_MS and load_before > (os.cpu_count() or 1):
        pytest.skip(
            f"p99 {result['p99_ms']} ms is not meaningful: the machine was oversubscribed "
            f"(load average {load_before:.1f} on {os.cpu_count()} CPUs) before the test began"
        )
    assert result["p99_ms"] <= P99_LIMIT_MS, result
