"""Browser benchmark: from clicking Start to JupyterLab's launcher drawn in Chromium (issue 19).

    .venv/bin/python bench/spawn/bench_browser.py [--rounds 5] [--candidates gzip,immutable,defer,...]
        [--network MBIT:RTT_MS] [--variant cold] [--hub-config FILE] [--no-bare] [--json FILE] [--keep]

It starts a Notebench hub as bench_spawn.py does (`notebench up` through tests/support/launcher.py's
Hub, with bench_spawn's hub config text: hub_probe.py records hub-side timestamps; as root every
server runs as its user's own OS account), plus the lines of --hub-config if given. It makes the
user `bench-browser`, whose password the admin sets on the hub's change-password page, and runs
one warm-up round (not counted), then --rounds rounds of:

1. API: POST /hub/api/users/<u>/server with the user's token until GET /user/<u>/api/status answers
   200 through the proxy (bench_spawn.spawn_to_ready); the server is stopped through the API.
2. first visit: a fresh browser context (empty HTTP cache, no cookies) logs in on /hub/login (not
   timed) and opens /hub/home. The clock starts at the click on "Start My Server"; the spawn form
   (the profile choice, the default one checked) is submitted as soon as it shows; the clock stops
   when JupyterLab's launcher (`.jp-LauncherCard`) is drawn. Then the server is stopped (API).
3. bare: a bare `jupyter-lab` (same venv, same OS account and environment, LSP off as in the hub's
   servers) started; a fresh browser context opens its /lab?token=... until the launcher; stopped.
   The browser time of JupyterLab itself, without the hub (skipped with --no-bare).
4. API again (as 1).
5. repeat visit: the same context (its HTTP cache warm, still logged in) does 2 again.
6. bare again on the same port, from the same context (warm cache).

--candidates adds one user per candidate (CANDIDATES: a setting of the user's server, or the
Start link spawning at once), in the same hub: in each round every user makes its first visit (rotating order), then every user its repeat
visit, so that all see the same machine noise; each candidate is reported as the median over
rounds of its time / the plain user's time in the same round.

Milestones, in ms from the click, from the browser's own clocks (Playwright's request timing, the lab
document's navigation timing, and an init script: a MutationObserver that waits for the first
launcher card, then the next animation frame) and hub_probe's "route added" (the hub's spawn done).
Requests: those that started between the click and the launcher (Playwright's request events): how
many, bytes received (encoded body, Playwright's request.sizes()), by URL family, with their
Content-Encoding and Cache-Control, and how many Chromium took from its HTTP cache; how long, from
the lab page's first byte to the launcher, some request was in flight (the rest is the browser's
own work). CPU: how long Chromium's main thread was busy on the JupyterLab page until the launcher
(CDP Performance.getMetrics' TaskDuration) and the renderer process's CPU over the visit.
--network emulates a slower link in Chromium (loopback is not what a remote user has:
compression only pays off on a real link).

Figures only, no pass/fail. On a shared machine compare within one run (the ratios).
See bench/README.md, spawn section, "Browser: from Start to the launcher".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_spawn import (  # noqa: E402  (it also puts the repository on sys.path)
    IS_ROOT,
    NO_LSP,
    READY_TIMEOUT_S,
    VARIANTS,
    VENV_BIN,
    Account,
    loadavg,
    machine,
    pct,
    read_events,
    settle,
    spawn_to_ready,
    stop_servers,
)

from tests.support.accounts import set_password  # noqa: E402
from tests.support.launcher import Hub, free_port, wait_for  # noqa: E402

CHROMIUM = "/usr/bin/chromium"  # as the browser tests (tests/extension/conftest.py)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
USER = "bench-browser"


@dataclass
class Candidate:
    about: str
    args: list = field(default_factory=list)  # more flags of the user's server (hub_probe's per_user)
    files: dict = field(default_factory=dict)  # a Jupyter config dir of the server's own (JUPYTER_CONFIG_PATH)
    start_query: str = ""  # appended to the home page's Start link (the page is not changed otherwise)


# Plugins (or whole extensions) that draw nothing the first screen needs; deferred ones are
# activated right after JupyterLab has restored its layout (or earlier, when a startup plugin needs them).
DEFERRED = [
    "@jupyterlab/debugger-extension", "@jupyterlab/extensionmanager-extension", "@jupyterlab/pluginmanager-extension",
    "@jupyterlab/toc-extension", "@jupyterlab/lsp-extension", "@jupyterlab/logconsole-extension",
    "@jupyterlab/help-extension", "@jupyterlab/apputils-extension:announcements", "@jupyterlab/running-extension",
    "@jupyterlab/celltags-extension", "@jupyterlab/metadataform-extension", "@jupyterlab/workspaces-extension",
    "@jupyterlab/csvviewer-extension", "@jupyterlab/htmlviewer-extension", "@jupyterlab/markdownviewer-extension",
    "@jupyterlab/imageviewer-extension", "jupyterlab-notebench",
]

CANDIDATES = {
    "gzip": Candidate("the user's server compresses its responses (tornado's compress_response)",
                      args=["--ServerApp.tornado_settings=compress_response=True"]),
    "immutable": Candidate(
        "federated extensions' hashed files (lab/extensions/*/static) cached as immutable, as jupyterlab_server "
        "means to (its prefix lacks the base URL, so they are revalidated on every visit)",
        files={"jupyter_server_config.py": "import os\nc.LabApp.settings = {'static_immutable_cache': "
               "[os.environ['JUPYTERHUB_SERVICE_PREFIX'] + 'lab/extensions/']}\n"}),
    "defer": Candidate(
        "JupyterLab plugins that draw nothing at start deferred until the layout is restored "
        "(page_config deferredExtensions: the list DEFERRED above)",
        files={"labconfig/page_config.json": json.dumps({"deferredExtensions": DEFERRED})}),
    "nobuildcheck": Candidate(
        "no `lab/api/build` check (page_config buildCheck/buildAvailable false): a managed server never builds",
        files={"labconfig/page_config.json": json.dumps({"buildCheck": False, "buildAvailable": False})}),
    "noform": Candidate(
        "Start spawns the default profile at once: the home page's Start link gets `?profile=` (JupyterHub's "
        "GET /hub/spawn/<u>?<options>; an empty profile is the default one), no spawn form on the way",
        start_query="?profile="),
    "nopanels": Candidate(
        "Notebench's JupyterLab extension disabled (page_config disabledExtensions): what its panels "
        "(8 requests at start) cost the launcher at most",
        files={"labconfig/page_config.json": json.dumps({"disabledExtensions": {"jupyterlab-notebench": True}})}),
}

# Runs in every page before its own scripts: on JupyterLab's page, records (epoch ms) the first
# animation frame after the first launcher card is in the DOM.
LAUNCHER_PROBE = """
(() => {
  if (window.top !== window || !location.pathname.includes('/lab')) return;
  const observer = new MutationObserver(() => {
    if (window.__nbLauncherSeen || !document.querySelector('.jp-LauncherCard')) return;
    window.__nbLauncherSeen = true;
    observer.disconnect();
    requestAnimationFrame(() => { window.__nbLauncherAt = performance.timeOrigin + performance.now(); });
  });
  observer.observe(document, {childList: true, subtree: true});
})();
"""

MILESTONES = [
    ("form", "spawn form shown (GET /hub/spawn/<u>; the form is submitted at once)"),
    ("post", "POST of the form answered (JupyterHub holds it up to 1 s for the spawn)"),
    ("pending", "/hub/spawn-pending/<u> answered (302 when ready, else the progress page)"),
    ("route", "hub: server ready, proxy route added (hub_probe)"),
    ("oauth", "/user/<u>/oauth_callback answered (end of the OAuth redirects)"),
    ("lab_byte", "first byte of /user/<u>/lab (200)"),
    ("dcl", "JupyterLab page: DOMContentLoaded done"),
    ("load", "JupyterLab page: load event done"),
    ("launcher", "launcher card drawn"),
]


# --- one visit ----------------------------------------------------------------------------------


@dataclass
class Session:
    """One person's browser context, logged in to the hub."""

    user: str
    context: object
    page: object
    cdp: object  # the page's Chrome DevTools session (Performance metrics)
    requests: list = field(default_factory=list)
    recording: bool = False


