"""Storm benchmark: N users at once, each doing hubtraf's flow against a real Notebench.

    .venv/bin/python bench/spawn/bench_storm.py [--users 100] [--ramp-seconds 0]

hubtraf (JupyterHub's load generator) is not installable here, so this is its flow, written with
asyncio + aiohttp (one cookie jar per user, as N browsers):

1. login:  GET /hub/login, POST the login form (username, password, _xsrf) -> 302 + hub cookie.
2. spawn:  GET /hub/spawn (the profile form), POST it with the profile checked by default, as a
           browser does -> /hub/spawn-pending/<u>; read the progress event stream the pending page
           listens to until `ready`; follow /user/<u>/lab's redirects through the OAuth handshake
           with the hub (authorize -> /user/<u>/oauth_callback, which sets the server's cookie);
           then GET /user/<u>/api/status with that cookie until it answers 200.
3. lab:    GET /user/<u>/lab and the assets the page names (its <script>/<link> URLs and the
           prebuilt extensions' remoteEntry files from its page config), all at once.
4. kernel: POST /user/<u>/api/kernels (with the server's XSRF cookie as X-XSRFToken), open
           /api/kernels/<id>/channels as a websocket (on a connection of its own, as a browser
           does), send an execute_request for `print(6*7)`, wait for the stdout stream "42" and an
           execute_reply with status ok.
   -- all users up and idle: USS and PSS of each single-user server (alone, and USS with its
      kernel), found by its working directory (the user's home), and the warm process's USS --
5. stop:   DELETE /hub/api/users/<u>/server (the user's cookie + X-XSRFToken, as the hub's home
           page does), then GET /hub/api/users/<u> until the server is gone.

The steps run as phases: every user finishes (or fails) step k before any starts step k+1, so
the hub's CPU can be given per login and per spawn. --ramp-seconds spreads the users' starts of
each phase over that many seconds (0: all at once). A user's total is the sum of its own steps
(not the waits for the others). A failed step is counted with its error; that user skips to
step 5 (if it got as far as spawning); its error names the request it was at. Everything is
stopped at the end, also on Ctrl-C. Then the servers' log lines about kernels are counted (see
KERNEL_LOG).

The users (storm-000 ...) are created with passwords set by the admin on the hub's
change-password page, and their OS accounts (as root) are made, before the clock starts.

Figures only, no pass/fail; see bench/README.md ("Storm").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import unescape
from pathlib import Path
from urllib.parse import urljoin, urlparse

import aiohttp
import psutil
from bench_spawn import IS_ROOT, Account, loadavg, machine, pct, settle  # also puts the repo on sys.path
from yarl import URL

from tests.support.accounts import set_password
from tests.support.launcher import Hub, lab_page_config

CODE, EXPECTED = "print(6*7)", "42"
STEPS = ["login", "spawn", "lab", "kernel", "stop"]


# --- one user: hubtraf's flow ----------------------------------------------------------------


class StepFailed(Exception):
    pass


@dataclass
class User:
    name: str
    password: str
    home: str = ""  # its server's working directory: how the server process is found
    seconds: dict = field(default_factory=dict)  # step -> seconds (succeeded steps only)
    errors: dict = field(default_factory=dict)  # step -> error (failed steps)
    spawned: bool = False  # a spawn was asked for: stop it at the end
    hub_xsrf: str = ""
    lab_bytes: int = 0
    lab_files: int = 0
    session: aiohttp.ClientSession | None = None
    last_request: str = ""  # for the errors: the request the user was at, and on which connection

    @property
    def ok(self) -> bool:
        return not self.errors


def form_xsrf(text: str) -> str:
    m = re.search(r'name="_xsrf" value="([^"]+)"', text)
    return unescape(m.group(1)) if m else ""


class Flow:
    def __init__(self, hub_url: str, timeout: float):
        self.hub = hub_url
        self.timeout = timeout  # per step

    def t(self, seconds: float | None = None) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=seconds or self.timeout, sock_connect=60)

    async def expect(self, resp: aiohttp.ClientResponse, *codes: int) -> str:
        text = await resp.text(errors="replace")
        if resp.status not in codes:
            raise StepFailed(f"{resp.method} {resp.url.path} answered {resp.status}: {text[:160]!r}")
        return text

    async def login(self, u: User) -> None:
        s = u.session
        async with s.get(f"{self.hub}/hub/login", timeout=self.t()) as r:
            page = await self.expect(r, 200)
        data = {"username": u.name, "password": u.password, "_xsrf": form_xsrf(page)}
        async with s.post(f"{self.hub}/hub/login?next=", data=data, allow_redirects=False, timeout=self.t()) as r:
            await self.expect(r, 302)  # 200 is the form again: refused

    async def spawn(self, u: User) -> None:
        s = u.session
        async with s.get(f"{self.hub}/hub/spawn", timeout=self.t()) as r:
            page = await self.expect(r, 200)
        # The hub's pages carry the XSRF token for their scripts (jhdata); the spawn form's action
        # URL carries it as ?_xsrf=.
        token = re.search(r'xsrf_token: "([^"]+)"', page)
        u.hub_xsrf = unescape(token.group(1)) if token else ""
        action = re.search(r'<form[^>]*id="spawn_form"[^>]*action="([^"]+)"', page, re.S)
        checked = re.search(r'name="profile" value="([^"]+)" checked', page)
        form = {"profile": checked.group(1) if checked else ""}
        post_url = urljoin(f"{self.hub}/hub/spawn", unescape(action.group(1))) if action else f"{self.hub}/hub/spawn"
        u.spawned = True
        async with s.post(post_url, data=form, allow_redirects=False, timeout=self.t()) as r:
            await self.expect(r, 302)
        # What the spawn-pending page's EventSource does (skipped by the hub when already ready).
        progress = f"{self.hub}/hub/api/users/{u.name}/server/progress"
        async with s.get(progress, timeout=self.t()) as r:
            await self.expect_stream(r)
            async for raw in r.content:
                line = raw.decode(errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("failed"):
                    raise StepFailed(f"spawn failed: {event.get('message')}")
                if event.get("ready"):
                    break
            else:
                raise StepFailed("progress stream ended before ready")
        await self.oauth(u)
        deadline = time.monotonic() + self.timeout
        while True:
            async with s.get(f"{self.hub}/user/{u.name}/api/status", allow_redirects=False, timeout=self.t(60)) as r:
                if r.status == 200:
                    return
                last = f"{r.status}: {(await r.text(errors='replace'))[:120]!r}"
            if time.monotonic() > deadline:
                raise StepFailed(f"/user/{u.name}/api/status still {last}")
            await asyncio.sleep(0.1)

    async def expect_stream(self, r: aiohttp.ClientResponse) -> None:
        if r.status != 200:
            raise StepFailed(f"GET {r.url.path} answered {r.status}: {(await r.text(errors='replace'))[:160]!r}")

    async def oauth(self, u: User) -> None:
        """Follow /user/<u>/lab's redirects until the server's oauth_callback has set its cookie
        (without loading the page itself: that is step 3)."""
        url = f"{self.hub}/user/{u.name}/lab"
        for _hop in range(10):
            async with u.session.get(url, allow_redirects=False, timeout=self.t()) as r:
                await r.read()
                if r.status == 200:
                    return  # already logged in to the server
                if r.status not in (301, 302, 303, 307):
                    raise StepFailed(f"GET {r.url.path} answered {r.status} during the OAuth handshake")
                was_callback = r.url.path.endswith("/oauth_callback")
                url = urljoin(str(r.url), r.headers["Location"])
            if was_callback:
                return
        raise StepFailed("too many redirects in the OAuth handshake")

    async def lab(self, u: User) -> None:
        s = u.session
        base = f"{self.hub}/user/{u.name}"
        async with s.get(f"{base}/lab", timeout=self.t()) as r:
            page = await self.expect(r, 200)
        page_url = str(r.url)
        assets = set()
        for m in re.finditer(r'<(?:script|link)[^>]*?(?:src|href)="([^"]+)"', page):
            link = urljoin(page_url, unescape(m.group(1)))
            if urlparse(link).netloc == urlparse(page_url).netloc:
                assets.add(link)
        cfg = lab_page_config(page)
        ext_url = cfg.get("fullLabextensionsUrl", f"/user/{u.name}/lab/extensions")
        for ext in cfg.get("federated_extensions", []):
            assets.add(f"{self.hub}{ext_url}/{ext['name']}/{ext['load']}")
        u.lab_bytes = len(page.encode())

        async def fetch(link):
            async with s.get(link, timeout=self.t()) as r:
                body = await r.read()
                if r.status != 200:
                    raise StepFailed(f"GET {r.url.path} answered {r.status}")
                return len(body)

        sizes = await asyncio.gather(*(fetch(a) for a in sorted(assets)))
        u.lab_bytes += sum(sizes)
        u.lab_files = 1 + len(sizes)

    def server_xsrf(self, u: User) -> str:
        cookies = u.session.cookie_jar.filter_cookies(URL(f"{self.hub}/user/{u.name}/"))
        return cookies["_xsrf"].value if "_xsrf" in cookies else ""

    async def kernel(self, u: User) -> None:
        s = u.session
        base = f"{self.hub}/user/{u.name}"
        headers = {"X-XSRFToken": self.server_xsrf(u)}
        async with s.post(f"{base}/api/kernels", json={}, headers=headers, timeout=self.t()) as r:
            text = await self.expect(r, 201)
        kernel_id = json.loads(text)["id"]
        session_id = uuid.uuid4().hex
        ws_url = f"{base}/api/kernels/{kernel_id}/channels?session_id={session_id}".replace("http", "ws", 1)
        msg_id = uuid.uuid4().hex
        request = {
            "header": {"msg_id": msg_id, "username": u.name, "session": session_id, "msg_type": "execute_request",
                       "version": "5.3", "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
            "content": {"code": CODE, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }
        # As in a browser, the websocket gets a connection of its own, not one kept alive from the
        # earlier requests: configurable-http-proxy closes those after 5 s idle, and a client busy
        # with 100 users can pick one before it has seen it closed ("Server disconnected").
        async with (
            aiohttp.ClientSession(cookie_jar=s.cookie_jar, trace_configs=[tracing(u)]) as own,
            own.ws_connect(ws_url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=10), max_msg_size=0) as ws,
        ):
            await ws.send_json(request)
            stdout, reply = "", None
            deadline = time.monotonic() + self.timeout
            while reply is None or EXPECTED not in stdout:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StepFailed(f"no execute_reply/output in {self.timeout:.0f}s (stdout {stdout!r})")
                msg = await ws.receive(timeout=left)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise StepFailed(f"kernel websocket: {msg.type.name} {msg.data!r}")
                m = json.loads(msg.data)
                if m.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = m["header"]["msg_type"]
                if kind == "stream" and m["content"].get("name") == "stdout":
                    stdout += m["content"]["text"]
                elif kind == "execute_reply":
                    reply = m["content"]
                    if reply.get("status") != "ok":
                        raise StepFailed(f"execute_reply {reply.get('status')}: {reply.get('evalue', '')}")
            if stdout.strip() != EXPECTED:
                raise StepFailed(f"{CODE} printed {stdout!r}")

    async def stop(self, u: User) -> None:
        s = u.session
        url = f"{self.hub}/hub/api/users/{u.name}/server"
        headers = {"X-XSRFToken": u.hub_xsrf, "Referer": f"{self.hub}/hub/home"}
        async with s.delete(url, headers=headers, timeout=self.t()) as r:
            await self.expect(r, 202, 204)
        deadline = time.monotonic() + self.timeout
        while True:
            async with s.get(f"{self.hub}/hub/api/users/{u.name}", headers=headers, timeout=self.t(60)) as r:
                model = json.loads(await self.expect(r, 200))
            if "" not in model.get("servers", {}):
                return
            if time.monotonic() > deadline:
                raise StepFailed(f"server still there after {self.timeout:.0f}s: {model['servers']['']}")
            await asyncio.sleep(1.0)  # not faster: N users polling is load on the hub too


# --- the hub's processes -----------------------------------------------------------------------


def classify(proc: psutil.Process) -> str:
    """'hub', 'proxy', 'server' (a single-user server or its kernels), 'zygote' (the warm process
    servers are forked from), or 'service'."""
    try:
        cmd = " ".join(proc.cmdline())
        if "notebench.hub.server_zygote" in cmd:  # a fork keeps the warm process's cmdline and environ
            return "server" if "notebench.hub.server_zygote" in " ".join(proc.parent().cmdline()) else "zygote"
    except psutil.Error:
        return "gone"
    if "configurable-http-proxy" in cmd:
        return "proxy"
    if "jupyterhub-singleuser" in cmd or "jupyterhub.singleuser" in cmd or "ipykernel" in cmd:
        return "server"
    if "-m jupyterhub" in cmd or "notebench.hub.cli" in cmd:
        return "hub"  # JupyterHub itself, and `notebench up`'s supervisor
    try:
        if "JUPYTERHUB_USER" in proc.environ() and "JUPYTERHUB_SERVICE_NAME" not in proc.environ():
            return "server"  # a server started by another command (c.Spawner.cmd)
    except psutil.Error:
        pass
    return "service"


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_by_kind(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of the processes now in the hub's tree, by kind."""
    out: dict[str, float] = {}
    for p in tree(pid):
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        kind = classify(p)
        out[kind] = out.get(kind, 0.0) + t.user + t.system
    return out


