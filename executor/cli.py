"""`notebench jobs …`: submit and follow notebook jobs from a terminal; `notebench admin usage`.

A client of the executor API (executor/api/, executor/api/openapi.json), through the hub's
proxy at ``$NOTEBENCH_URL/services/executor/api/`` (default http://127.0.0.1:8000), with a
JupyterHub API token from ``NOTEBENCH_TOKEN`` (else ``JUPYTERHUB_API_TOKEN``).

Exit status: 0 done; 1 a job waited for did not succeed (its error is printed); 2 the command
could not be carried out (bad input, no token, hub unreachable, the API refused: its message and
field are printed); 130 interrupted. Progress and diagnostics go to stderr, results to stdout.

Only the standard library and requests (imported when a command runs, so ``notebench up`` does not
pay for it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse

from notebench.hub.platform.statuses import FINAL, JOB_STATUSES

DEFAULT_URL = "http://127.0.0.1:8000"
PAGE_MAX = 200  # the API's largest page
PATIENCE_S = 120  # how long waiting/following rides out a hub or executor restart
TRANSIENT_HTTP = (502, 503, 504)  # the proxy's answers while the executor restarts


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"notebench: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def note(message: str) -> None:
    print(f"notebench: {message}", file=sys.stderr, flush=True)


# --- parsing ------------------------------------------------------------------------------------


def _no_constants(name: str):
    raise ValueError(name)  # NaN/Infinity are not JSON the API accepts: keep them as strings


def parse_value(text: str):
    """A parameter's value, papermill style: JSON when it parses (3, 0.1, true, null, "s",
    ["a"], {"k": 1}); Python's True/False/None as papermill's -p reads them; a string otherwise."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError:
        return text