def new_session(browser, user: str, network: str = "") -> Session:
    """A fresh browser context (empty cache, no cookies) with one page."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.add_init_script(LAUNCHER_PROBE)
    page = context.new_page()
    page.set_default_timeout(60_000)
    session = Session(user, context, page, context.new_cdp_session(page))
    session.cdp.send("Performance.enable")
    if network:  # "MBIT:RTT_MS": Chromium's own network emulation, for this tab
        mbit, rtt = (float(x) for x in network.split(":"))
        session.cdp.send("Network.enable")
        session.cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": rtt, "downloadThroughput": mbit * 1e6 / 8, "uploadThroughput": mbit * 1e6 / 8})
    context.on("request", lambda req: session.requests.append(req) if session.recording else None)
    return session


def log_in(browser, hub: Hub, user: str, password: str, network: str = "") -> Session:
    """A fresh browser context logged in to the hub through its login form."""
    session = new_session(browser, user, network)
    page = session.page
    page.goto(f"{hub.url}/hub/login")
    page.fill('input[name="username"]', user)
    page.fill('input[name="password"]', password)
    page.click('[type="submit"]')
    page.wait_for_url(re.compile(r"/hub/(home|spawn|spawn-pending)|/user/"))
    return session


def renderer_cpu(cdp) -> dict:
    """CDP Performance.getMetrics: ``main``, the main thread's busy time (TaskDuration) for the
    current document since it started (Chromium resets it per document); ``process``, the renderer
    process's CPU time since it started (all threads, across documents of the same site)."""
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {"main": metrics.get("TaskDuration", 0.0), "process": metrics.get("ProcessTime", 0.0)}