def server_memory(pid: int, homes: set[str]) -> dict[str, list[float]]:
    """USS and PSS (MB) of each single-user server process running in one of ``homes`` (its
    working directory: a forked server shows the warm process's cmdline and environ), and its USS
    with its children (kernels). A forked server shares the pages of the code imported before
    the fork with the warm process and its siblings: USS leaves them out, PSS counts a share."""
    out: dict[str, list[float]] = {"alone": [], "with_kernel": [], "pss": []}
    for p in tree(pid):
        try:
            if classify(p) != "server" or "ipykernel" in " ".join(p.cmdline()) or p.cwd() not in homes:
                continue
            mem = p.memory_full_info()
            kids = 0
            for c in p.children(recursive=True):
                try:
                    kids += c.memory_full_info().uss
                except psutil.Error:
                    pass
        except psutil.Error:
            continue
        out["alone"].append(mem.uss / 2**20)
        out["with_kernel"].append((mem.uss + kids) / 2**20)
        out["pss"].append(mem.pss / 2**20)
    return out


# --- the storm ---------------------------------------------------------------------------------


async def phase(step: str, users: list[User], flow: Flow, ramp: float) -> float:
    """Run ``step`` for every user still ok (step 'stop': every user that asked for a spawn),
    the starts spread over ``ramp`` seconds; returns the phase's wall time."""
    todo = [u for u in users if (u.spawned if step == "stop" else u.ok)]
    t0 = time.perf_counter()

    async def one(i: int, u: User) -> None:
        if ramp and len(todo) > 1:
            await asyncio.sleep(ramp * i / (len(todo) - 1))
        start = time.perf_counter()
        try:
            await getattr(flow, step)(u)
            u.seconds[step] = time.perf_counter() - start
            if step == "stop":
                u.spawned = False
        except Exception as e:  # noqa: BLE001 - a failure is a figure here
            u.errors[step] = f"{type(e).__name__}: {e} (at {u.last_request})"[:400]

    await asyncio.gather(*(one(i, u) for i, u in enumerate(todo)))
    return time.perf_counter() - t0


