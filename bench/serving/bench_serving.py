"""Model serving: deploy→ready time, and invocations through the router vs the scoring server
directly vs ``mlflow models serve --env-manager local``, in one run.

    .venv/bin/python bench/serving/bench_serving.py [--deploys 6] [--requests 2000] [--seconds 10] [--concurrency 8]

Starts its own Notebench (tests/support/launcher.Hub), registers a scikit-learn model as one user
(tests/support/registry.py) and prints, with medians:

- deploy→ready: POST /api/endpoints (one version) until GET says ready, for --deploys endpoints
  one after the other, --deploy-pause seconds apart (each deleted after). The first deploy of a
  user has no warm scoring process yet (cold); the others find the one the previous deploy had
  started (the product's normal path; back to back, a deploy waits for that process's imports);
  then the first deploy of a second user --deploy-pause seconds after listing endpoints (as the
  Models panel does when it opens, which prepares a warm scoring process);
- latency p50/p99 of --requests invocations one after another on one kept-alive connection (in
  --rounds rounds, the targets taking turns), and
  throughput (requests/s) with --concurrency connections for --seconds, against:
  router (proxy): the invocation URL through the hub's public port (configurable-http-proxy + router);
  router: the executor's own port (the router alone);
  direct: the endpoint's scoring server, on its Unix socket;
  mlflow serve: ``mlflow models serve -m models:/<model>/1 --env-manager local --workers 1``.
  Also the executor's CPU time per request (the router's own work, whatever the scheduling).
  Router overhead = p50(router) - p50(direct) (the median of the per-round differences); the
  goals: ≤ 1 ms, and throughput ≥ 0.9× direct.
- monitoring's cost on the router: the same endpoint and scoring server with its ``monitoring``
  off and on (a PATCH between rounds; off, no request is sampled and no prediction kept), in
  --monitoring-rounds rounds of sequential requests at the executor's port, taking turns; the
  cost is the median over rounds of p50(on) - p50(off). Goal: ≤ 0.2 ms.

The client is one asyncio process (aiohttp); it shares the machine's cores with what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # tests.support (the helpers the tests use too)

from tests.support.launcher import Hub, free_port, wait_for  # noqa: E402
from tests.support.registry import register_model  # noqa: E402

CONFIG = "c.GPUInventory.devices = []\n"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def deploy_and_wait(hub: Hub, token: str, name: str, model: str) -> float:
    started = time.perf_counter()
    r = hub.executor("POST", "endpoints", token, json={"name": name, "versions": [{"model": model, "version": "1", "weight": 100}]})
    r.raise_for_status()

    def ready():
        endpoint = hub.executor("GET", f"endpoints/{name}", token).json()
        if endpoint["status"] == "failed":
            raise SystemExit(f"deploy failed: {endpoint['reason']}")
        return endpoint["status"] == "ready"

    wait_for(ready, 300, interval=0.01, message=f"{name} ready")
    return time.perf_counter() - started


async def latencies(session: aiohttp.ClientSession, url: str, headers: dict, body: bytes, n: int) -> list[float]:
    times = []
    for i in range(n + 20):  # the first 20 warm up
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise SystemExit(f"{url}: {r.status} {await r.text()}")
        if i >= 20:
            times.append((time.perf_counter() - started) * 1000)
    return times


async def throughput(make_session, url: str, headers: dict, body: bytes, seconds: float, concurrency: int) -> float:
    done = 0
    end = time.perf_counter() + seconds

    async def client():
        nonlocal done
        async with make_session() as session:
            while time.perf_counter() < end:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise SystemExit(f"{url}: {r.status}")
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def measure(targets: dict, body: bytes, args) -> dict:
    """Latency in --rounds rounds, the targets taking turns (so that a change in the machine's load
    hits them alike), then throughput of each."""
    times = {label: [] for label in targets}
    round_p50 = {label: [] for label in targets}
    cpu_ms = {label: 0.0 for label in targets}  # the executor's CPU time (the router's work)
    sessions = {label: make_session() for label, (make_session, _, _) in targets.items()}
    try:
        for _ in range(args.rounds):
            for label, (_, url, headers) in targets.items():
                cpu = sum(args.executor.cpu_times()[:2])
                batch = await latencies(sessions[label], url, headers, body, args.requests // args.rounds)
                cpu_ms[label] += (sum(args.executor.cpu_times()[:2]) - cpu) * 1000
                times[label] += batch
                round_p50[label].append(statistics.median(batch))
    finally:
        for session in sessions.values():
            await session.close()
    results = {}
    for label, (make_session, url, headers) in targets.items():
        rps = await throughput(make_session, url, headers, body, args.seconds, args.concurrency)
        q = statistics.quantiles(times[label], n=100)
        results[label] = {"p50": statistics.median(times[label]), "p99": q[98], "rps": rps, "round_p50": round_p50[label]}
        print(f"  {label:16} p50 {results[label]['p50']:.3f} ms  p99 {q[98]:.3f} ms  {rps:.0f} req/s  "
              f"executor CPU {cpu_ms[label] / len(times[label]):.3f} ms/request  (load {load()})", flush=True)
    return results


def overhead(results: dict, label: str) -> float:
    """Median over rounds of p50(label) - p50(direct) in the same round."""
    return statistics.median(a - b for a, b in zip(results[label]["round_p50"], results["direct"]["round_p50"]))


def set_monitoring(hub: Hub, token: str, name: str, model: str, on: bool) -> None:
    """PATCH the endpoint's monitoring (same version: the same scoring server goes on) and wait until ready."""
    r = hub.executor("PATCH", f"endpoints/{name}", token,
                     json={"versions": [{"model": model, "version": "1", "weight": 100}], "monitoring": on})
    r.raise_for_status()
    wait_for(lambda: hub.executor("GET", f"endpoints/{name}", token).json()["status"] == "ready", 300, interval=0.01,
             message=f"{name} ready")