def in_flight_ms(rows: list[dict], a: float, b: float) -> float:
    """How much of [a, b] (ms) had at least one request in flight (union of the requests' intervals)."""
    spans = sorted((max(a, r["start"]), min(b, r["end"])) for r in rows if r["end"] is not None)
    total, cur_start, cur_end = 0.0, None, None
    for lo, hi in spans:
        if hi <= lo:
            continue
        if cur_end is None or lo > cur_end:
            total += (cur_end - cur_start) if cur_end is not None else 0.0
            cur_start, cur_end = lo, hi
        else:
            cur_end = max(cur_end, hi)
    return total + ((cur_end - cur_start) if cur_end is not None else 0.0)


def url_family(path: str, user: str) -> str:
    """Group a URL path: documents and API calls by name, static files by where they come from."""
    p = path.replace(f"/user/{user}/", "/user/<u>/").replace(f"/{user}", "/<u>")
    for prefix in ("/user/<u>/static/lab/", "/user/<u>/lab/extensions/", "/user/<u>/static/",
                   "/user/<u>/lab/api/", "/user/<u>/api/", "/user/<u>/notebench/", "/hub/static/", "/hub/api/"):
        if p.startswith(prefix):
            return prefix + "*"
    return p


def request_rows(requests_, t0: float, t_end: float, user: str) -> list[dict]:
    """One row per request started in [t0, t_end] (epoch ms): times in ms from t0, sizes, headers."""
    rows = []
    for req in requests_:
        timing = req.timing
        start = timing.get("startTime", -1)
        if start < t0 - 5 or start > t_end:
            continue
        resp = req.response()
        headers = resp.headers if resp else {}
        try:
            body = req.sizes()["responseBodySize"]
        except Exception:  # noqa: BLE001 - not finished (an event stream)
            body = 0
        first_byte, end = timing.get("responseStart", -1), timing.get("responseEnd", -1)
        path = urlparse(req.url).path
        rows.append({
            "path": path,
            "family": url_family(path, user),
            "method": req.method,
            "type": req.resource_type,
            "status": resp.status if resp else None,
            "start": start - t0,
            "first_byte": start + first_byte - t0 if first_byte >= 0 else None,
            "end": start + end - t0 if end >= 0 else None,
            # A body from Chromium's HTTP cache counts negative here (Playwright takes the headers'
            # size from no bytes received): no request reached the server.
            "body_bytes": max(0, body),
            "cached": body < 0,
            "encoding": headers.get("content-encoding", ""),
            "cache_control": headers.get("cache-control", ""),
        })
    return sorted(rows, key=lambda r: r["start"])