def tracing(u: User) -> aiohttp.TraceConfig:
    """Keeps ``u.last_request``: the request a user is at, and whether it went on a new connection
    or one kept alive from an earlier request."""
    trace = aiohttp.TraceConfig()

    async def started(session, ctx, params):
        u.last_request = f"{params.method} {params.url.path}"

    async def new_connection(session, ctx, params):
        u.last_request += " (new connection)"

    async def reused_connection(session, ctx, params):
        u.last_request += " (kept-alive connection)"

    trace.on_request_start.append(started)
    trace.on_connection_create_end.append(new_connection)
    trace.on_connection_reuseconn.append(reused_connection)
    return trace


async def storm(hub: Hub, users: list[User], args) -> dict:
    flow = Flow(hub.url, args.step_timeout)
    hub_pid = hub.proc.pid
    out: dict = {"phases": {}, "cpu": {}}
    for u in users:
        # unsafe: the hub is at 127.0.0.1, and aiohttp keeps no cookies of IP hosts otherwise.
        u.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), trace_configs=[tracing(u)])
    try:
        t_all = time.perf_counter()
        for step in STEPS:
            if step == "stop":
                await asyncio.sleep(args.idle_seconds)  # let the servers settle to idle
                memory = server_memory(hub_pid, {u.home for u in users if u.ok})
                zygote = [p.memory_full_info().uss / 2**20 for p in tree(hub_pid) if classify(p) == "zygote"]
                out["memory"] = {"servers": len(memory["alone"]), **memory, "zygote_uss": zygote}
                out["load_all_up"] = loadavg()
                out["processes"] = dict(Counter(classify(p) for p in tree(hub_pid)))
                print(f"   all up: {len(memory['alone'])} servers measured, load {out['load_all_up']}", flush=True)
            before = cpu_by_kind(hub_pid)
            wall = await phase(step, users, flow, args.ramp_seconds)
            after = cpu_by_kind(hub_pid)
            out["phases"][step] = wall
            out["cpu"][step] = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in ("hub", "proxy", "service")}
            done = sum(1 for u in users if step in u.seconds)
            print(f"   {step:<6} {wall:6.1f}s  ok {done}/{len(users)}  load {loadavg()}", flush=True)
        out["wall"] = time.perf_counter() - t_all
    finally:
        # Ctrl-C or a crash: stop whatever is still running, through the API as admin (hub.stop() too).
        leftovers = [u for u in users if u.spawned]
        if leftovers:
            print(f"   {len(leftovers)} servers still up: stopped with the hub", flush=True)
        for u in users:
            if u.session is not None:
                await u.session.close()
    return out