async def monitoring_cost(hub: Hub, token: str, name: str, model: str, url: str, headers: dict, body: bytes, args) -> None:
    p50 = {False: [], True: []}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for _ in range(args.monitoring_rounds):
            for on in (False, True):
                await asyncio.to_thread(set_monitoring, hub, token, name, model, on)
                batch = await latencies(session, url, headers, body, args.requests // args.rounds)
                p50[on].append(statistics.median(batch))
    cost = statistics.median(b - a for a, b in zip(p50[False], p50[True]))
    print(f"monitoring: router p50 off {statistics.median(p50[False]):.3f} ms, on {statistics.median(p50[True]):.3f} ms; "
          f"cost {cost:.3f} ms (median over {args.monitoring_rounds} rounds of on - off; load {load()})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploys", type=int, default=6)
    parser.add_argument("--deploy-pause", type=float, default=10, help="seconds between deploys (as a user clicks)")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--monitoring-rounds", type=int, default=8)
    args = parser.parse_args()

    print(f"nproc {os.cpu_count()}, load average {load()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    hub = Hub(tmp / "data", config=CONFIG).start()
    serve = None
    try:
        user = f"bench-{os.urandom(3).hex()}"
        token = hub.new_user(user)
        model = f"bench-{os.urandom(3).hex()}"
        payload = register_model(hub.url, token, model)
        body = json.dumps(payload).encode()

        times = []
        for i in range(args.deploys):
            if i:
                time.sleep(args.deploy_pause)  # the warm process the last deploy asked for gets imported meanwhile
            name = f"deploy-{i}-{model}"
            times.append(deploy_and_wait(hub, token, name, model))
            hub.executor("DELETE", f"endpoints/{name}", token).raise_for_status()
        warm = statistics.median(times[1:]) if len(times) > 1 else float("nan")
        print(f"deploy→ready: first of the user (cold) {times[0]:.2f} s, then ({args.deploy_pause:.0f} s apart) median "
              f"{warm:.2f} s ({', '.join(f'{t:.2f}' for t in times[1:])}); load {load()}", flush=True)

        # A user's first deploy from the Models panel: the panel lists endpoints when it opens.
        panel_user = f"bench-{os.urandom(3).hex()}"
        panel_token = hub.new_user(panel_user)
        panel_model = f"bench-{os.urandom(3).hex()}"
        register_model(hub.url, panel_token, panel_model)
        hub.executor("GET", "endpoints", panel_token).raise_for_status()
        time.sleep(args.deploy_pause)  # filling in the deploy form
        first = deploy_and_wait(hub, panel_token, f"panel-{panel_model}", panel_model)
        hub.executor("DELETE", f"endpoints/panel-{panel_model}", panel_token).raise_for_status()
        print(f"deploy→ready: first of a user whose Models panel opened {args.deploy_pause:.0f} s before: {first:.2f} s; "
              f"load {load()}", flush=True)

        name = f"bench-{model}"
        deploy_and_wait(hub, token, name, model)
        with sqlite3.connect(hub.data_dir / "executor.sqlite") as db:
            handle = json.loads(db.execute(
                "SELECT s.handle FROM scoring_servers s JOIN endpoints e ON e.id = s.endpoint_id WHERE e.name = ?", (name,)
            ).fetchone()[0])
        executor_port = json.loads((hub.data_dir / "ports.json").read_text())["executor"]
        args.executor = next(p for p in psutil.process_iter(["cmdline"])
                             if p.info["cmdline"] and p.info["cmdline"][1:] == ["-m", "notebench.executor"]
                             and p.environ().get("NOTEBENCH_DATA_DIR") == str(hub.data_dir))

        port = free_port()
        serve_env = dict(os.environ, MLFLOW_TRACKING_URI=f"{hub.url}/services/mlflow", MLFLOW_TRACKING_TOKEN=token,
                         PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # it runs `uvicorn`
        serve = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", f"models:/{model}/1", "--env-manager", "local",
             "--workers", "1", "--host", "127.0.0.1", "--port", str(port)],
            env=serve_env, stdout=subprocess.DEVNULL, stderr=open(tmp / "mlflow-serve.log", "wb"), start_new_session=True,
        )
        wait_for(lambda: serve.poll() is None and requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200,
                 300, message=f"mlflow models serve ({tmp / 'mlflow-serve.log'})")

        auth = {"Authorization": f"token {token}", "Content-Type": "application/json"}
        plain = {"Content-Type": "application/json"}
        path = f"/services/executor/endpoints/{name}/invocations"
        tcp = lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))  # noqa: E731
        uds = lambda: aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=handle["socket"], limit=0))  # noqa: E731
        targets = {
            "router (proxy)": (tcp, f"{hub.url}{path}", auth),
            "router": (tcp, f"http://127.0.0.1:{executor_port}{path}", auth),
            "direct": (uds, "http://scoring-server/invocations", plain),
            "mlflow serve": (tcp, f"http://127.0.0.1:{port}/invocations", plain),
        }
        print(f"invocations: {args.requests} sequential in {args.rounds} rounds, then {args.concurrency} connections for {args.seconds:.0f} s", flush=True)
        results = asyncio.run(measure(targets, body, args))
        direct = results["direct"]
        print(f"router overhead p50 {overhead(results, 'router'):.3f} ms "
              f"(through the proxy {overhead(results, 'router (proxy)'):.3f} ms; median over rounds of the p50 differences); "
              f"throughput router/direct {results['router']['rps'] / direct['rps']:.2f}x, "
              f"proxy+router/direct {results['router (proxy)']['rps'] / direct['rps']:.2f}x, "
              f"mlflow serve/direct {results['mlflow serve']['rps'] / direct['rps']:.2f}x", flush=True)
        asyncio.run(monitoring_cost(hub, token, name, model, targets["router"][1], auth, body, args))
    finally:
        for endpoint in hub.executor("GET", "endpoints").json()["endpoints"]:  # scoring servers outlive the hub
            hub.executor("DELETE", f"endpoints/{endpoint['name']}")
        if serve is not None:
            os.killpg(serve.pid, signal.SIGTERM)
            serve.wait(30)
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"load average after {load()}", flush=True)


if __name__ == "__main__":
    main()