def first(rows: list[dict], pattern: str, key: str, status=None) -> float | None:
    for r in rows:
        if re.search(pattern, r["path"]) and (status is None or r["status"] in status) and r[key] is not None:
            return r[key]
    return None


def visit(s: Session, hub: Hub, events_file: Path, start_query: str = "") -> dict:
    """Click Start on /hub/home, submit the spawn form, wait for the launcher; ms from the click.
    With ``start_query`` the Start link gets it appended and there is no form to submit."""
    page, u = s.page, s.user
    page.goto(f"{hub.url}/hub/home")
    start_button = page.locator("#start")
    start_button.wait_for()
    if start_query:
        start_button.evaluate("(a, query) => { a.href = a.href + query; }", start_query)
    cpu0 = renderer_cpu(s.cdp)
    s.requests, s.recording = [], True
    t0 = time.time() * 1000
    start_button.click()
    t_form = None
    if not start_query:
        submit = page.locator('#spawn_form [type="submit"]')
        submit.wait_for()
        t_form = time.time() * 1000
        submit.click()
    v = until_launcher(s, t0, cpu0, f"/user/{u}")
    route = [e["t"] * 1000 for e in read_events(events_file)
             if e["user"] == u and e["event"] == "route_added" and t0 <= e["t"] * 1000 <= t0 + v["seconds"] * 1000]
    v["marks"].update({
        "form": t_form - t0 if t_form else None,
        "post": first(v["rows"], rf"^/hub/spawn/{u}$", "end", status=(302, 303)),
        "pending": first(v["rows"], rf"^/hub/spawn-pending/{u}$", "end"),
        "route": route[0] - t0 if route else None,
        "oauth": first(v["rows"], rf"^/user/{u}/oauth_callback", "end"),
    })
    v["from_submit"] = v["seconds"] - ((t_form - t0) / 1000 if t_form else 0.0)
    return v


def until_launcher(s: Session, t0: float, cpu0: dict, prefix: str) -> dict:
    """Wait for the launcher; the visit's figures from t0 (epoch ms). ``prefix``: the server's URL path."""
    page = s.page
    page.locator(".jp-LauncherCard").first.wait_for(timeout=READY_TIMEOUT_S * 1000)
    t_seen = time.time() * 1000  # when Playwright saw it (its polling adds a few ms)
    cpu1 = renderer_cpu(s.cdp)
    drawn = page.evaluate("window.__nbLauncherAt || null")
    if drawn is None:
        page.wait_for_function("window.__nbLauncherAt", timeout=5000)
        drawn = page.evaluate("window.__nbLauncherAt")
    nav = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0].toJSON();
                                   n.timeOrigin = performance.timeOrigin; return n; }""")
    s.recording = False
    rows = request_rows(s.requests, t0, drawn, s.user)
    marks = {name: None for name, _ in MILESTONES}
    marks.update({
        "lab_byte": first(rows, rf"^{prefix}/lab$", "first_byte", status=(200,)),
        "dcl": nav["timeOrigin"] + nav["domContentLoadedEventEnd"] - t0 if nav.get("domContentLoadedEventEnd") else None,
        "load": nav["timeOrigin"] + nav["loadEventEnd"] - t0 if nav.get("loadEventEnd") else None,
        "launcher": drawn - t0,
    })
    return {
        "seconds": (drawn - t0) / 1000,
        "marks": marks,
        "seen_by_playwright": t_seen - t0,
        "lab_main_thread_s": cpu1["main"],  # the JupyterLab document's, until the launcher
        "renderer_cpu_s": cpu1["process"] - cpu0["process"],  # the whole visit's
        # From the lab page's first byte to the launcher: the time some request was in flight.
        "lab_in_flight_ms": in_flight_ms(rows, marks["lab_byte"], marks["launcher"]) if marks["lab_byte"] else None,
        "requests": len(rows),
        "body_bytes": sum(r["body_bytes"] for r in rows),
        "cached": sum(r["cached"] for r in rows),
        "rows": rows,
    }


class BareLab:
    """The baseline without the hub: a bare `jupyter-lab` from the same venv, as the user's OS
    account with the spawner's environment (bench_spawn's bare start, LSP off as in the hub's
    servers), running until stopped."""

    def __init__(self, account: Account, port: int | None = None):
        self.port = port or free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(VENV_BIN / "jupyter-lab"), "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={account.home}",
               "--ServerApp.port_retries=0", *NO_LSP] + (["--allow-root"] if account.uid == 0 else [])
        self.proc = subprocess.Popen(cmd, env=account.env(), cwd=account.home, preexec_fn=account.preexec(),
                                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        headers = {"Authorization": f"token {self.token}"}

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"bare jupyter-lab exited with {self.proc.returncode}")
            return requests.get(f"{self.url}/api/status", headers=headers, timeout=10).status_code == 200

        try:
            wait_for(up, READY_TIMEOUT_S, interval=0.05, message="bare jupyter-lab")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def bare_visit(s: Session, lab: BareLab) -> dict:
    """Open the bare server's /lab (its token in the URL, as `jupyter lab` prints it) until the launcher."""
    cpu0 = renderer_cpu(s.cdp)
    s.requests, s.recording = [], True
    t0 = time.time() * 1000
    s.page.goto(f"{lab.url}/lab?token={lab.token}", wait_until="commit")
    v = until_launcher(s, t0, cpu0, "")
    s.page.goto("about:blank")
    return v