# What the user servers' logs (in the hub's log) say about their kernels. A kernel's ports on TCP
# are picked by its server beforehand (bind to port 0, close); 100 servers picking 5 each on one
# loopback pick the same port now and then, and the kernel that binds second fails: at its shell
# or control port it exits (restarted on the same ports, given up after 5), at its iopub port it
# stays up answering nothing. Either way its websocket ends after jupyter_server's kernel_info
# timeouts (2 x 60 s) and configurable-http-proxy writes "HTTP/1.1 503" into the upgraded stream.
KERNEL_LOG = {
    "kernels on TCP": "Kernel is running over TCP",  # ipykernel says so at every start on TCP
    "binds refused (port in use)": "Address already in use",
    "kernels given up": "KernelRestarter: restart failed",
    "kernel_info timeouts": "Timeout waiting for kernel_info reply",
    "503s on kernel websockets": "/channels read ECONNRESET",
}


def kernel_log(log_text: str) -> dict[str, int]:
    return {what: log_text.count(needle) for what, needle in KERNEL_LOG.items()}


def prepare_users(hub: Hub, n: int, homes: Path) -> list[User]:
    admin = hub.browser_login("admin", hub.admin_password)
    users = []
    for i in range(n):
        u = User(f"storm-{i:03d}", f"storm-pw-{i:03d}-{os.urandom(4).hex()}")
        hub.new_user(u.name)
        r = set_password(hub, u.name, u.password, session=admin)
        if r.status_code != 200 or "changed successfully" not in r.text:
            raise RuntimeError(f"could not set {u.name}'s password: {r.status_code} {r.text[:200]}")
        u.home = Account(u.name, homes).home  # the OS account exists beforehand, as in a class set up the day before
        users.append(u)
    return users


