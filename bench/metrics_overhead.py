"""What the request metrics cost: wrk against ``GET /healthz`` of the vault with and without
the metrics middleware (``vault.metrics.MetricsMiddleware``), alternating.

    .venv/bin/python bench/metrics_overhead.py [--rounds 3] [--seconds 5] [--connections 16]

Two uvicorn servers (one process each, SQLite in a temporary directory) serve the same app,
one with the middleware removed; each round runs ``wrk -t1`` against one then the other,
so both see the same machine. Prints req/s and p50/p99 per round and the ratio of the means
(with / without). Read the ratio: the machine is shared and absolute figures move between
runs; rounds that differ a lot from each other say the machine was busy.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's own directory comes first on sys.path, and bench/http.py would
# hide the standard library's ``http`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

# ruff: noqa: E402
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import httpx

TOKEN = "bench-" + "0" * 40


def without_metrics() -> object:
    """The vault's app with the metrics middleware taken out (uvicorn factory)."""
    from vault.metrics import MetricsMiddleware
    from vrm.app import create_app

    app = create_app()
    app.user_middleware = [m for m in app.user_middleware if m.cls is not MetricsMiddleware]
    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(factory: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        factory,
        "--factory",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(  # noqa: S603 (our own interpreter, our own code)
        command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{factory} did not start:\n{log.read_text()}")


def wrk(url: str, seconds: int, connections: int) -> tuple[float, str, str]:
    wrk_bin = shutil.which("wrk")
    if wrk_bin is None:
        raise SystemExit("wrk is not installed")
    out = subprocess.run(  # noqa: S603
        [wrk_bin, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url + "/healthz"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    if "Non-2xx" in out or "Socket errors" in out:
        print(out)
        raise SystemExit("errors during the run")
    return rps, p50, p99


def direct(calls: int) -> None:
    """The middleware alone, in this process: microseconds it adds to one request, measured
    around an ASGI app that answers at once (no server, no network: the noise of wrk over a
    shared machine is gone, what is left is the middleware's own work)."""
    import asyncio

    from vault.metrics import MetricsMiddleware

    class Route:
        path_format = "/healthz"

    async def bare(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        scope["route"] = Route
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]

    async def nothing(_message: object) -> None:
        return None

    async def receive() -> dict:  # type: ignore[type-arg]
        return {"type": "http.request", "body": b""}

    async def run(app: object) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            scope = {"type": "http", "method": "GET", "path": "/healthz"}
            await app(scope, receive, nothing)  # type: ignore[operator]
        return (time.perf_counter() - start) / calls * 1e6

    wrapped = MetricsMiddleware(bare)
    timings: dict[str, list[float]] = {"bare": [], "with metrics": []}
    for _ in range(5):
        timings["bare"].append(asyncio.run(run(bare)))
        timings["with metrics"].append(asyncio.run(run(wrapped)))
    best = {name: min(values) for name, values in timings.items()}
    print(
        f"direct ({calls} calls, best of 5): bare {best['bare']:.2f} us, with metrics "
        f"{best['with metrics']:.2f} us: the middleware adds "
        f"{best['with metrics'] - best['bare']:.2f} us per request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--direct", type=int, default=50_000, help="calls for the in-process measurement"
    )
    args = parser.parse_args()
    direct(args.direct)

    with tempfile.TemporaryDirectory(prefix="vrm-bench-metrics-") as tmp:
        base = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VRM_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            VRM_DATABASE_URL=f"sqlite:///{base / 'vault.db'}",
            VRM_KEY_DIR=str(base / "keys"),
            VRM_METRICS_TOKEN=TOKEN,
            PYTHONPATH=str(ROOT),
        )
        subprocess.run(
            [sys.executable, "-m", "vrm.cli", "db", "upgrade"], env=env, check=True, cwd=ROOT
        )
        servers = {
            "with metrics": start("vrm.app:create_app", env, base / "with.log"),
            "without": start("bench.metrics_overhead:without_metrics", env, base / "without.log"),
        }
        try:
            for _name, (_proc, url) in servers.items():
                wrk(url, 2, args.connections)  # warm-up
            results: dict[str, list[float]] = {name: [] for name in servers}
            print(f"wrk -t1 -c{args.connections} -d{args.seconds}s GET /healthz")
            for round_ in range(1, args.rounds + 1):
                for name, (_proc, url) in servers.items():
                    rps, p50, p99 = wrk(url, args.seconds, args.connections)
                    results[name].append(rps)
                    print(
                        f"round {round_}  {name:<13} {rps:9.0f} req/s  p50 {p50:>8}  p99 {p99:>8}"
                    )
            mean = {name: sum(r) / len(r) for name, r in results.items()}
            print(
                f"mean: with {mean['with metrics']:.0f} req/s, without {mean['without']:.0f} "
                f"req/s, ratio {mean['with metrics'] / mean['without']:.3f}"
            )
        finally:
            for proc, _url in servers.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