def stop(s: Session, hub: Hub) -> None:
    s.page.goto("about:blank")  # leave JupyterLab before its server goes (no reconnect attempts meanwhile)
    stop_servers(hub, [s.user])


# --- the run ------------------------------------------------------------------------------------


def hub_config(workdir: Path, events_file: Path, candidates: list[str], extra: str | None,
               variant: str = "product") -> str:
    """bench_spawn's hub config (hub_probe; a bench_spawn variant), each candidate's server flags and config dir."""
    users = {f"{USER}-{name}": CANDIDATES[name] for name in candidates}
    per_user = {u: {"args": c.args} for u, c in users.items() if c.args}
    config = VARIANTS[variant].hub_config(events_file, per_user)
    if any(c.files for c in users.values()):
        dirs = {}
        for u, c in users.items():
            for rel, text in c.files.items():
                path = workdir / "jupyter-config" / u / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            dirs[u] = str(workdir / "jupyter-config" / u)
        empty = workdir / "jupyter-config" / USER
        empty.mkdir(parents=True, exist_ok=True)
        config += (f"_bench_config_dirs = {dirs!r}\n"
                   "c.Spawner.environment = {'JUPYTER_CONFIG_PATH': "
                   f"lambda spawner: _bench_config_dirs.get(spawner.user.name, {str(empty)!r})}}\n")
    if extra:
        config += f"\n# --hub-config {extra}\n" + Path(extra).read_text()
    return config