# --- report ------------------------------------------------------------------------------------


def stats(values: list[float]) -> str:
    if not values:
        return "   -      -   "
    return f"{pct(values, 50):6.2f} {pct(values, 95):6.2f}"


def report(users: list[User], result: dict, info: dict, args) -> None:
    n = len(users)
    print("\n" + "=" * 100)
    print(f"storm benchmark  {info['date']}  nproc={info['nproc']}  cpu={info['cpu']}  RAM {info['ram_gb']:.0f} GB  "
          f"users={n} ramp={args.ramp_seconds}s  {'root: per-user OS accounts' if IS_ROOT else 'not root'}")
    print(info["versions"])
    print(f"load average before / all up / after: {result.get('load_before')} / {result.get('load_all_up')} / "
          f"{result.get('load_after')}")
    print(f"{'step':<8} {'p50':>6} {'p95':>6} {'max':>6} {'ok':>5} {'fail':>4} {'phase wall':>10}   seconds per user")
    for step in STEPS:
        vals = [u.seconds[step] for u in users if step in u.seconds]
        fails = sum(1 for u in users if step in u.errors)
        print(f"{step:<8} {stats(vals)} {max(vals) if vals else 0:6.2f} {len(vals):>5} {fails:>4} "
              f"{result['phases'].get(step, 0):9.1f}s")
    totals = [sum(u.seconds.values()) for u in users if u.ok]
    print(f"{'total':<8} {stats(totals)} {max(totals) if totals else 0:6.2f} {len(totals):>5} "
          f"{n - len(totals):>4} {result.get('wall', 0):9.1f}s   (total: a user's own steps; wall: all {n})")
    errors = [(u.name, step, e) for u in users for step, e in u.errors.items()]
    if errors:
        print(f"failures: {len(errors)} (users that failed a step: {sum(1 for u in users if u.errors)}); first errors:")
        for name, step, e in errors[:5]:
            print(f"  {name} at {step}: {e}")
    cpu = result["cpu"]
    print("hub-side CPU seconds per step (hub = JupyterHub + `notebench up`; proxy = configurable-http-proxy):")
    for step in STEPS:
        c = cpu.get(step, {})
        k = sum(1 for u in users if step in u.seconds) or 1
        print(f"  {step:<7} hub {c.get('hub', 0):6.2f}s  proxy {c.get('proxy', 0):5.2f}s  services {c.get('service', 0):5.2f}s"
              f"   -> hub+proxy per user {(c.get('hub', 0) + c.get('proxy', 0)) / k:5.3f}s")
    mem = result.get("memory", {})
    if mem.get("alone"):
        a, k, pss = mem["alone"], mem["with_kernel"], mem["pss"]
        print(f"memory per idle server (USS, {mem['servers']} servers, all up): server alone median "
              f"{statistics.median(a):.0f} MB, max {max(a):.0f} MB; with its kernel median "
              f"{statistics.median(k):.0f} MB, max {max(k):.0f} MB; server PSS median {statistics.median(pss):.0f} MB"
              + (f"; the warm process they fork from: {mem['zygote_uss'][0]:.0f} MB USS" if mem.get("zygote_uss") else ""))
    lab = [u for u in users if "lab" in u.seconds]
    if lab:
        print(f"JupyterLab: the page and {lab[0].lab_files - 1} assets per user, "
              f"{statistics.median(u.lab_bytes for u in lab) / 2**10:.0f} KiB uncompressed (main.js's lazily loaded "
              "chunks, several MB, are not fetched: that takes running the page's JavaScript)")
    if result.get("kernel_log"):
        print("the servers' logs: " + ", ".join(f"{k} {v}" for k, v in result["kernel_log"].items()))
    if result.get("processes"):
        print("processes in the hub's tree with all servers up: "
              + ", ".join(f"{k} {v}" for k, v in sorted(result["processes"].items())))
    print("=" * 100, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100, help="users at once (default 100)")
    parser.add_argument("--ramp-seconds", type=float, default=0.0, help="spread each step's starts over this (default 0)")
    parser.add_argument("--step-timeout", type=float, default=900.0, help="per user and step, seconds (default 900)")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="wait before measuring idle memory (default 5)")
    parser.add_argument("--hub-config", help="a file of more hub config lines (e.g. c.Spawner.start_timeout = 600)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the hub's data dir and log")
    args = parser.parse_args(argv)

    info = machine()
    info["ram_gb"] = psutil.virtual_memory().total / 2**30
    print(f"storm benchmark: {args.users} users on {info['nproc']} CPUs, {info['ram_gb']:.0f} GB RAM, "
          f"load {loadavg()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="nb-bench-storm-"))
    os.chmod(workdir, 0o755)
    data_dir = workdir / "data"
    config = "# bench/spawn/bench_storm.py: Notebench as shipped, plus --hub-config\n"
    if args.hub_config:
        config += Path(args.hub_config).read_text()
    hub = Hub(data_dir, config=config)
    users: list[User] = []
    result: dict = {}
    failed = interrupted = False
    try:
        t0 = time.perf_counter()
        hub.start()
        print(f"   hub up in {time.perf_counter() - t0:.1f}s at {hub.url} (log: {hub.log_path})", flush=True)
        settle(hub)
        t0 = time.perf_counter()
        users = prepare_users(hub, args.users, data_dir / "homes")
        print(f"   {len(users)} users with passwords (and OS accounts) in {time.perf_counter() - t0:.1f}s", flush=True)
        load_before = loadavg()
        result = asyncio.run(storm(hub, users, args))
        result["load_before"], result["load_after"] = load_before, loadavg()
    except BaseException as e:
        failed, interrupted = True, isinstance(e, KeyboardInterrupt)
        print(f"   storm interrupted: {type(e).__name__}: {str(e)[:2000]}", flush=True)
        if not isinstance(e, (Exception, KeyboardInterrupt)):
            raise
    finally:
        t0 = time.perf_counter()
        try:
            hub.stop()  # stops every server still running (Ctrl-C, failures), then the hub
        except Exception as e:  # noqa: BLE001 - still take the hub down
            print(f"   stopping servers: {e}; terminating the hub (JupyterHub stops its servers)", flush=True)
            hub.stop(stop_servers=False)
        print(f"   hub stopped in {time.perf_counter() - t0:.1f}s", flush=True)
        if result and hub.log_path.exists():
            result["kernel_log"] = kernel_log(hub.log_path.read_text(errors="replace"))
        failed = failed or any(not u.ok for u in users)
        if args.keep or failed:
            print(f"kept {workdir} (hub log: {hub.log_path})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if result:
        report(users, result, info, args)
        if args.json:
            Path(args.json).write_text(json.dumps({
                "machine": info, "args": vars(args), "result": result,
                "users": [{"name": u.name, "seconds": u.seconds, "errors": u.errors} for u in users],
            }, indent=1))
    return 130 if interrupted else 0 if result else 1


if __name__ == "__main__":
    sys.exit(main())