def parameter(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected key=value (e.g. -p n=3 -p lr=0.1 -p 'tags=[\"a\"]')")
    return key, parse_value(value)


def job_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id (a positive integer, as `notebench jobs list` shows)")
    return int(text)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return int(text)


def non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a non-negative integer")
    return int(text)


def read_notebook(path: str) -> dict:
    """The notebook file's JSON (``-`` reads stdin); a clear error when it is missing or not JSON."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"notebook {path}: no such file")
    except IsADirectoryError:
        fail(f"notebook {path}: is a directory, not a notebook file")
    except PermissionError:
        fail(f"notebook {path}: permission denied")
    except UnicodeDecodeError:
        fail(f"notebook {path} is not valid JSON: it is not UTF-8 text")
    except OSError as e:
        fail(f"notebook {path}: {e.strerror or e}")
    try:
        nb = json.loads(text)
    except ValueError as e:
        fail(f"notebook {path} is not valid JSON: {e}")
    if not isinstance(nb, dict):
        fail(f"notebook {path} is not a notebook: expected a JSON object (nbformat v4), found {type(nb).__name__}")
    return nb


# --- the API ------------------------------------------------------------------------------------


class Transient(Exception):
    """The hub or the executor is (perhaps briefly) away: worth retrying while waiting."""


def short_reason(exc: Exception) -> str:
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("Failed to resolve", "unknown host"),
        ("No route to host", "no route to host"),
        ("timed out", "timed out"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "the connection was closed"),
    ):
        if needle in text:
            return reason
    return text if len(text) < 200 else type(exc).__name__


class Client:
    def __init__(self, url: str, token: str):
        import requests

        self.requests = requests
        self.url = url.rstrip("/")
        self.api = self.url + "/services/executor/api/"
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"token {token}", "User-Agent": "notebench-cli"})

    @classmethod
    def from_env(cls) -> "Client":
        url = os.environ.get("NOTEBENCH_URL") or DEFAULT_URL
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            fail(f"NOTEBENCH_URL={url!r} is not a URL: give the hub's base URL, like {DEFAULT_URL}")
        token = os.environ.get("NOTEBENCH_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
        if not token:
            fail(
                "no API token: set NOTEBENCH_TOKEN (or JUPYTERHUB_API_TOKEN) to a JupyterHub API token "
                f"(get one at {url.rstrip('/')}/hub/token)"
            )
        return cls(url, token)

    def request(self, method: str, path: str, *, transient: bool = False, timeout=(10, 60), **kwargs):
        """The response to a 2xx; anything else is a clear error (exit 2), or ``Transient`` when
        ``transient`` and the hub or the executor looks briefly away."""
        exc = self.requests.exceptions
        try:
            r = self.session.request(method, self.api + path, timeout=timeout, allow_redirects=False, **kwargs)
        except exc.ConnectionError as e:
            if transient:
                raise Transient(short_reason(e)) from e
            fail(f"cannot reach Notebench at {self.url} ({short_reason(e)}): is it running? Set NOTEBENCH_URL to its address")
        except exc.Timeout as e:
            if transient:
                raise Transient("no answer") from e
            fail(f"Notebench at {self.url} did not answer within {timeout[1]} s")
        except exc.RequestException as e:
            fail(f"request to {self.url} failed: {e}")
        if r.status_code < 300:
            return r
        if transient and r.status_code in TRANSIENT_HTTP:
            raise Transient(f"HTTP {r.status_code} {r.reason}")
        self.refused(r)

    def refused(self, r) -> NoReturn:
        if 300 <= r.status_code < 400:
            fail(
                f"HTTP {r.status_code}: {self.url} redirected to {r.headers.get('Location')!r}; "
                "is NOTEBENCH_URL the hub's base URL (like http://127.0.0.1:8000)?"
            )
        try:
            body = r.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            message = str(body["message"])
            if body.get("field"):
                message += f" (field: {body['field']})"
        else:
            snippet = " ".join(r.text.split())[:200] if r.headers.get("Content-Type", "").startswith(("text/plain", "application/json")) else ""
            message = f"{r.reason or 'error'} from {r.url}" + (f": {snippet}" if snippet else "")
            if r.status_code in (404, 503):
                message += " (is the executor service running, and NOTEBENCH_URL the hub's address?)"
        if r.status_code in (401, 403):
            message += " [token from NOTEBENCH_TOKEN or JUPYTERHUB_API_TOKEN]"
        fail(f"HTTP {r.status_code}: {message}")

    def json(self, method: str, path: str, **kwargs):
        r = self.request(method, path, **kwargs)
        try:
            return r.json()
        except ValueError:
            fail(f"unexpected answer from {r.url} (not JSON): is NOTEBENCH_URL a Notebench hub?")

    def whoami(self) -> dict:
        """The token's user as the hub knows them ({} if the hub does not say): name, admin."""
        try:
            r = self.session.get(self.url + "/hub/api/user", timeout=(10, 60), allow_redirects=False)
            return r.json() if r.status_code == 200 and isinstance(r.json(), dict) else {}
        except (self.requests.exceptions.RequestException, ValueError):
            return {}

    def job_patiently(self, job: int) -> dict:
        """GET the job, riding out a restart of the hub or the executor for up to PATIENCE_S."""
        give_up = None
        while True:
            try:
                return self.json("GET", f"jobs/{job}", transient=True)
            except Transient as e:
                if give_up is None:
                    give_up = time.monotonic() + PATIENCE_S
                    note(f"lost contact with {self.url} ({e}); retrying for up to {PATIENCE_S} s")
                elif time.monotonic() > give_up:
                    fail(f"lost contact with {self.url} ({e}) while waiting for job {job}")
                time.sleep(1)


# --- presentation -------------------------------------------------------------------------------


def progress_text(job: dict) -> str:
    p = job.get("progress") or {}
    return f"{p.get('cells_completed', 0)}/{p.get('cells_total', 0)}"


def local_time(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def duration(job: dict) -> str | None:
    try:
        start = datetime.fromisoformat(job["started_at"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return clock((end - start).total_seconds())


def clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"


def error_text(error: dict) -> str:
    """'ZeroDivisionError: division by zero'."""
    return ": ".join(str(error[k]) for k in ("ename", "evalue") if error.get(k))


def outcome(job: dict) -> str:
    """'job 12 failed at cell 4: ZeroDivisionError: division by zero' (cells counted from 1 in the
    notebook as submitted, as people count them)."""
    text = f"job {job['id']} {job['status'].replace('_', ' ')}"
    error = job.get("error") or {}
    if error.get("cell_index") is not None:
        text += f" at cell {error['cell_index'] + 1}"
    what = error_text(error)
    return text + (f": {what}" if what else "")


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class Progress:
    """A bar redrawn in place on a terminal; otherwise one plain line per change of status/progress."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.last = None

    def update(self, job: dict, final: bool = False) -> None:
        p = job.get("progress") or {}
        done, total = p.get("cells_completed", 0), p.get("cells_total", 0)
        if self.tty:
            width = 24
            filled = min(width, round(width * done / total)) if total else 0
            bar = "#" * filled + "-" * (width - filled)
            line = f"job {job['id']} [{bar}] {done}/{total} cells  {job['status']}  {clock(time.monotonic() - self.start)}"
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
            self.stream.flush()
        else:
            state = (job["status"], done, total)
            if state != self.last:
                self.stream.write(f"job {job['id']}: {job['status']} ({done}/{total} cells)\n")
                self.stream.flush()
            self.last = state

    def interrupted(self) -> None:
        if self.tty:
            self.stream.write("\n")


def wait_for(client: Client, job: dict) -> dict:
    progress = Progress()
    delay = 0.1
    try:
        while job["status"] not in FINAL:
            progress.update(job)
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
            job = client.job_patiently(job["id"])
    except KeyboardInterrupt:
        progress.interrupted()
        note(f"stopped waiting: job {job['id']} goes on (`notebench jobs cancel {job['id']}` stops it)")
        raise SystemExit(130)
    progress.update(job, final=True)
    return job


# --- the commands -------------------------------------------------------------------------------


def cmd_submit(args) -> int:
    nb = read_notebook(args.notebook)
    body: dict[str, Any] = {"notebook": nb, "parameters": dict(args.parameters or [])}
    name = args.name or (Path(args.notebook).stem if args.notebook != "-" else None)
    for key, value in (
        ("profile", args.profile),
        ("workers", args.workers),
        ("timeout_seconds", args.timeout),
        ("name", name),
        ("kernel", args.kernel),
        ("cwd", args.cwd),
    ):
        if value is not None:
            body[key] = value
    client = Client.from_env()
    job = client.json("POST", "jobs", json=body)
    if not args.json:
        print(f"submitted job {job['id']} ({job['name']}, profile {job['profile']}, {job['status']})", flush=True)
    if not args.wait:
        if args.json:
            print(json.dumps(job, indent=2))
        return 0
    job = wait_for(client, job)
    if args.json:
        print(json.dumps(job, indent=2))
    if job["status"] == "succeeded":
        if not args.json:
            took = duration(job)
            print(f"job {job['id']} succeeded: {progress_text(job)} cells" + (f" in {took}" if took else ""))
        return 0
    print(f"notebench: {outcome(job)}", file=sys.stderr)
    print(f"notebench: see `notebench jobs logs {job['id']}` and `notebench jobs output {job['id']}`", file=sys.stderr)
    return 1


def cmd_list(args) -> int:
    client = Client.from_env()
    params = {"limit": str(min(args.limit or (PAGE_MAX if args.all else 50), PAGE_MAX))}
    if args.status:
        params["status"] = args.status
    if args.name:
        params["name"] = args.name
    if args.owner:
        params["owner"] = args.owner
    jobs, cursor = [], None
    while True:
        page = client.json("GET", "jobs", params=dict(params, **({"cursor": cursor} if cursor else {})))
        jobs += page.get("jobs", [])
        cursor = page.get("next_cursor")
        if not (args.all and cursor):
            break
    if args.json:
        print(json.dumps(jobs, indent=2))
        return 0
    if not jobs:
        note("no jobs" + (" match" if args.status or args.name else ""))
        return 0
    # Admins list everyone's jobs: they always see whose each one is (others see only their own).
    me = client.whoami()
    owners = bool(me.get("admin")) or len({j.get("owner") for j in jobs}) > 1 or any(
        j.get("owner") != me.get("name", j.get("owner")) for j in jobs
    )
    headers = ["ID", "NAME"] + (["OWNER"] if owners else []) + ["STATUS", "PROGRESS", "CREATED"]
    rows = [
        [str(j["id"]), clip(j.get("name") or "")]
        + ([j.get("owner") or ""] if owners else [])
        + [j["status"], progress_text(j), local_time(j.get("created_at"))]
        for j in jobs
    ]
    print_table(rows, headers)
    if cursor and not args.all:
        note(f"showing the newest {len(jobs)} jobs; --all lists them all")
    return 0


def cmd_show(args) -> int:
    job = Client.from_env().json("GET", f"jobs/{args.id}")
    if args.json:
        print(json.dumps(job, indent=2))
        return 0
    error = job.get("error")
    fields = [
        ("id", job["id"]),
        ("name", job.get("name")),
        ("owner", job.get("owner")),
        ("status", job["status"]),
        ("progress", f"{progress_text(job)} cells"),
        ("error", error_text(error) if error else None),
        ("error cell", f"{error['cell_index'] + 1}" if error and error.get("cell_index") is not None else None),
        ("profile", job.get("profile")),
        ("kernel", job.get("kernel")),
        ("workers", job.get("workers") or None),
        ("worker profile", job.get("worker_profile")),
        ("timeout", f"{job['timeout_seconds']} s" if job.get("timeout_seconds") else None),
        ("cwd", job.get("cwd")),
        ("parameters", json.dumps(job.get("parameters") or {})),
        ("created", local_time(job.get("created_at"))),
        ("started", local_time(job.get("started_at")) if job.get("started_at") else None),
        ("finished", local_time(job.get("finished_at")) if job.get("finished_at") else None),
        ("duration", duration(job)),
        ("mlflow run", job.get("mlflow_run_id")),
        ("schedule", job.get("schedule_id")),
    ]
    for key, value in fields:
        if value not in (None, ""):
            print(f"{key + ':':<16}{value}")
    return 0


def cmd_logs(args) -> int:
    client = Client.from_env()
    out = sys.stdout.buffer
    params = {"follow": "1"} if args.follow else {}
    written, give_up = 0, None
    exc = client.requests.exceptions
    try:
        while True:
            try:
                # Following: a silent cell sends nothing for a while; on a read timeout or a lost
                # connection the log is asked for again and what was already printed is skipped.
                r = client.request(
                    "GET", f"jobs/{args.id}/log", params=params, stream=True, transient=args.follow, timeout=(10, 300)
                )
                give_up, skip = None, written
                for chunk in r.iter_content(chunk_size=None):
                    if skip:
                        chunk, skip = chunk[skip:], max(0, skip - len(chunk))
                    if chunk:
                        out.write(chunk)
                        out.flush()
                        written += len(chunk)
                break
            except (Transient, exc.ConnectionError, exc.ChunkedEncodingError, exc.Timeout) as e:
                if not args.follow:
                    fail(f"lost the connection to {client.url} while reading the log ({short_reason(e)})")
                if give_up is None:
                    give_up = time.monotonic() + PATIENCE_S
                elif time.monotonic() > give_up:
                    fail(f"lost contact with {client.url} ({short_reason(e)}) while following job {args.id}'s log")
                time.sleep(1)
        if args.follow:
            job = client.job_patiently(args.id)
            note(outcome(job))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `notebench jobs logs 3 | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_cancel(args) -> int:
    client = Client.from_env()
    before = client.json("GET", f"jobs/{args.id}")
    if before["status"] in FINAL:
        note(f"job {args.id} already {before['status'].replace('_', ' ')}: nothing to cancel")
        return 0
    job = client.json("POST", f"jobs/{args.id}/cancel", timeout=(10, 120))
    if job["status"] == "cancelled":
        print(f"job {args.id} cancelled")
    elif job["status"] in FINAL:
        print(f"job {args.id} {job['status'].replace('_', ' ')} before it could be cancelled")
    else:
        print(f"job {args.id}: cancel requested (status: {job['status']})")
    return 0


def cmd_output(args) -> int:
    client = Client.from_env()
    path = f"jobs/{args.id}/output" + (".html" if args.html else "")
    data = client.request("GET", path, timeout=(10, 300)).content
    if args.output and args.output != "-":
        try:
            Path(args.output).write_bytes(data)
        except OSError as e:
            fail(f"cannot write {args.output}: {e.strerror or e}")
        note(f"wrote job {args.id}'s output {'HTML' if args.html else 'notebook'} to {args.output} ({len(data)} bytes)")
        return 0
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


ENVIRONMENT = f"""\
environment:
  NOTEBENCH_URL     the hub's base URL (default {DEFAULT_URL})
  NOTEBENCH_TOKEN   a JupyterHub API token (else JUPYTERHUB_API_TOKEN is used)

exit status: 0 ok; 1 a job waited for did not succeed; 2 the command failed (bad input,
no token, hub unreachable, request refused)"""


def moment(text: str) -> str:
    """A --since/--until: an ISO date or time, as the API takes it."""
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date or time (e.g. 2026-12-01 or 2026-12-01T09:00:00Z)") from None
    return text


def number(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def cmd_admin_usage(args) -> int:
    client = Client.from_env()
    params = {k: v for k, v in (("since", args.since), ("until", args.until), ("user", args.user),
                                ("group", args.group), ("by", args.by)) if v}
    if args.csv:
        sys.stdout.write(client.request("GET", "usage", params=dict(params, format="csv")).text)
        return 0
    report = client.json("GET", "usage", params=params)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    note(f"usage from {local_time(report['since'])} to {local_time(report['until'])} (UTC days)")
    if not report["rows"]:
        note("no usage")
        return 0
    who = "group" if report["by"] == "group" else "user"
    headers = ["DAY", who.upper(), "PROFILE", "HOURS", "CPU-S REQ", "MEM GiB-H", "GPU-H", f"COST ({report['currency']})"]
    fields = ("profile_hours", "cpu_seconds_requested", "memory_gb_hours", "gpu_hours", "cost")
    rows = [[r["day"], r[who] or "-", r["profile"], *(number(r[f]) for f in fields)] for r in report["rows"]]
    rows.append(["total", "", "", *(number(report["totals"][f]) for f in fields)])
    print_table(rows, headers)
    return 0


def add_admin_commands(subparsers) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    admin = subparsers.add_parser("admin", help="what admins look at: usage and cost", epilog=ENVIRONMENT, formatter_class=formatter)
    sub = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    p = sub.add_parser("usage", help="usage and cost per day, user and profile (others than admins: their own)",
                       epilog=ENVIRONMENT, formatter_class=formatter)
    p.add_argument("--since", type=moment, metavar="WHEN", help="from this date or time (UTC if no zone; default: 30 days back)")
    p.add_argument("--until", type=moment, metavar="WHEN", help="to this date or time (default: now)")
    p.add_argument("--user", help="only this user's usage")
    p.add_argument("--group", help="only the usage of this group's members")
    p.add_argument("--by", choices=("user", "group"), help="rows per user (default) or per group")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="print CSV with a header row")
    out.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    p.set_defaults(func=cmd_admin_usage)


def add_jobs_commands(subparsers) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    jobs = subparsers.add_parser(
        "jobs", help="submit and follow notebook jobs", description="Submit and follow notebook jobs.", epilog=ENVIRONMENT, formatter_class=formatter
    )
    sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", help="run a notebook as a job", epilog=ENVIRONMENT, formatter_class=formatter)
    p.add_argument("notebook", metavar="NOTEBOOK", help="the .ipynb file to run ('-': read it from stdin)")
    p.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        metavar="KEY=VALUE",
        type=parameter,
        action="append",
        help="a parameter for the notebook's 'parameters' cell; VALUE is JSON when it parses "
        "(-p n=3 an int, -p lr=0.1 a float, -p tags='[\"a\"]' a list), else a string; repeatable",
    )
    p.add_argument("--profile", help="the profile to run on (default: the default profile)")
    p.add_argument("--workers", type=non_negative_int, metavar="N", help="Dask workers for a distributed job (default 0)")
    p.add_argument("--timeout", type=positive_int, metavar="SECONDS", help="stop the job after this long (default 3600)")
    p.add_argument("--name", help="the job's name (default: the notebook file's name)")
    p.add_argument("--kernel", help="the kernel to run it on (default: the notebook's)")
    p.add_argument("--cwd", metavar="DIR", help="working directory, relative to your home")
    p.add_argument("--wait", action="store_true", help="wait for the job to end; exit 1 unless it succeeded")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("list", help="list your jobs (admins: everyone's, with their owners), newest first", epilog=ENVIRONMENT, formatter_class=formatter)
    p.add_argument("--status", choices=JOB_STATUSES, help="only jobs with this status")
    p.add_argument("--name", metavar="PREFIX", help="only jobs whose name starts with PREFIX")
    p.add_argument("--owner", metavar="USER", help="only USER's jobs (admins; others may name only themselves)")
    p.add_argument("--all", action="store_true", help="every matching job, not only the newest page")
    p.add_argument("--limit", type=positive_int, metavar="N", help=f"jobs per page (default 50, at most {PAGE_MAX})")
    p.add_argument("--json", action="store_true", help="print the jobs as JSON")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="a job's details", epilog=ENVIRONMENT, formatter_class=formatter)
    p.add_argument("id", metavar="ID", type=job_id)
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("logs", help="a job's log", epilog=ENVIRONMENT, formatter_class=formatter)
    p.add_argument("id", metavar="ID", type=job_id)
    p.add_argument("-f", "--follow", action="store_true", help="stream the log until the job ends")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("cancel", help="cancel a queued or running job", epilog=ENVIRONMENT, formatter_class=formatter)
    p.add_argument("id", metavar="ID", type=job_id)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("output", help="a job's output notebook (or its HTML)", epilog=ENVIRONMENT, formatter_class=formatter)
    p.add_argument("id", metavar="ID", type=job_id)
    p.add_argument("-o", "--output", metavar="FILE", help="write it to FILE (default: stdout)")
    p.add_argument("--html", action="store_true", help="the output rendered as HTML")
    p.set_defaults(func=cmd_output)