def run(args, candidates: list[str], workdir: Path) -> dict:
    from playwright.sync_api import sync_playwright

    data_dir = workdir / "data"
    events_file = workdir / "events.jsonl"
    hub = Hub(data_dir, config=hub_config(workdir, events_file, candidates, args.hub_config, args.variant)).start()
    print(f"   hub up at {hub.url} (log: {hub.log_path})", flush=True)
    users = [USER] + [f"{USER}-{name}" for name in candidates]
    start_queries = {f"{USER}-{name}": CANDIDATES[name].start_query for name in candidates}
    out: dict = {"api": [], "users": {u: {"first": [], "repeat": []} for u in users},
                 "bare": {"first": [], "repeat": []}}
    try:
        settle(hub)
        token = hub.new_user(USER)
        admin = hub.browser_login("admin", hub.admin_password)
        passwords, accounts = {}, {}
        for u in users:
            if u != USER:
                hub.new_user(u)
            passwords[u] = "pw-" + secrets.token_hex(8)
            r = set_password(hub, u, passwords[u], session=admin)
            if r.status_code != 200 or "changed successfully" not in r.text:
                raise RuntimeError(f"could not set {u}'s password: {r.status_code} {r.text[:200]}")
            accounts[u] = Account(u, data_dir / "homes")  # the OS account exists beforehand
        out["load_before"] = loadavg()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                for i in range(args.rounds + 1):
                    order = users[i % len(users):] + users[:i % len(users)]
                    visits: dict = {u: {} for u in users}
                    bare: dict = {}
                    api = []
                    sessions = {}
                    bare_session, bare_port = None, None
                    for kind in ("first", "repeat"):
                        a = spawn_to_ready(hub, USER, token)
                        stop_servers(hub, [USER])
                        if a.seconds is None:
                            raise RuntimeError(f"API spawn failed: {a.error}")
                        api.append(a.seconds)
                        for u in order:
                            if kind == "first":
                                sessions[u] = log_in(browser, hub, u, passwords[u], args.network)
                            visits[u][kind] = visit(sessions[u], hub, events_file, start_queries.get(u, ""))
                            stop(sessions[u], hub)
                        if not args.no_bare:
                            bare_session = bare_session or new_session(browser, USER, args.network)
                            lab = BareLab(accounts[USER], port=bare_port)  # the same URL again: a warm cache
                            bare_port = lab.port
                            try:
                                bare[kind] = bare_visit(bare_session, lab)
                            finally:
                                lab.stop()
                    for s in [*sessions.values(), *([bare_session] if bare_session else [])]:
                        s.context.close()
                    label = "warm-up" if i == 0 else f"{i}/{args.rounds}"
                    print(f"   {label:>7}  api {api[0]:5.2f} {api[1]:5.2f} s   load {loadavg()}", flush=True)
                    for u in order:
                        print(f"            {u:<24} first {brief(visits[u]['first'])}   "
                              f"repeat {brief(visits[u]['repeat'])}", flush=True)
                    if bare:
                        print(f"            {'bare jupyter-lab':<24} first {brief(bare['first'])}   "
                              f"repeat {brief(bare['repeat'])}", flush=True)
                    if i == 0:
                        continue
                    out["api"] += api
                    for kind in bare:
                        out["bare"][kind].append(bare[kind])
                    for u in users:
                        for kind in ("first", "repeat"):
                            out["users"][u][kind].append(visits[u][kind])
            finally:
                browser.close()
        out["load_after"] = loadavg()
    finally:
        hub.stop()
    return out


def brief(v: dict) -> str:
    return (f"{v['seconds']:5.2f} s ({v['requests']} req, {v['body_bytes'] / 1e6:.2f} MB, {v['cached']} cached, "
            f"lab main thread {v['lab_main_thread_s']:.2f} s)")


# --- report -------------------------------------------------------------------------------------


def summary(values: list[float]) -> dict:
    return {"n": len(values), "median": statistics.median(values), "p95": pct(values, 95), "min": min(values)}


def median_of(visits: list[dict], key) -> float | None:
    values = [key(v) for v in visits]
    values = [x for x in values if x is not None]
    return statistics.median(values) if values else None


def figures(out: dict, candidates: list[str]) -> dict:
    fig: dict = {"api": summary(out["api"]), "candidates": {}, "bare": {}}
    for kind in ("first", "repeat"):
        visits = out["users"][USER][kind]
        f = fig[kind] = summary([v["seconds"] for v in visits])
        f["from_submit"] = summary([v["from_submit"] for v in visits])
        f["ratio_to_api"] = f["median"] / fig["api"]["median"]
        f["marks_ms"] = {name: median_of(visits, lambda v, n=name: v["marks"][n]) for name, _ in MILESTONES}
        for key in ("requests", "body_bytes", "cached", "lab_main_thread_s", "renderer_cpu_s", "lab_in_flight_ms"):
            f[key] = median_of(visits, lambda v, k=key: v[k])
        median_visit = sorted(visits, key=lambda v: v["seconds"])[len(visits) // 2]
        f["by_family"] = by_family(median_visit["rows"])
        bare = out["bare"][kind]
        if bare:
            b = fig["bare"][kind] = summary([v["seconds"] for v in bare])
            b["marks_ms"] = {name: median_of(bare, lambda v, n=name: v["marks"][n]) for name, _ in MILESTONES}
            for key in ("lab_main_thread_s", "lab_in_flight_ms", "body_bytes", "cached"):
                b[key] = median_of(bare, lambda v, k=key: v[k])
            b["hub_over_bare"] = f["median"] / b["median"]
    for name in candidates:
        c = fig["candidates"][name] = {"about": CANDIDATES[name].about}
        for kind in ("first", "repeat"):
            mine, base = out["users"][f"{USER}-{name}"][kind], out["users"][USER][kind]
            c[kind] = summary([v["seconds"] for v in mine])
            c[kind]["paired_ratio"] = statistics.median(m["seconds"] / b["seconds"] for m, b in zip(mine, base))
            c[kind]["paired_diff_s"] = statistics.median(m["seconds"] - b["seconds"] for m, b in zip(mine, base))
            c[kind]["body_bytes"] = median_of(mine, lambda v: v["body_bytes"])
            c[kind]["cached"] = median_of(mine, lambda v: v["cached"])
            c[kind]["lab_main_thread_s"] = median_of(mine, lambda v: v["lab_main_thread_s"])
    return fig


def by_family(rows: list[dict]) -> dict:
    """Per URL family (of one visit): count, bytes, cached, when the last one ended, encodings and
    Cache-Control values seen."""
    groups: dict = defaultdict(lambda: {"n": 0, "bytes": 0, "cached": 0, "last_end": 0.0,
                                        "encodings": set(), "cache_control": set()})
    for r in rows:
        g = groups[r["family"]]
        g["n"] += 1
        g["bytes"] += r["body_bytes"]
        g["cached"] += r["cached"]
        g["last_end"] = max(g["last_end"], r["end"] or 0)
        g["encodings"].add(r["encoding"] or "identity")
        g["cache_control"].add(r["cache_control"] or "-")
    return {k: {**g, "encodings": sorted(g["encodings"]), "cache_control": sorted(g["cache_control"])}
            for k, g in sorted(groups.items(), key=lambda kv: kv[1]["last_end"])}


def report(fig: dict, out: dict, info: dict, args) -> None:
    print("\n" + "=" * 110)
    print(f"browser benchmark  {info['date']}  nproc={info['nproc']}  cpu={info['cpu']}  python {info['python']}  "
          f"rounds={args.rounds}" + (f"  --hub-config {args.hub_config}" if args.hub_config else "")
          + (f"  --network {args.network} (Mbit/s:RTT ms, Chromium's emulation)" if args.network else ""))
    print(f"{info['versions']}; Chromium headless (Playwright); load before / after: "
          f"{out['load_before']} / {out['load_after']}")
    print(f"\n{'seconds':<52} {'median':>6} {'p95':>6} {'min':>6} {'n':>3}  browser/API (medians)")
    a = fig["api"]
    print(f"{'API spawn-to-ready (POST -> 200 through the proxy)':<52} {a['median']:6.2f} {a['p95']:6.2f} "
          f"{a['min']:6.2f} {a['n']:>3}")
    for kind, what in (("first", "first visit (empty cache)"), ("repeat", "repeat visit (warm cache)")):
        f, s = fig[kind], fig[kind]["from_submit"]
        print(f"{what + ': click Start -> launcher':<52} {f['median']:6.2f} {f['p95']:6.2f} {f['min']:6.2f} "
              f"{f['n']:>3}  {f['ratio_to_api']:5.2f}x")
        print(f"{'   the same from the form submit':<52} {s['median']:6.2f} {s['p95']:6.2f} {s['min']:6.2f} "
              f"{s['n']:>3}  {s['median'] / a['median']:5.2f}x")
        if kind in fig["bare"]:
            b = fig["bare"][kind]
            print(f"{'   bare jupyter-lab, no hub: open /lab -> launcher':<52} {b['median']:6.2f} {b['p95']:6.2f} "
                  f"{b['min']:6.2f} {b['n']:>3}  hub/bare {b['hub_over_bare']:.2f}x")
    columns = [fig["first"], fig["repeat"]] + [fig["bare"][k] for k in ("first", "repeat") if k in fig["bare"]]
    print(f"\nmilestones, ms from the click (medians)  {'first':>7} {'repeat':>7}"
          + ("   bare: first  repeat (ms from opening /lab)" if fig["bare"] else ""))
    for name, what in MILESTONES:
        vals = [c["marks_ms"][name] for c in columns]
        print(f"  {name:<38} " + " ".join(f"{v:7.0f}" if v is not None else "      -" for v in vals) + f"   {what}")
    for kind in ("first", "repeat"):
        f = fig[kind]
        lab = f["marks_ms"]["launcher"] - f["marks_ms"]["lab_byte"]
        print(f"\n{kind} visit (medians): {f['requests']:.0f} requests, {f['body_bytes'] / 1e6:.2f} MB received, "
              f"{f['cached']:.0f} from Chromium's cache.\n  From the lab page's first byte to the launcher ({lab:.0f} ms): "
              f"Chromium's main thread busy {f['lab_main_thread_s'] * 1000:.0f} ms, some request in flight "
              f"{f['lab_in_flight_ms']:.0f} ms; renderer CPU over the whole visit {f['renderer_cpu_s']:.2f} s.")
        if kind in fig["bare"]:
            b = fig["bare"][kind]
            lab_b = b["marks_ms"]["launcher"] - b["marks_ms"]["lab_byte"]
            print(f"  Bare jupyter-lab: from the lab page's first byte to the launcher {lab_b:.0f} ms, main thread busy "
                  f"{b['lab_main_thread_s'] * 1000:.0f} ms, some request in flight {b['lab_in_flight_ms']:.0f} ms.")
        print("  Per URL family (the median visit):")
        print(f"  {'family':<36} {'n':>4} {'KB':>7} {'cached':>6} {'last end ms':>11}  encoding / Cache-Control")
        for fam, g in f["by_family"].items():
            print(f"  {fam:<36} {g['n']:>4} {g['bytes'] / 1e3:7.0f} {g['cached']:>6} {g['last_end']:11.0f}  "
                  f"{','.join(g['encodings'])} / {' | '.join(g['cache_control'])[:60]}")
    if fig["candidates"]:
        print("\ncandidates, interleaved with the plain user (paired: median over rounds of candidate / plain):")
        print(f"  {'name':<10} {'first':>6} {'paired':>7} {'diff s':>7} {'MB':>5} | {'repeat':>6} {'paired':>7} "
              f"{'diff s':>7} {'cached':>6}   what")
        for name, c in fig["candidates"].items():
            f, r = c["first"], c["repeat"]
            print(f"  {name:<10} {f['median']:6.2f} {f['paired_ratio']:6.2f}x {f['paired_diff_s']:+7.2f} "
                  f"{f['body_bytes'] / 1e6:5.2f} | {r['median']:6.2f} {r['paired_ratio']:6.2f}x "
                  f"{r['paired_diff_s']:+7.2f} {r['cached']:6.0f}   {c['about'][:70]}")
    print("=" * 110, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds, after one warm-up round (default 5)")
    parser.add_argument("--candidates", default="",
                        help=f"comma-separated server settings to compare in the same hub, of: {', '.join(CANDIDATES)}")
    parser.add_argument("--hub-config", help="more hub config lines (a file), appended to the bench's")
    parser.add_argument("--variant", default="product", choices=list(VARIANTS),
                        help="bench_spawn's hub variant (e.g. cold: servers not forked; default product)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare jupyter-lab baseline")
    parser.add_argument("--network", default="", metavar="MBIT:RTT_MS",
                        help="emulate a network in Chromium (e.g. 50:20); default: loopback as is")
    parser.add_argument("--json", help="also write the figures (and every visit's requests) to this file")
    parser.add_argument("--keep", action="store_true", help="keep the hub's data dir and log")
    args = parser.parse_args(argv)
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidate(s) {unknown}; choose from {', '.join(CANDIDATES)}")
    if not Path(CHROMIUM).exists():
        parser.error(f"{CHROMIUM} is missing (the 'chromium' package)")

    info = machine()
    print(f"browser benchmark on {info['nproc']} CPUs ({info['cpu']}), "
          f"{'root: per-user OS accounts' if IS_ROOT else 'not root: no isolation'}, load {loadavg()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="nb-bench-browser-"))
    os.chmod(workdir, 0o755)  # the users' servers read their config dirs in it
    t_all = time.perf_counter()
    ok = False
    try:
        out = run(args, candidates, workdir)
        ok = True
    finally:
        if args.keep or not ok:
            print(f"kept {workdir} (hub log: data-notebench.log, hub-side timestamps: events.jsonl)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    fig = figures(out, candidates)
    report(fig, out, info, args)
    print(f"total {time.perf_counter() - t_all:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args), "figures": fig, "raw": out},
                                              indent=1, default=sorted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
